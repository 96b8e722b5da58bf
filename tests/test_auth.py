"""sluice-auth through a real Envoy (--concurrency 2): keys, allow-lists, every limit type,
window roll-over, accounting of JSON and streams, cut streams, exactness under concurrency,
reservations against overshoot, metrics, the access log and a configuration reload."""
import datetime
import hashlib
import http.client
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import sluice
from conftest import assemble, request

MINUTE = 4  # seconds: the "minute" window of this stack


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key(id, team, **kw):
    return {"id": id, "sha256": sha(f"sk-{id}"), "team": team, **kw}


def spec(m: int, keys: list) -> dict:
    return {
        "backends": {
            "mock-openai": sluice.mock_backend("openai", m),
            "mock-anthropic": sluice.mock_backend("anthropic", m),
        },
        "models": {"mock-gpt": {"chain": ["mock-openai"]}, "mock-claude": {"chain": ["mock-anthropic"]}},
        "auth": {
            "keys": keys,
            "teams": {"gamma": {"models": ["mock-claude"]}, "delta": {"limits": {"tokens_per_minute": 400}},
                      "beta": {"price_multiplier": 2}},
            "projects": {"p1": {"team": "alpha", "limits": {"requests_per_minute": 1000}},
                         "p2": {"team": "lambda", "limits": {"requests_per_minute": 2}}},
            "prices": {"mock-*": {"input": 1, "output": 2}},
            "default_max_tokens": 50,
            "windows": {"minute_seconds": MINUTE},
        },
    }


