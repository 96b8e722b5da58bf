"""Cache hit latency against a miss served by the mock, side by side (concurrency 1), through the
default gateway (auth + cache + translate), and the cache's memory after filling it past its
bound.

    .venv/bin/python bench/cache.py [N]
"""
import http.client
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import sluice  # noqa: E402


def timed(conn, body, headers):
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    assert r.status == 200, r.status
    return (time.perf_counter() - t) * 1e6, r.getheader("x-sluice-cache")


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    m = sluice.free_port()
    with tempfile.TemporaryDirectory() as d:
        # The default gateway, with the demo key's limits lifted for the benchmark.
        spec = sluice.gateway_spec(port=0, admin_port=0, mock_port=m, run_dir=Path(d), env={})
        for k in spec["auth"]["keys"]:
            k["limits"] = {}
        spec["auth"]["teams"] = {}
        with sluice.Stack(Path(d), mock_port=m, spec=spec, concurrency=2, quiet=True, max_seconds=600) as st:
            run(st, n)


def run(st, n):
    conn = http.client.HTTPConnection("127.0.0.1", st.port)
    h = {"content-type": "application/json", "authorization": "Bearer sk-sluice-demo"}
    msgs = [{"role": "user", "content": "What is the capital of France? " * 10}]
    hit = json.dumps({"model": "mock-gpt", "temperature": 0, "messages": msgs})
    miss = json.dumps({"model": "mock-gpt", "temperature": 0.5, "messages": msgs})  # bypasses the cache
    timed(conn, hit, h)
    a, b = [], []
    for _ in range(n):
        t, s = timed(conn, hit, h)
        assert s == "hit", s
        a.append(t)
        t, s = timed(conn, miss, h)
        b.append(t)
    p = lambda xs, q: statistics.quantiles(xs, n=100)[q - 1]  # noqa: E731
    print(f"cache, {n} requests each, concurrency 1 (µs, whole round trip through Envoy)")
    print(f"{'':26}{'p50':>8}{'p99':>8}")
    print(f"{'hit (local answer)':26}{p(a, 50):8.0f}{p(a, 99):8.0f}")
    print(f"{'upstream (mock, 0 delay)':26}{p(b, 50):8.0f}{p(b, 99):8.0f}")

    # Fill far past the bound (64 MiB in the default gateway) with ~40 KB answers.
    pad = "lorem ipsum " * 3300
    for i in range(2500):
        body = json.dumps({"model": "mock-gpt", "temperature": 0,
                           "messages": [{"role": "user", "content": f"{i} {pad}"}]})
        timed(conn, body, h)
    stats = urllib.request.urlopen(f"http://127.0.0.1:{st.admin_port}/stats?filter=sluice_cache").read().decode()
    memory = urllib.request.urlopen(f"http://127.0.0.1:{st.admin_port}/memory").read().decode()
    print("after storing 2500 answers of ~40 KB (100 MB) into a 64 MiB cache:")
    for line in stats.splitlines():
        if any(k in line for k in ("stored_bytes", "evictions", "stored:")):
            print("  " + line.strip())
    print("  envoy heap: " + str(int(json.loads(memory)["allocated"]) // (1 << 20)) + " MiB allocated")


if __name__ == "__main__":
    main()
