"""sluice-cache through a real Envoy (--concurrency 2, behind sluice-auth): hit, miss, bypass,
TTL, tenant isolation, JSON<->stream replay through the openai SDK, what is never stored,
eviction under byte pressure, and concurrent identical misses."""
import hashlib
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

import sluice
from conftest import assemble, request



def sha(k):
    return hashlib.sha256(k.encode()).hexdigest()


@pytest.fixture(scope="module")
def cs(tmp_path_factory):
    run = tmp_path_factory.mktemp("cache")
    m = sluice.free_port()
    spec = {
        "backends": {
            "mock-openai": sluice.mock_backend("openai", m),
            "mock-anthropic": sluice.mock_backend("anthropic", m),
        },
        "models": {"mock-gpt": {"chain": ["mock-openai"]}, "mock-claude": {"chain": ["mock-anthropic"]}},
        "auth": {
            "keys": [{"id": "a", "sha256": sha("sk-a"), "team": "alpha"},
                     {"id": "a2", "sha256": sha("sk-a2"), "team": "alpha"},
                     {"id": "b", "sha256": sha("sk-b"), "team": "beta"},
                     {"id": "admin", "sha256": sha("sk-admin"), "team": "ops", "admin": True}],
            "prices": {"mock-*": {"input": 1, "output": 2}},
        },
        "cache": {"ttl_seconds": 300, "max_entries": 64, "max_bytes": 65536, "max_entry_bytes": 8192},
    }
    stack = sluice.Stack(run, mock_port=m, spec=spec, concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


def ask(stack, text, who="a", headers=None, **body):
    b = {"model": "mock-gpt", "messages": [{"role": "user", "content": text}], **body}
    tag = uuid.uuid4().hex
    h = {"authorization": f"Bearer sk-{who}", "x-mock-tag": tag, **(headers or {})}
    r = request(stack, "POST", "/v1/chat/completions", b, h)
    r.upstream = request(stack, "GET", f"/_mock/requests/{tag}", port=stack.mock_port).status == 200
    return r


def stat(stack, name):
    """A sluice-cache counter (Envoy names it wasmcustom.sluice_cache.<name>)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.admin_port}/stats?filter=sluice_cache") as r:
        stats = dict(line.split(": ", 1) for line in r.read().decode().splitlines() if ": " in line)
    return int(stats.get(f"wasmcustom.sluice_cache.{name}", 0))


def fresh():
    return f"question {uuid.uuid4().hex[:8]}"


def test_miss_then_hit(cs):
    q = fresh()
    first = ask(cs, q)
    assert first.status == 200 and first.headers["x-sluice-cache"] == "miss" and first.upstream
    second = ask(cs, q)
    assert second.headers["x-sluice-cache"] == "hit" and not second.upstream
    assert int(second.headers["age"]) >= 0
    assert second.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
    # Another key of the same team shares the entry; key order and whitespace do not matter.
    third = request(cs, "POST", "/v1/chat/completions",
                    b'{ "messages" : [ {"content": "%s", "role": "user"} ], "model": "mock-gpt" }' % q.encode(),
                    {"authorization": "Bearer sk-a2"})
    assert third.headers["x-sluice-cache"] == "hit"


def test_json_fills_and_a_stream_replays_through_the_sdk(cs):
    q = fresh()
    assert ask(cs, q).headers["x-sluice-cache"] == "miss"
    client = openai.OpenAI(base_url=f"{cs.base_url}/v1", api_key="sk-a", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": q}])
    assert raw.headers["x-sluice-cache"] == "hit"
    text, usage, finish = "", None, None
    for chunk in raw.parse():
        usage = chunk.usage or usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == f"echo: {q}" and finish == "stop" and usage.completion_tokens == 3


def test_stream_fills_and_json_replays_through_the_sdk(cs):
    q = fresh()
    s = ask(cs, q, stream=True)
    assert s.headers["x-sluice-cache"] == "miss" and assemble(s.events())["done"]
    client = openai.OpenAI(base_url=f"{cs.base_url}/v1", api_key="sk-a", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="mock-gpt", messages=[{"role": "user", "content": q}])
    assert raw.headers["x-sluice-cache"] == "hit"
    r = raw.parse()
    assert r.choices[0].message.content == f"echo: {q}" and r.choices[0].finish_reason == "stop"
    # A streaming client that did not ask for usage gets none on a replay either.
    again = ask(cs, q, stream=True)
    assert again.headers["x-sluice-cache"] == "hit"
    assert all(e == "[DONE]" or "usage" not in e for e in again.events())


def test_cache_control_no_cache_and_no_store(cs):
    q = fresh()
    ask(cs, q)
    r = ask(cs, q, headers={"cache-control": "no-cache"})
    assert r.headers["x-sluice-cache"] == "miss" and r.upstream  # looked past the entry
    q2 = fresh()
    r = ask(cs, q2, headers={"cache-control": "no-store"})
    assert r.headers["x-sluice-cache"] == "bypass" and r.upstream
    assert ask(cs, q2).headers["x-sluice-cache"] == "miss"  # it was not stored


def test_ttl_expiry(cs):
    q = fresh()
    ask(cs, q, headers={"x-sluice-cache-ttl": "1"})
    assert ask(cs, q).headers["x-sluice-cache"] == "hit"
    time.sleep(1.2)
    r = ask(cs, q)
    assert r.headers["x-sluice-cache"] == "miss" and r.upstream


def test_tenant_isolation(cs):
    q = fresh()
    ask(cs, q, who="a")
    b = ask(cs, q, who="b")
    assert b.headers["x-sluice-cache"] == "miss" and b.upstream  # team beta never gets alpha's entry
    assert ask(cs, q, who="a").headers["x-sluice-cache"] == "hit"
    assert ask(cs, q, who="b").headers["x-sluice-cache"] == "hit"


def test_errors_and_cut_streams_are_not_stored(cs):
    q = fresh()
    assert ask(cs, q, headers={"x-mock-status": "500"}).status == 502
    r = ask(cs, q)
    assert r.status == 200 and r.headers["x-sluice-cache"] == "miss" and r.upstream
    q2 = fresh()
    cut = ask(cs, q2 + " a b c d e f", stream=True, headers={"x-mock-fault": "truncate"})
    assert assemble(cut.events())["error"]
    r = ask(cs, q2 + " a b c d e f", stream=True)
    assert r.headers["x-sluice-cache"] == "miss" and assemble(r.events())["done"]


def test_hits_are_free_for_auth(cs):
    q = fresh()
    ask(cs, q, who="b")
    before = request(cs, "GET", "/v1/sluice/usage", None, {"authorization": "Bearer sk-admin"}).json()["keys"]["b"]["total"]
    assert ask(cs, q, who="b").headers["x-sluice-cache"] == "hit"
    after = request(cs, "GET", "/v1/sluice/usage", None, {"authorization": "Bearer sk-admin"}).json()["keys"]["b"]["total"]
    assert after["requests"] == before["requests"] + 1
    assert (after["tokens_in"], after["micro_usd"]) == (before["tokens_in"], before["micro_usd"])


def test_large_answers_and_byte_pressure(cs):
    big = "word " * 2000  # ~10 KB answer: over the 8 KB entry limit
    assert ask(cs, big).headers["x-sluice-cache"] == "miss"
    assert ask(cs, big).headers["x-sluice-cache"] == "miss"  # never stored
    evictions = stat(cs, "evictions")
    answers = [fresh() + " " + "pad " * 500 for _ in range(40)]  # ~2 KB each, 80 KB in all
    for q in answers:
        assert ask(cs, q).status == 200
    assert stat(cs, "evictions") > evictions
    # The most recent entries are there; the cache holds at most 64 KB, so not all 40.
    hits = sum(ask(cs, q).headers["x-sluice-cache"] == "hit" for q in answers)
    assert 0 < hits < 40
    assert ask(cs, answers[-1]).headers["x-sluice-cache"] == "hit"


def test_concurrent_identical_misses_store_once_and_every_worker_hits(cs):
    q = fresh()
    stored = stat(cs, "stored")
    with ThreadPoolExecutor(16) as ex:
        results = list(ex.map(lambda _: ask(cs, q, stream=True), range(16)))
    assert all(r.status == 200 and assemble(r.events())["content"] == f"echo: {q}" for r in results)
    assert stat(cs, "stored") == stored + 1
    # New connections spread over both workers: every one hits.
    assert all(ask(cs, q).headers["x-sluice-cache"] == "hit" for _ in range(12))


def test_default_gateway_caches_deterministic_requests_only(post):
    q = {"model": "mock-claude", "messages": [{"role": "user", "content": fresh()}]}
    assert post({**q, "temperature": 0}).headers["x-sluice-cache"] == "miss"
    assert post({**q, "temperature": 0}).headers["x-sluice-cache"] == "hit"
    assert post({**q, "temperature": 0.7}).headers["x-sluice-cache"] == "bypass"
    forced = {**q, "temperature": 0.7}
    assert post(forced, {"x-sluice-cache-force": "true"}).headers["x-sluice-cache"] == "miss"
    assert post(forced, {"x-sluice-cache-force": "true"}).headers["x-sluice-cache"] == "hit"
