"""Fleet-wide quotas: a real redis-server, two sluice-quota replicas and two Envoys sharing one
budget. Counts are exact across instances for every limit type and across a window roll-over;
parallel requests over both Envoys never overshoot a tight budget and each is settled once;
cut streams, client aborts and connect failures are charged as on one instance; Redis stopped
and restarted mid-request, a replica killed, a lost settle reaped after its TTL; both failure
modes."""
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import sluice
from conftest import assemble, request
from test_auth import MINUTE, chat, key, usage, wait_next_window

TTL = 5  # seconds an unsettled reservation holds (reaping is tested)


KEYS = [
    key("admin", "ops", admin=True),
    key("rpm", "alpha", limits={"requests_per_minute": 5}),
    key("tok", "beta", limits={"tokens_per_day": 200}),
    key("usd", "gamma", limits={"usd_per_day": 0.0003}),
    key("par", "delta", limits={"parallel_requests": 2}),
    key("tight", "epsilon"),
    key("acct", "zeta", project="pz"),
    key("cut", "eta"),
    key("redis", "theta"),
    key("lost", "iota"),
    key("kill", "kappa"),
    key("reap", "mu"),
    key("open", "lambda", limits={"requests_per_minute": 10}),
]


def spec(m, quota_eps, **quota):
    return sluice.mock_spec(m, **{
        "models": {"mock-gpt": {"chain": ["mock-openai"]}, "mock-claude": {"chain": ["mock-anthropic"]},
                   "mock-gemini": {"chain": ["mock-gemini"]},
                   "mock-dead": {"chain": ["dead"]}},
        "backends": {**sluice.mock_spec(m)["backends"],
                     "dead": {"provider": "openai", "url": f"http://127.0.0.1:{sluice.free_port()}/v1"}},
        "auth": {
            "keys": KEYS,
            "teams": {"epsilon": {"limits": {"tokens_per_minute": 400}}},
            "projects": {"pz": {"team": "zeta", "limits": {"requests_per_minute": 1000}}},
            "prices": {"mock-*": {"input": 1, "output": 2}},
            "default_max_tokens": 30,
            "windows": {"minute_seconds": MINUTE},
        },
        "quota": {"endpoints": quota_eps, "reservation_ttl_seconds": TTL, **quota},
    })


class Fleet:
    def __init__(self, tmp):
        self.redis = sluice.Redis(tmp / "redis", persist=True).start()
        self.quotas = [sluice.QuotaService(self.redis.url, max_seconds=900).start() for _ in range(2)]
        self.mock = sluice.free_port()
        eps = [q.address for q in self.quotas]
        self.a = sluice.Stack(tmp / "a", mock_port=self.mock, spec=spec(self.mock, eps), concurrency=2,
                              max_seconds=900, quiet=True)
        self.b = sluice.Stack(tmp / "b", mock_port=self.mock, spec=spec(self.mock, eps), concurrency=2,
                              max_seconds=900, quiet=True, start_mock=False)
        self.a.start()
        self.b.start()

    def stop(self):
        for s in (self.b, self.a):
            s.stop()
        for q in self.quotas:
            q.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    yield f
    f.stop()


def test_both_envoys_read_one_set_of_counters(fleet):
    chat(fleet.a, "acct")
    time.sleep(0.2)  # the settle leaves from the outbox on the next tick
    ua, ub = usage(fleet.a), usage(fleet.b)
    assert ua["store"] == ub["store"] == "fleet"
    assert ua["keys"]["acct"] == ub["keys"]["acct"]
    assert ua["projects"]["pz"]["total"]["requests"] >= 1


def test_requests_per_minute_across_envoys_and_roll_over(fleet):
    wait_next_window()
    codes = [chat(fleet.a if i % 2 else fleet.b, "rpm").status for i in range(7)]
    assert codes == [200] * 5 + [429] * 2, codes
    r = chat(fleet.a, "rpm")
    assert r.status == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(r.headers["retry-after"]) <= MINUTE
    wait_next_window()
    assert chat(fleet.b, "rpm").status == 200  # a new window, on Redis's clock


