"""How close sluice-auth's prompt-token estimate is to OpenAI's tokenizer (o200k_base).

    .venv/bin/python bench/estimate.py

The corpus is made here: English prose (this repository's README), source code (its Rust
files), JSON, and short texts in several scripts; each becomes chat requests of one to three
messages. Printed: the ratio estimate / real tokens per kind (above 1 means the reservation
over-estimates, which is the safe side).
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import bpe_openai

ROOT = Path(__file__).resolve().parent.parent
enc = bpe_openai.get_encoding("o200k_base")

MULTI = [
    "Grüße aus Zürich! Wie wird das Wetter morgen am Vierwaldstättersee?",
    "Le système de réservation doit être mis à jour avant la fin du trimestre.",
    "Пожалуйста, переведите этот документ на английский язык до пятницы.",
    "東京の明日の天気は晴れのち曇り、最高気温は二十三度の予想です。",
    "请把这份季度报告总结成三个要点，并给出下一步的建议。",
    "هل يمكنك مساعدتي في كتابة رسالة إلى العميل حول التأخير؟",
    "मुझे इस कोड में बग ढूंढने में मदद करें और समाधान सुझाएं।",
]


def schema(i):
    """A JSON schema of about 4 KB, like the response_format schemas of extraction requests."""
    props = {f"field_{j}_{i}": {"type": ["string", "number", "boolean"][j % 3],
                                "description": f"The {j}th attribute of the invoice line, as printed on page {j % 7}."}
             for j in range(40)}
    return {"type": "object", "properties": props, "required": sorted(props)[:10], "additionalProperties": False}


def tools(i):
    return [{"type": "function", "function": {"name": f"tool_{k}", "description": f"Does step {k} of job {i}.",
                                              "parameters": schema(i * 10 + k)}} for k in range(3)]


def chunks(text, size):
    return [text[i:i + size] for i in range(0, len(text), size) if text[i:i + size].strip()]


def corpus():
    kinds = {
        "english": chunks((ROOT / "README.md").read_text(), 1500),
        "code": chunks("".join(p.read_text() for p in sorted(ROOT.glob("filters/*/src/*.rs"))), 1500)[:200],
        "json": chunks(json.dumps([{"id": i, "name": f"item {i}", "tags": ["a", "b"], "price": i * 1.5}
                                   for i in range(400)]), 1500),
        "multilingual": [" ".join(MULTI[i:] + MULTI[:i]) for i in range(len(MULTI))] * 4,
    }
    for kind, texts in kinds.items():
        for i, t in enumerate(texts):
            msgs = [{"role": "user", "content": t}]
            if i % 3 == 1:
                msgs.insert(0, {"role": "system", "content": "You are a helpful assistant."})
            if i % 3 == 2:
                msgs += [{"role": "assistant", "content": "Understood."}, {"role": "user", "content": "Go on."}]
            yield kind, {"model": "gpt-4o", "messages": msgs}
    for i in range(20):
        msgs = [{"role": "user", "content": f"Extract the fields of invoice {i}."}]
        yield "schema", {"model": "gpt-4o", "messages": msgs,
                         "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema(i)}}}
        yield "tools", {"model": "gpt-4o", "messages": msgs, "tools": tools(i)}




def real_tokens(body):
    # OpenAI's chat accounting: 3 tokens per message for framing, the role, the content, and
    # 3 tokens priming the reply. Schemas and tools: the tokens of their compact JSON text (OpenAI
    # bills its own rendering of them, which is of that size).
    n = sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in body["messages"]) + 3
    for field in ("response_format", "tools"):
        if field in body:
            n += len(enc.encode(json.dumps(body[field], separators=(",", ":"))))
    return n


def main():
    items = list(corpus())
    est_bin = ROOT / "target/release/examples/estimate"
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "estimate"], check=True)
    out = subprocess.run([str(est_bin)], input="\n".join(json.dumps(b) for _, b in items), capture_output=True,
                         text=True, check=True).stdout.split()
    by_kind = {}
    for (kind, body), est in zip(items, out):
        by_kind.setdefault(kind, []).append(int(est) / real_tokens(body))
    print("prompt-token estimate / o200k_base tokens (per request)")
    print(f"{'kind':14}{'n':>5}{'min':>7}{'median':>8}{'max':>7}")
    for kind, r in by_kind.items():
        print(f"{kind:14}{len(r):5}{min(r):7.2f}{statistics.median(r):8.2f}{max(r):7.2f}")
    under = sum(1 for r in by_kind.values() for x in r if x < 1)
    print(f"under-estimates: {under} of {sum(len(r) for r in by_kind.values())} requests")


if __name__ == "__main__":
    sys.exit(main())
