"""Where the time goes: the full chain built with the `timing` profiler (sluice-host), per
filter and callback, in µs per request, measured inside the VM (host calls included).

    .venv/bin/python bench/callbacks.py [WASM_DIR]

`make bench` builds the filters a second time with `--features sluice-host/timing` into
target/timing and runs this after bench/run.py. The profiler adds two clock reads and a counter
per callback, so the absolute latency here is a little above bench/run.py's; what is outside the
callbacks is Envoy's own work: the HTTP codecs and router, and hosting five Wasm filters
(contexts, callbacks, body buffering).
"""
import http.client
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import run as bench  # noqa: E402
import sluice  # noqa: E402

WASM = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "target/timing/wasm32-wasip1/release"
N = 2000
ORDER = ["auth", "pii", "cache", "route", "upstream"]
CALLBACKS = ["request_headers", "request_body", "response_headers", "response_body", "log"]


def counters(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?format=json&filter=sluice_timing") as r:
        return {s["name"].split("sluice_timing.", 1)[1]: s["value"] for s in json.load(r)["stats"] if "value" in s}


def main():
    if not (WASM / "sluice.wasm").exists():
        sys.exit(f"callbacks: no timing build in {WASM} (make bench builds it)")
    m = sluice.free_port()
    mock = subprocess.Popen([str(sluice.MOCK), "--port", str(m), "--max-seconds", "600"], stdout=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{m}/health", 10, mock)
    st = sluice.Stack(Path(tempfile.mkdtemp(prefix="sluice-profile-")), mock_port=m, concurrency=1, quiet=True,
                      start_mock=False, wasm_dir=WASM,
                      spec=bench.spec(m, auth=True, pii=True, cache=True))
    st.start()
    try:
        print(f"\nwhere the time goes: full chain, 300 B, unique prompts (cache misses), {N} requests at "
              "concurrency 1, Envoy --concurrency 1;\nµs per request inside each filter callback, host calls included")
        for model, route in (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic")):
            conn = http.client.HTTPConnection("127.0.0.1", st.port)
            for i in range(200):
                bench.once(conn, bench.body_for(model, 300, unique=f"warm-{i}-{time.time_ns()}"))
            before = counters(st.admin_port)
            t = time.perf_counter()
            for i in range(N):
                bench.once(conn, bench.body_for(model, 300, unique=f"{i}-{time.time_ns()}"))
            wall = (time.perf_counter() - t) / N * 1e6
            after = counters(st.admin_port)
            d = {k: after[k] - before.get(k, 0) for k in after}
            print(f"\n  {route}" + "".join(f"{c.replace('_', ' '):>18}" for c in CALLBACKS) + "      total")
            total = 0.0
            for f in ORDER:
                reqs = d.get(f"{f}.requests", 0)
                cells = [d.get(f"{f}.{c}_ns", 0) / N / 1000 for c in CALLBACKS]
                total += sum(cells)
                note = "" if reqs == N else f"   ({reqs} calls for {N} requests)"
                print(f"    {f:12}" + "".join(f"{x:18.1f}" for x in cells) + f"{sum(cells):11.1f}{note}")
            print(f"    in the filters' callbacks {total:.0f} µs of a {wall:.0f} µs round trip "
                  "(client, Envoy, mock and filters)")
    finally:
        st.stop()
        mock.terminate()


if __name__ == "__main__":
    main()
