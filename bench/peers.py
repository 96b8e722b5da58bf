"""make bench-peers: the same load against bare Envoy, Sluice, LiteLLM proxy (PyPI) and the
Portkey gateway (npm), each in front of the same mock provider with no added delay, side by
side in one run.

    .venv/bin/python bench/peers.py      (make bench-peers installs the peers first)

LiteLLM runs with 2 workers and a master key (it refuses to start without one), Portkey as
one Node.js process (its default); Envoy with --concurrency 2. Requests carry `max_tokens`
(Portkey, unlike Sluice and LiteLLM, does not default it for Anthropic). Latency at
concurrency 1 (gateways in turn, 25 requests each), throughput with wrk -t2 -c16.
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "bench"))
import run as bench  # noqa: E402
import sluice  # noqa: E402
import sluice_gen  # noqa: E402

LITELLM = ROOT / ".venv-peers/bin/litellm"
PORTKEY = ROOT / ".peers/node_modules/@portkey-ai/gateway/build/start-server.js"
LITELLM_KEY = "sk-litellm-bench"
ROUTES = (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic"))


def body(model, unique=None):
    return bench.body_for(model, 300, unique=unique, max_tokens=256)


class Gateway:
    def __init__(self, name, port, headers, models=("mock-gpt", "mock-claude")):
        self.name, self.port, self.headers, self.models = name, port, headers, models


def main():
    for need in (LITELLM, PORTKEY):
        if not need.exists():
            sys.exit(f"peers: {need} is missing (make bench-peers installs it)")
    tmp = Path(tempfile.mkdtemp(prefix="sluice-peers-"))
    procs, stacks, gws = [], [], []
    m = sluice.free_port()
    procs.append(subprocess.Popen([str(sluice.MOCK), "--port", str(m), "--max-seconds", "900"], stdout=subprocess.DEVNULL))
    sluice.wait_http(f"http://127.0.0.1:{m}/health", 10, procs[-1])
    try:
        bp, ba = sluice.free_port(), sluice.free_port()
        (tmp / "bare.yaml").write_text(sluice_gen.dump(bench.bare_config(bp, ba, m)))
        procs.append(subprocess.Popen([str(sluice.ENVOY), "-c", str(tmp / "bare.yaml"), "--concurrency", "2",
                                       "--log-level", "warn", "--base-id", str(ba)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        sluice.wait_http(f"http://127.0.0.1:{ba}/ready", 30, procs[-1])
        gws.append(Gateway("bare envoy (no translation)", bp, {"mock-gpt": bench.BARE_HEADERS}, ("mock-gpt",)))
        for name, kw in (("sluice, translate", {}), ("sluice, full chain", {"auth": True, "pii": True, "cache": True})):
            st = sluice.Stack(tmp / name.replace(" ", "_").replace(",", ""), mock_port=m, spec=bench.spec(m, **kw),
                              concurrency=2, quiet=True, start_mock=False).start()
            stacks.append(st)
            gws.append(Gateway(name, st.port, {k: bench.HEADERS for k in ("mock-gpt", "mock-claude")}))

        lp = sluice.free_port()
        (tmp / "litellm.yaml").write_text(json.dumps({"model_list": [
            {"model_name": "mock-gpt", "litellm_params": {"model": "openai/mock-gpt", "api_base": f"http://127.0.0.1:{m}/v1",
                                                          "api_key": "mock-openai-key"}},
            {"model_name": "mock-claude", "litellm_params": {"model": "anthropic/mock-claude", "api_base": f"http://127.0.0.1:{m}",
                                                             "api_key": "mock-anthropic-key"}}]}))
        env = {**os.environ, "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        procs.append(subprocess.Popen([str(LITELLM), "--config", str(tmp / "litellm.yaml"), "--host", "127.0.0.1",
                                       "--port", str(lp), "--num_workers", "2"], env=env,
                                      stdout=open(tmp / "litellm.log", "wb"), stderr=subprocess.STDOUT))
        sluice.wait_http(f"http://127.0.0.1:{lp}/health/liveliness", 90, procs[-1])
        lh = {"content-type": "application/json", "authorization": f"Bearer {LITELLM_KEY}"}
        gws.append(Gateway("litellm proxy", lp, {"mock-gpt": lh, "mock-claude": lh}))

        pp = sluice.free_port()
        procs.append(subprocess.Popen(["node", str(PORTKEY), f"--port={pp}", "--headless"],
                                      stdout=open(tmp / "portkey.log", "wb"), stderr=subprocess.STDOUT))
        sluice.wait_http(f"http://127.0.0.1:{pp}/", 30, procs[-1])
        ph = {"content-type": "application/json", "x-portkey-custom-host": f"http://127.0.0.1:{m}/v1"}
        gws.append(Gateway("portkey gateway", pp, {
            "mock-gpt": {**ph, "x-portkey-provider": "openai", "authorization": "Bearer mock-openai-key"},
            "mock-claude": {**ph, "x-portkey-provider": "anthropic", "authorization": "Bearer mock-anthropic-key"}}))
        run(gws)
    finally:
        for st in stacks:
            st.stop()
        for p in reversed(procs):
            p.terminate()


def run(gws):
    print(f"gateways side by side, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores; mock provider with no added "
          "delay; ~300 B requests, unique prompts")
    for model, route in ROUTES:
        here = [g for g in gws if model in g.models]
        conns = {g.name: http.client.HTTPConnection("127.0.0.1", g.port) for g in here}
        for g in here:  # warm-up; also proves each gateway answers this route
            for i in range(20):
                bench.once(conns[g.name], body(model, f"w{i}-{time.time_ns()}"), g.headers[model])
        lat = {g.name: [] for g in here}
        for r in range(12):
            for g in here:
                for i in range(bench.BLOCK):
                    lat[g.name].append(bench.once(conns[g.name], body(model, f"{r}-{i}-{time.time_ns()}"), g.headers[model]))
        print(f"\n  {route:30}latency p50 / p99 µs (c=1)   throughput req/s (wrk -t2 -c16, 5 s)")
        for g in here:
            rps, bad = bench.wrk(g.port, body(model), 5, unique=True, headers=g.headers[model])
            xs = lat[g.name]
            print(f"    {g.name:28}{statistics.median(xs):8.0f} / {bench.p(xs, 99):6.0f}   {rps:12.0f}"
                  + (f"   ({bad} non-2xx)" if bad else ""))


if __name__ == "__main__":
    main()
