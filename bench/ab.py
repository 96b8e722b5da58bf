"""Two builds of the filters side by side: the full chain from WASM_DIR_A and from WASM_DIR_B,
each its own Envoy in front of one mock, measured in one run (latency at concurrency 1 in
alternating blocks, then wrk throughput alternating, either first in turn). For before/after numbers
of an optimisation: on a shared VM, runs minutes apart differ more than most changes do. Run it
with the same build as A and B once to see the noise of a comparison on the machine.

    .venv/bin/python bench/ab.py WASM_DIR_A WASM_DIR_B [--rounds N] [--size BYTES]
"""
import http.client
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


MODULES = {"sluice-auth": "sluice_auth", "sluice-pii": "sluice_pii", "sluice-cache": "sluice_cache"}


class Stack(sluice.Stack):
    """A build from before the filters became one module (a directory with sluice_auth.wasm,
    sluice_pii.wasm, ... and no sluice.wasm) gets one module and VM per filter, as then."""

    def _generate(self, spec):
        cfg = super()._generate(spec)
        module = self.wasm_dir / "sluice.wasm"
        if module.exists() and b"forward_headers" not in module.read_bytes():
            # A build from before the header allow-lists: its configs had no such fields.
            strip_new_fields(cfg)
        if module.exists():
            return cfg

        for c in sluice.sluice_gen.wasm_configs(cfg):
            module = MODULES.get(c["root_id"], "sluice_translate")
            c["vm_config"]["vm_id"] = module.replace("_", "-")
            c["vm_config"]["code"]["local"]["filename"] = str(self.wasm_dir / f"{module}.wasm")
        return cfg


NEW_FIELDS = {"forward_headers", "return_headers", "known_models", "models"}


def strip_new_fields(cfg):
    """Removes the configuration fields that builds before the contract module refuse."""
    import json

    def walk(o):
        if isinstance(o, dict):
            md = o.get("filter_metadata", {}).get("sluice")
            if md:
                md.pop("forward_headers", None)
                md.pop("return_headers", None)
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(cfg)
    for c in sluice.sluice_gen.wasm_configs(cfg):
        v = c["configuration"]
        conf = json.loads(v["value"])
        conf.pop("known_models", None)
        if c["root_id"] == "sluice-auth":
            conf.pop("models", None)
        v["value"] = json.dumps(conf, separators=(",", ":"))


def main():
    args = [a for i, a in enumerate(sys.argv[1:], 1) if not a.startswith("--") and not sys.argv[i - 1].startswith("--")]
    if len(args) != 2:
        sys.exit(__doc__)
    opt = lambda name, default: int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default  # noqa: E731
    rounds, size = opt("--rounds", 40), opt("--size", 300)
    m = sluice.free_port()
    mock = subprocess.Popen([str(sluice.MOCK), "--port", str(m), "--max-seconds", "900"], stdout=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{m}/health", 10, mock)
    stacks = {}
    try:
        for label, d in zip("AB", args):
            st = Stack(Path(tempfile.mkdtemp(prefix=f"sluice-ab-{label}-")), mock_port=m, concurrency=2,
                              quiet=True, start_mock=False, wasm_dir=Path(d).resolve(),
                              spec=bench.spec(m, auth=True, pii=True, cache=True))
            stacks[label] = st.start()
        print(f"full chain, A = {args[0]}, B = {args[1]}; {size} B, unique prompts (misses)")
        for model, route in (("mock-gpt", "OpenAI->OpenAI"), ("mock-claude", "OpenAI->Anthropic")):
            conns = {k: http.client.HTTPConnection("127.0.0.1", st.port) for k, st in stacks.items()}
            xs = {k: [] for k in stacks}
            for r in range(rounds + 1):
                for k in ("AB" if r % 2 else "BA"):  # either goes first in turn
                    for i in range(bench.BLOCK):
                        t = bench.once(conns[k], bench.body_for(model, size, unique=f"{k}{r}-{i}-{time.time_ns()}"))
                        if r:  # the first round warms up
                            xs[k].append(t)
            a, b = (statistics.median(xs[k]) for k in "AB")
            print(f"  {route}, latency p50 / p99 µs:  A {a:6.0f} / {bench.p(xs['A'], 99):5.0f}"
                  f"   B {b:6.0f} / {bench.p(xs['B'], 99):5.0f}   B - A {b - a:+5.0f} µs")
            rps = {k: [] for k in stacks}
            for r in range(4):
                for k in ("AB" if r % 2 else "BA"):
                    rps[k].append(bench.wrk(stacks[k].port, bench.body_for(model, size), 5, unique=True)[0])
            a, b = (sum(rps[k]) / len(rps[k]) for k in "AB")
            print(f"  {route}, throughput req/s (wrk -t2 -c16, 4 x 5 s each):  A {a:6.0f}   B {b:6.0f}   B / A {b / a:5.2f}")
    finally:
        for st in stacks.values():
            st.stop()
        mock.terminate()


if __name__ == "__main__":
    main()
