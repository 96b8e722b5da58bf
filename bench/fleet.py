"""Fleet mode's cost, side by side in one run: the added p50 of a request whose quota lives in
Redis behind sluice-quota over one whose quota lives in Envoy's shared data (concurrency 1,
the reserve's round trip is on the request's path; the settle leaves from the outbox), and the
quota service's reserve+settle throughput on one core.

Pinning: Envoy (--concurrency 1) and sluice-quota each on core 1, Redis, the mock and the load
generator on core 0, so the measured parts do not share a core with the load.

    .venv/bin/python bench/fleet.py
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import sluice  # noqa: E402
from test_auth import sha  # noqa: E402

KEY = "sk-bench"
ROUNDS, PER_ROUND = 6, 400


def pin(pid, core):
    subprocess.run(["taskset", "-a", "-pc", str(core), str(pid)], capture_output=True, check=False)


def spec(m, quota=None):
    auth = {"keys": [{"id": "bench", "sha256": sha(KEY), "team": "t",
                      "limits": {"tokens_per_minute": 10**12, "requests_per_minute": 10**9}}],
            "prices": {"mock-*": {"input": 1, "output": 2}}}
    extra = {"auth": auth}
    if quota:
        extra["quota"] = {"endpoints": [quota]}
    return sluice.mock_spec(m, **extra)


def p50(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def latency(stacks):
    body = json.dumps({"model": "mock-gpt", "messages": [{"role": "user", "content": "hello " * 40}],
                       "max_tokens": 16}).encode()
    h = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
    out = {name: [] for name in stacks}
    conns = {name: http.client.HTTPConnection("127.0.0.1", s.port, timeout=10) for name, s in stacks.items()}
    for name, c in conns.items():  # warm up
        for _ in range(100):
            c.request("POST", "/v1/chat/completions", body=body, headers=h)
            c.getresponse().read()
    for _ in range(ROUNDS):
        for name, c in conns.items():
            for _ in range(PER_ROUND):
                t = time.perf_counter()
                c.request("POST", "/v1/chat/completions", body=body, headers=h)
                r = c.getresponse()
                r.read()
                assert r.status == 200, r.status
                out[name].append((time.perf_counter() - t) * 1e6)
    return {name: p50(v) for name, v in out.items()}


def main():
    os.sched_setaffinity(0, {0})
    tmp = Path(tempfile.mkdtemp(prefix="sluice-fleet-bench-"))
    redis = sluice.Redis(tmp / "redis").start()
    pin(redis.proc.pid, 0)
    quota = sluice.QuotaService(redis.url, max_seconds=600).start()
    pin(quota.proc.pid, int(os.environ.get("QUOTA_CORE", "1")))
    m = sluice.free_port()
    local = sluice.Stack(tmp / "local", mock_port=m, spec=spec(m), concurrency=1, max_seconds=600, quiet=True)
    fleet = sluice.Stack(tmp / "fleet", mock_port=m, spec=spec(m, quota.address), concurrency=1,
                         max_seconds=600, quiet=True, start_mock=False)
    try:
        local.start()
        fleet.start()
        pin(local.procs[0].pid, 0)  # the mock
        for s in (local, fleet):
            pin(s.procs[-1].pid, 1)
        r = latency({"local": local, "fleet": fleet})
        print(f"\nfleet quotas, concurrency 1, {ROUNDS}x{PER_ROUND} requests each, interleaved:")
        print(f"  p50 local mode {r['local']:.0f} us, fleet mode {r['fleet']:.0f} us, "
              f"added {r['fleet'] - r['local']:+.0f} us (target <= 150)")
        local.stop()
        fleet.stop()
        out = subprocess.run(["taskset", "-c", "0", str(sluice.QUOTA), "bench", quota.address, "5", "32"],
                             capture_output=True, text=True, timeout=60)
        print(f"  sluice-quota on one core (Redis and the client on the other): {out.stdout.strip()} "
              f"(target >= 20000/s)")
    finally:
        local.stop()
        fleet.stop()
        quota.stop()
        redis.stop()


if __name__ == "__main__":
    main()