def until_refused(fleet, who):
    """Requests alternating over both Envoys until the budget refuses three in a row (a settle
    that lands gives back what its reservation held beyond the real usage, so a refusal can be
    followed by one more that fits)."""
    codes = []
    while codes[-3:] != [429] * 3:
        assert len(codes) < 80, codes
        codes.append(chat(fleet.a if len(codes) % 2 else fleet.b, who).status)
        time.sleep(0.02)
    return codes


def test_tokens_and_spend_budgets_across_envoys(fleet):
    codes = until_refused(fleet, "tok")
    assert codes[0] == 200 and set(codes) == {200, 429}
    time.sleep(0.2)
    u = usage(fleet.a)["keys"]["tok"]
    assert u["window"]["tokens_today"] <= 200
    assert u["total"]["tokens_in"] + u["total"]["tokens_out"] == u["window"]["tokens_today"]
    codes = until_refused(fleet, "usd")
    assert codes[0] == 200
    r = chat(fleet.a, "usd")
    assert r.json()["error"]["code"] == "insufficient_quota"
    time.sleep(0.2)
    assert usage(fleet.b)["keys"]["usd"]["window"]["usd_today"] <= 0.0003


def test_parallel_requests_across_envoys(fleet):
    slow = {"x-mock-delay-ms": "1500"}
    with ThreadPoolExecutor(2) as ex:
        fs = [ex.submit(chat, s, "par", None, slow) for s in (fleet.a, fleet.b)]
        time.sleep(0.5)
        third = [chat(fleet.a, "par"), chat(fleet.b, "par")]
        assert sorted(f.result().status for f in fs) == [200, 200]
    assert [r.status for r in third] == [429, 429]
    time.sleep(0.2)
    assert chat(fleet.b, "par").status == 200  # the leases came back
    time.sleep(0.2)
    assert usage(fleet.a)["keys"]["par"]["window"]["in_flight"] == 0


def test_exact_accounting_across_envoys(fleet):
    before = usage(fleet.a)["keys"]["acct"]["total"]
    n = 40
    with ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda i: chat(fleet.a if i % 2 else fleet.b, "acct", {"stream": i % 4 == 0,
                                        "stream_options": {"include_usage": True}} if i % 4 == 0 else None),
                         range(n)))
    assert all(r.status == 200 for r in rs)
    one = chat(fleet.a, "acct").json()["usage"]
    time.sleep(0.2)  # settles leave from the outbox on the next tick
    after = usage(fleet.b)["keys"]["acct"]["total"]
    assert after["requests"] - before["requests"] == n + 1
    assert after["tokens_in"] - before["tokens_in"] == (n + 1) * one["prompt_tokens"]
    assert after["tokens_out"] - before["tokens_out"] == (n + 1) * one["completion_tokens"]
    assert after["micro_usd"] - before["micro_usd"] == (n + 1) * (one["prompt_tokens"] + 2 * one["completion_tokens"])
    assert after["partial"] == before["partial"]


def test_parallel_requests_over_both_envoys_never_overshoot(fleet):
    """40 requests at once, split over both Envoys, against one 400 tokens-per-minute team
    budget: only what the reservations allow is admitted, and each is settled exactly once."""
    wait_next_window()
    body = {"messages": [{"role": "user", "content": "count " * 20}], "max_tokens": 30}
    with ThreadPoolExecutor(40) as ex:
        rs = list(ex.map(lambda i: chat(fleet.a if i % 2 else fleet.b, "tight", body), range(40)))
    ok = [r for r in rs if r.status == 200]
    refused = [r for r in rs if r.status == 429]
    assert len(ok) + len(refused) == 40 and ok and refused
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    time.sleep(0.2)
    team = usage(fleet.a)["teams"]["epsilon"]
    print(f"\nfleet overshoot: 40 parallel over 2 Envoys, tokens_per_minute 400: admitted {len(ok)}, "
          f"tokens used {used}, overshoot {max(0, used - 400)}")
    assert used <= 400
    # Settled exactly once each: the window holds the real usage, the totals count each once.
    if time.time() % MINUTE < MINUTE - 0.5:
        assert team["window"]["tokens_this_minute"] == used
    assert team["total"]["requests"] == len(ok)
    assert team["total"]["tokens_in"] + team["total"]["tokens_out"] == used
    assert team["total"]["refused"] == len(refused)
    assert team["window"]["in_flight"] == 0


