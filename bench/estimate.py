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


def real_tokens(body):
    # OpenAI's chat accounting: 3 tokens per message for framing, the role, the content, and
    # 3 tokens priming the reply.
    return sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in body["messages"]) + 3


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
