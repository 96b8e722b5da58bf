"""Added latency of one failover hop: the same request served by the second provider of a
chain, directly vs after the first provider answered 503. Side by side, in one run.

    .venv/bin/python bench/failover.py [N]
"""
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import sluice  # noqa: E402



def timed(conn, body, headers):
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    assert r.status == 200, (r.status, r.getheaders(), data)
    return (time.perf_counter() - t) * 1e6


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    m = sluice.free_port()
    spec = {
        "backends": {
            # Never ejected: every chain request really makes the hop (an ejected first member
            # is skipped inside attempt 1 by the composite cluster, which is faster still).
            "first": sluice.mock_backend("openai", m, outlier_detection=False),
            "second": sluice.mock_backend("anthropic", m),
        },
        "retry": {"back_off_base": "0.001s", "back_off_max": "0.002s"},
        "models": {"chain": {"chain": ["first", "second"]}, "direct": {"chain": ["second"]}},
    }
    with tempfile.TemporaryDirectory() as d, sluice.Stack(Path(d), mock_port=m, spec=spec, concurrency=2,
                                                          quiet=True, max_seconds=600) as stack:
        conn = http.client.HTTPConnection("127.0.0.1", stack.port)
        msgs = [{"role": "user", "content": "hello"}]
        direct = json.dumps({"model": "direct", "messages": msgs})
        chain = json.dumps({"model": "chain", "messages": msgs})
        fail_first = {"content-type": "application/json", "x-mock-target": "openai", "x-mock-status": "503"}
        plain = {"content-type": "application/json"}
        for _ in range(200):  # warm-up
            timed(conn, direct, plain)
            timed(conn, chain, fail_first)
        a, b = [], []
        for _ in range(n):  # interleaved, so both see the same machine state
            a.append(timed(conn, direct, plain))
            b.append(timed(conn, chain, fail_first))
    p = lambda xs, q: statistics.quantiles(xs, n=100)[q - 1]  # noqa: E731
    print(f"one failover hop, {n} requests each, concurrency 1 (µs)")
    print(f"{'':22}{'p50':>9}{'p90':>9}{'p99':>9}")
    for name, xs in (("served directly", a), ("after a 503 (1 hop)", b)):
        print(f"{name:22}{p(xs, 50):9.0f}{p(xs, 90):9.0f}{p(xs, 99):9.0f}")
    print(f"{'added by the hop':22}{p(b, 50) - p(a, 50):9.0f}{p(b, 90) - p(a, 90):9.0f}{p(b, 99) - p(a, 99):9.0f}")
    print("(back-off configured to 1-2 ms here and part of the hop; the default base is 0.1 s)")


if __name__ == "__main__":
    main()