def test_cut_streams_aborts_and_connect_failures(fleet):
    r = chat(fleet.a, "cut", {"stream": True, "messages": [{"role": "user", "content": "a b c d e f g"}]},
             {"x-mock-fault": "truncate"})
    assert assemble(r.events())["error"]["code"] == "upstream_stream_cut"
    # A client that goes away while the provider is still thinking.
    s = socket.create_connection(("127.0.0.1", fleet.b.port))
    body = json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]}).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
              b"authorization: Bearer sk-cut\r\nx-mock-delay-ms: 1000\r\n"
              + f"content-length: {len(body)}\r\n\r\n".encode() + body)
    time.sleep(0.3)
    s.close()
    # A backend nobody listens on: 503, nothing charged but the request.
    r = chat(fleet.b, "cut", {"model": "mock-dead"})
    assert r.status == 503
    time.sleep(1.5)
    u = usage(fleet.a)["keys"]["cut"]
    assert u["total"]["requests"] == 3
    assert u["total"]["partial"] == 1
    assert u["window"]["in_flight"] == 0


def test_redis_restarted_during_a_request(fleet):
    """Redis goes away while a request is with the provider and is back before it ends: the
    settle reaches it, exactly."""
    with ThreadPoolExecutor(1) as ex:
        f = ex.submit(chat, fleet.a, "redis", None, {"x-mock-delay-ms": "2500"})
        time.sleep(0.5)
        fleet.redis.stop()
        time.sleep(0.5)
        fleet.redis.start()
        r = f.result()
    assert r.status == 200
    time.sleep(0.5)
    u = usage(fleet.b)["keys"]["redis"]
    assert u["total"]["requests"] == 1 and u["window"]["in_flight"] == 0
    assert u["total"]["tokens_in"] == r.json()["usage"]["prompt_tokens"]
    assert u["total"]["partial"] == 0


def test_redis_down_when_the_request_ends(fleet):
    """Redis is down when the request ends: new requests fail closed (the default), and the
    settle waits in the Envoy's outbox and is sent again until Redis is back: exact, once."""
    with ThreadPoolExecutor(1) as ex:
        f = ex.submit(chat, fleet.a, "lost", None, {"x-mock-delay-ms": "800"})
        time.sleep(0.4)
        fleet.redis.stop()
        r = f.result()
    assert r.status == 200  # served: its reserve was in before Redis went away
    down = chat(fleet.b, "lost")
    assert down.status == 503 and down.json()["error"]["code"] == "quota_unavailable"
    time.sleep(1)
    fleet.redis.start()
    deadline = time.time() + 10
    while True:
        r2 = request(fleet.a, "GET", "/v1/sluice/usage", None, {"authorization": "Bearer sk-admin"})
        # Settled (if the reaper came first, the late settle corrects it: partial back to 0).
        u = r2.json()["keys"]["lost"] if r2.status == 200 else None
        if u and u["window"]["in_flight"] == 0 and u["total"]["partial"] == 0 and u["total"]["tokens_out"]:
            break
        assert time.time() < deadline, r2.body
        time.sleep(0.2)
    assert u["total"]["requests"] == 1 and u["total"]["partial"] == 0
    assert u["total"]["tokens_in"] == r.json()["usage"]["prompt_tokens"]
    assert chat(fleet.b, "lost").status == 200