KEYS = [
    key("admin", "ops", admin=True),
    key("rpm", "alpha", project="p1", limits={"requests_per_minute": 3}),
    key("models", "alpha", models=["mock-gpt"]),
    key("teamlimited", "gamma"),
    key("usd", "beta", limits={"usd_per_day": 0.0002}),
    key("tpd", "epsilon", limits={"tokens_per_day": 120}),
    key("par", "zeta", limits={"parallel_requests": 2}),
    key("acct", "eta"),
    key("many", "theta"),
    key("tight", "delta"),
    key("cut", "iota"),
    key("month", "kappa", limits={"usd_per_month": 0.0001}),
    key("proj", "lambda", project="p2"),
]


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    run = tmp_path_factory.mktemp("auth")
    m = sluice.free_port()
    stack = sluice.Stack(run, mock_port=m, spec=spec(m, KEYS), concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


def chat(stack, who, body=None, headers=None):
    h = {"authorization": f"Bearer sk-{who}"} if who else {"authorization": None}
    h.update(headers or {})
    b = {"model": "mock-gpt", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 10}
    b.update(body or {})
    return request(stack, "POST", "/v1/chat/completions", b, h)


def usage(stack, who="admin"):
    r = request(stack, "GET", "/v1/sluice/usage", None, {"authorization": f"Bearer sk-{who}"})
    assert r.status == 200, r.body
    return r.json()


def wait_next_window():
    time.sleep(MINUTE - time.time() % MINUTE + 0.05)


def err(r, status, code):
    assert r.status == status, r.body
    e = r.json()["error"]
    assert e["code"] == code, e
    return e


def test_missing_unknown_and_malformed_keys_are_401(st):
    assert "provide an API key" in err(chat(st, None), 401, "invalid_api_key")["message"]
    err(chat(st, "nobody"), 401, "invalid_api_key")
    err(chat(st, None, headers={"authorization": "Basic abc"}), 401, "invalid_api_key")
    err(chat(st, None, headers={"authorization": "Bearer " + "k" * 5000}), 401, "invalid_api_key")
    # Non-UTF-8 bytes in the header.
    s = socket.create_connection(("127.0.0.1", st.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer \xff\xfe\r\ncontent-length: 2\r\n\r\n{}")
    assert b" 401 " in s.recv(4096).split(b"\r\n")[0] + b" "
    s.close()
    ok = chat(st, None, headers={"x-api-key": "sk-acct"})
    assert ok.status == 200, ok.body


def test_401_is_decided_without_the_body(st):
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=5)
    conn.putrequest("POST", "/v1/chat/completions")
    conn.putheader("content-type", "application/json")
    conn.putheader("content-length", "100000")
    conn.putheader("authorization", "Bearer sk-wrong")
    conn.endheaders()  # the body is never sent
    r = conn.getresponse()
    assert r.status == 401
    conn.close()


def test_model_allow_lists_of_key_and_team(st):
    assert chat(st, "models").status == 200
    e = err(chat(st, "models", {"model": "mock-claude"}), 403, "model_not_allowed")
    assert "mock-claude" in e["message"] and e["param"] == "model"
    err(chat(st, "teamlimited"), 403, "model_not_allowed")
    assert chat(st, "teamlimited", {"model": "mock-claude"}).status == 200


def test_requests_per_minute_headers_refusal_and_roll_over(st):
    wait_next_window()
    seen = []
    for _ in range(3):
        r = chat(st, "rpm")
        assert r.status == 200
        seen.append((r.headers["x-ratelimit-limit-requests"], r.headers["x-ratelimit-remaining-requests"]))
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    assert seen == [("3", "2"), ("3", "1"), ("3", "0")]
    r = chat(st, "rpm")
    e = err(r, 429, "rate_limit_exceeded")
    assert "requests per minute" in e["message"]
    assert 1 <= int(r.headers["retry-after"]) <= MINUTE
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    wait_next_window()
    assert chat(st, "rpm").status == 200  # a new window


def test_spend_budget_is_insufficient_quota(st):
    # 200 micro-USD a day; each request reserves (est. prompt + 10 out) x price x 2 (team beta).
    codes = [chat(st, "usd").status for _ in range(12)]
    assert 200 in codes and codes[-1] == 429
    r = chat(st, "usd")
    e = err(r, 429, "insufficient_quota")
    assert e["type"] == "insufficient_quota" and int(r.headers["retry-after"]) > 0
    u = usage(st)["keys"]["usd"]
    assert u["total"]["micro_usd"] <= 200
    assert u["remaining"]["usd_today"] >= 0


def test_monthly_spend_budget(st):
    codes = [chat(st, "month").status for _ in range(10)]
    assert codes[-1] == 429
    r = chat(st, "month")
    e = err(r, 429, "insufficient_quota")
    assert "usd per month" in e["message"]
    now = datetime.datetime.now(datetime.timezone.utc)
    first = datetime.datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=datetime.timezone.utc)
    assert abs(int(r.headers["retry-after"]) - (first - now).total_seconds()) < 5  # the calendar month's end
    assert usage(st)["keys"]["month"]["window"]["usd_this_month"] <= 0.0001


def test_project_limit(st):
    wait_next_window()
    assert [chat(st, "proj").status for _ in range(2)] == [200, 200]
    e = err(chat(st, "proj"), 429, "rate_limit_exceeded")
    assert "project p2" in e["message"]


def test_tokens_per_day(st):
    codes = [chat(st, "tpd").status for _ in range(30)]
    assert codes[0] == 200 and codes[-1] == 429
    assert usage(st)["keys"]["tpd"]["window"]["tokens_today"] <= 120


def test_parallel_requests(st):
    slow = {"x-mock-delay-ms": "1500"}
    with ThreadPoolExecutor(3) as ex:
        fs = [ex.submit(chat, st, "par", None, slow) for _ in range(2)]
        time.sleep(0.5)
        third = chat(st, "par")
        codes = sorted(f.result().status for f in fs)
    assert codes == [200, 200]
    err(third, 429, "rate_limit_exceeded")
    assert chat(st, "par").status == 200  # released


def test_accounting_json_and_streams(st):
    before = usage(st)["keys"]["acct"]["total"]
    r = chat(st, "acct", {"model": "mock-claude"}, {"x-mock-cached-tokens": "2"})
    u1 = r.json()["usage"]
    s = chat(st, "acct", {"stream": True})  # did not ask for usage: counted, then removed
    events = s.events()
    assert all(e == "[DONE]" or "usage" not in e for e in events)
    assert assemble(events)["done"]
    s2 = chat(st, "acct", {"stream": True, "stream_options": {"include_usage": True}})
    u3 = assemble(s2.events())["usage"]
    after = usage(st)["keys"]["acct"]["total"]
    assert after["requests"] - before["requests"] == 3
    # The plain stream's usage is the same as the one that asked (same prompt, same answer).
    tin = u1["prompt_tokens"] + 2 * u3["prompt_tokens"]
    tout = u1["completion_tokens"] + 2 * u3["completion_tokens"]
    assert after["tokens_in"] - before["tokens_in"] == tin
    assert after["tokens_out"] - before["tokens_out"] == tout
    # 1 micro-USD per input token (cached too: no cached price), 2 per output token.
    assert after["micro_usd"] - before["micro_usd"] == tin + 2 * tout
    assert after["partial"] == before["partial"]
    w = usage(st)["keys"]["acct"]["window"]
    assert w["in_flight"] == 0


def test_cut_streams_are_charged_what_is_known(st):
    r = chat(st, "cut", {"stream": True, "messages": [{"role": "user", "content": "a b c d e f g h i j"}]},
             {"x-mock-fault": "truncate"})
    assert assemble(r.events())["error"]["code"] == "upstream_stream_cut"
    # A reset mid-stream: the client sees a broken transfer; on_log still settles.
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=json.dumps(
        {"model": "mock-gpt", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g h"}]}),
        headers={"authorization": "Bearer sk-cut", "x-mock-fault": "cut", "content-type": "application/json"})
    try:
        conn.getresponse().read()
    except http.client.IncompleteRead:
        pass
    conn.close()
    time.sleep(0.3)
    u = usage(st)["keys"]["cut"]
    assert u["total"]["partial"] == 2
    assert u["total"]["tokens_in"] > 0 and u["total"]["tokens_out"] > 0
    assert u["window"]["in_flight"] == 0


def test_counts_are_exact_under_concurrency(st):
    before = usage(st)["keys"]["many"]["total"]
    n = 240
    with ThreadPoolExecutor(24) as ex:
        results = list(ex.map(lambda i: chat(st, "many", {"stream": i % 2 == 0}), range(n)))
    assert all(r.status == 200 for r in results)
    one = chat(st, "many").json()["usage"]
    after = usage(st)["keys"]["many"]["total"]
    assert after["requests"] - before["requests"] == n + 1
    assert after["tokens_in"] - before["tokens_in"] == (n + 1) * one["prompt_tokens"]
    assert after["tokens_out"] - before["tokens_out"] == (n + 1) * one["completion_tokens"]
    teams = usage(st)["teams"]
    assert teams["theta"]["total"]["requests"] == after["requests"]


def test_reservations_prevent_overshoot(st):
    """40 requests at once against a 400 tokens-per-minute team budget: only what fits the
    reservations is admitted, so the tokens actually used stay under the limit."""
    wait_next_window()
    body = {"messages": [{"role": "user", "content": "count " * 20}], "max_tokens": 30}
    with ThreadPoolExecutor(40) as ex:
        results = list(ex.map(lambda _: chat(st, "tight", body), range(40)))
    ok = [r for r in results if r.status == 200]
    refused = [r for r in results if r.status == 429]
    assert len(ok) + len(refused) == 40 and ok and refused
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    team = usage(st)["teams"]["delta"]
    print(f"\novershoot test: 40 parallel, tokens_per_minute 400: admitted {len(ok)}, "
          f"tokens used {used}, overshoot {max(0, used - 400)}")
    assert used <= 400
    assert team["window"]["tokens_this_minute"] <= 400


def test_metrics_have_team_model_and_reason_labels(st):
    with __import__("urllib.request").request.urlopen(f"http://127.0.0.1:{st.admin_port}/stats/prometheus") as r:
        prom = r.read().decode()
    assert 'sluice_auth_requests{team="theta",model="mock-gpt"}' in prom
    assert 'sluice_auth_tokens_out{team="eta",model="mock-claude"}' in prom
    assert 'sluice_auth_refused{team="alpha",reason="requests_per_minute"}' in prom


def test_access_log_line(st):
    chat(st, "acct", headers={"x-mock-cached-tokens": "0"})
    time.sleep(0.3)
    lines = (st.run_dir / "stdout.log").read_text().splitlines()
    line = next(l for l in reversed(lines) if "key=acct" in l)
    assert "team=eta" in line and "model=mock-gpt" in line and "provider=mock-openai" in line
    assert "tokens_in=" in line and "tokens_out=" in line and "cost_micro_usd=" in line
    assert "sk-acct" not in (st.run_dir / "stdout.log").read_text()
    refused = next(l for l in reversed(lines) if "key=rpm" in l and " 429 " in l)
    assert "refusal=requests_per_minute" in refused


def test_usage_endpoint_scopes(st):
    own = usage(st, "acct")
    assert list(own["keys"]) == ["acct"] and list(own["teams"]) == ["eta"]
    everything = usage(st, "admin")
    assert {"acct", "many", "rpm"} <= set(everything["keys"])
    assert everything["projects"]["p1"]["limits"]["requests_per_minute"] == 1000


def test_reload_changes_keys_without_losing_counters(tmp_path):
    """Keys added and revoked, limits changed, by a listener update (LDS from a file): no
    restart, and the counters stay."""
    m = sluice.free_port()
    keys = [key("stay", "r"), key("old", "r")]
    stack = sluice.Stack(tmp_path, mock_port=m, spec=spec(m, keys), concurrency=2, max_seconds=300, quiet=True,
                         lds=True)
    with stack:
        for _ in range(3):
            assert chat(stack, "stay").status == 200
        assert chat(stack, "old").status == 200
        assert chat(stack, "new").status == 401
        stack.reload(spec(m, [key("stay", "r", limits={"requests_per_minute": 1000}), key("new", "r")]))
        deadline = time.time() + 20
        while chat(stack, "new").status != 200:
            assert time.time() < deadline, "the new configuration was not applied"
            time.sleep(0.2)
        assert chat(stack, "old").status == 401
        r = chat(stack, "stay")
        assert r.headers["x-ratelimit-limit-requests"] == "1000"
        assert usage_of(stack, "stay")["total"]["requests"] == 4  # 3 before the reload, 1 after


def usage_of(stack, who):
    r = request(stack, "GET", "/v1/sluice/usage", None, {"authorization": f"Bearer sk-{who}"})
    return r.json()["keys"][who]
