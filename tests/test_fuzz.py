"""A bounded mutational fuzz through a real Envoy and the whole chain: mutated request bodies
from clients, and mutated answers (JSON and SSE) from each provider (the mock corrupts its own
bytes by seed). Every answer must keep the contract: a 2xx that parses, or an error in the
envelope with a documented status; streams carry only whole JSON events; no VM traps.
Seeds are fixed, so a failure reproduces. Larger, coverage-guided runs: `make fuzz`."""
import json
import random
from collections import Counter

import pytest

import sluice
from conftest import request

MODELS = ["mock-gpt", "mock-claude", "mock-gemini"]

SEEDS = [
    {"model": "mock-gpt", "messages": [{"role": "user", "content": "mail jane@corp.com"}]},
    {"model": "mock-claude", "stream": True, "messages": [
        {"role": "system", "content": "s"},
        {"role": "user", "content": [{"type": "text", "text": "a"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]},
    {"model": "mock-gemini", "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "r"}],
     "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "n": 1, "stop": ["a"],
     "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "object"}}}},
]
TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"\\u0000", b"\\ud800", b"\\", b"null", b"-1", b"1e999",
          b"\xff", b"\xf0\x9f", b'"model":', b'"messages":', b'"content":', b'"stream":true', b'"role":"tool"']

# What a client may get: the API's own statuses; 502 only for a provider's broken answer.
CLIENT_STATUSES = {200, 400, 404, 413}
ANSWER_STATUSES = {200, 502}


ODD_VALUES = [None, True, -1, 0, 2**64, 1e308, "", "x" * 5000, "\u0000\r\n", "../..", "[EMAIL_1]", "jane@corp.com",
              [], {}, [None], {"type": "text"}, {"role": "user"}, "mock-gpt", "tool", 3.5]


def mutate_json(rng: random.Random, doc):
    """Replaces one value somewhere in the document (or adds a key): valid JSON that the
    validation and the translators must handle."""
    doc = json.loads(json.dumps(doc))
    node = doc
    for _ in range(rng.randint(0, 4)):
        kids = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        kids = [(k, v) for k, v in kids if isinstance(v, (dict, list))]
        if not kids:
            break
        node = rng.choice(kids)[1]
    if isinstance(node, dict):
        key = rng.choice(list(node) + ["extra", "tools", "tool_choice", "n", "stream_options"]) if node else "x"
        node[key] = rng.choice(ODD_VALUES)
    elif isinstance(node, list):
        if node and rng.random() < 0.5:
            node[rng.randrange(len(node))] = rng.choice(ODD_VALUES)
        else:
            node.append(rng.choice(ODD_VALUES))
    return json.dumps(doc).encode()


def mutate(rng: random.Random, data: bytes) -> bytes:
    v = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(v))
        op = rng.randrange(5)
        if op == 0 and v:
            i = rng.randrange(len(v))
            v[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            del v[at:at + rng.randint(1, 16)]
        elif op == 2:
            v[at:at] = rng.choice(TOKENS)
        elif op == 3 and v:
            s = rng.randrange(len(v))
            v[at:at] = v[s:s + rng.randint(1, 48)]
        else:
            del v[at:]
    return bytes(v)


@pytest.fixture(scope="module")
def fz(tmp_path_factory):
    m = sluice.free_port()
    spec = sluice.mock_spec(
        m,
        auth={"keys": [{"id": "demo", "sha256": "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213",
                        "team": "demo"}], "prices": {"mock-*": {"input": 1, "output": 2}}},
        pii={},
        cache={},
    )
    stack = sluice.Stack(tmp_path_factory.mktemp("fuzz"), mock_port=m, spec=spec, concurrency=2, max_seconds=600,
                         quiet=True)
    stack.start()
    yield stack
    stack.stop()


def check_answer(r, allowed):
    assert r.status in allowed, (r.status, r.body[:300])
    ctype = r.headers.get("content-type", "")
    if r.status != 200:
        e = json.loads(r.body)["error"]
        assert set(e) == {"message", "type", "param", "code"}
    elif ctype.startswith("text/event-stream"):
        for block in r.body.decode().replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(l[5:].lstrip() for l in block.split("\n") if l.startswith("data:"))
            if data and data != "[DONE]":
                json.loads(data)  # only whole JSON events reach the client
    else:
        assert isinstance(json.loads(r.body), dict)


def no_traps(stack):
    bad = {k: v for k, v in stack.stats().items() if "wasm" in k and ("crash" in k or "fail" in k) and v}
    assert not bad, bad


def test_mutated_request_bodies(fz):
    rng = random.Random(20261202)
    statuses = Counter()
    for i in range(400):
        seed = rng.choice(SEEDS)
        body = mutate_json(rng, seed) if i % 2 else mutate(rng, json.dumps(seed).encode())
        r = request(fz, "POST", "/v1/chat/completions", body, {"cache-control": "no-cache, no-store"})
        statuses[r.status] += 1
        check_answer(r, CLIENT_STATUSES)
    print(f"\nfuzz: 400 mutated requests -> {dict(statuses)}")
    no_traps(fz)


@pytest.mark.parametrize("stream", [False, True])
def test_mutated_provider_answers(fz, stream):
    statuses = Counter()
    for seed in range(1, 151):
        model = MODELS[seed % 3]
        r = request(fz, "POST", "/v1/chat/completions",
                    {"model": model, "stream": stream, "messages": [{"role": "user", "content": f"hi {seed}"}]},
                    {"x-mock-fault": "mutate", "x-mock-seed": str(seed), "cache-control": "no-cache, no-store"})
        statuses[r.status] += 1
        check_answer(r, ANSWER_STATUSES)
    print(f"\nfuzz: 150 mutated {'SSE' if stream else 'JSON'} answers -> {dict(statuses)}")
    no_traps(fz)
    r = request(fz, "POST", "/v1/chat/completions", SEEDS[0])
    assert r.status == 200