def test_a_lost_settle_is_reaped_after_its_ttl(fleet, tmp_path):
    """An Envoy killed while its request is with the provider never settles. The reservation
    is reaped after its TTL: the lease returns and the reservation stays charged, as an
    estimate (an over-charge bounded by the reservation, never an under-charge)."""
    c = sluice.Stack(tmp_path, mock_port=fleet.mock, start_mock=False, concurrency=1, max_seconds=120,
                     quiet=True, spec=spec(fleet.mock, [q.address for q in fleet.quotas]))
    c.start()
    try:
        with ThreadPoolExecutor(1) as ex:
            f = ex.submit(chat, c, "reap", None, {"x-mock-delay-ms": "3000"})
            time.sleep(0.6)
            c.procs[-1].kill()  # Envoy, with no chance to settle
            with pytest.raises(Exception):
                f.result()
    finally:
        c.stop()
    u = usage(fleet.a)["keys"]["reap"]
    assert u["window"]["in_flight"] == 1 and u["total"]["requests"] == 1
    reserved = u["window"]["tokens_this_minute"] or u["window"]["tokens_today"]
    time.sleep(TTL + 0.5)
    u = usage(fleet.a)["keys"]["reap"]
    assert u["window"]["in_flight"] == 0
    assert u["total"]["partial"] == 1
    assert u["total"]["tokens_in"] == reserved  # charged its reservation
    assert chat(fleet.b, "reap").status == 200


def test_a_quota_replica_killed_under_load(fleet):
    """60 requests on 8 connections over both Envoys; one replica is SIGKILLed while they run.
    Reserves in flight on it and the next ones are retried on the other; settles are resent
    from the outbox. Every request is served and counted once, and every lease comes back."""
    victim = fleet.quotas[0]
    body = {"stream": False}
    try:
        with ThreadPoolExecutor(8) as ex:
            fs = [ex.submit(chat, fleet.a if i % 2 else fleet.b, "kill", body, {"x-mock-delay-ms": "20"})
                  for i in range(60)]
            time.sleep(0.15)
            victim.stop(kill=True)
            rs = [f.result() for f in fs]
        assert [r.status for r in rs] == [200] * 60, [r.status for r in rs]
        used_in = sum(r.json()["usage"]["prompt_tokens"] for r in rs)
        time.sleep(0.5)
        u = usage(fleet.a)["keys"]["kill"]
        assert u["total"]["requests"] == 60 and u["window"]["in_flight"] == 0
        assert u["total"]["tokens_in"] == used_in and u["total"]["partial"] == 0
    finally:
        victim.start()


@pytest.mark.parametrize("mode", ["closed", "open"])
def test_failure_modes_when_the_service_is_unreachable(tmp_path, mode):
    m = sluice.free_port()
    dead = f"127.0.0.1:{sluice.free_port()}"
    st = sluice.Stack(tmp_path, mock_port=m, spec=spec(m, [dead], failure_mode=mode, local_share=0.2,
                                                       timeout_ms=200),
                      concurrency=1, max_seconds=120, quiet=True)
    with st:
        wait_next_window()  # four requests in one window, whatever the clock
        codes = [chat(st, "open").status for _ in range(4)]
        time.sleep(0.3)
        log = (st.run_dir / "stdout.log").read_text()
        stats = st.stats()
    if mode == "closed":
        assert codes == [503] * 4
        assert "quota=fail_closed" in log
        assert stats.get("wasmcustom.sluice_auth.fleet.fail_closed") == 4
    else:
        # Local limits on 20% of the fleet limit (10 rpm -> 2), marked in the log and metrics.
        assert codes == [200, 200, 429, 429], codes
        assert "quota=fail_open" in log
        assert stats.get("wasmcustom.sluice_auth.fleet.fail_open") == 4
