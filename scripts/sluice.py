#!/usr/bin/env python3
"""Render the gateway for this environment and run it with the mock provider.

`make run` calls `sluice.py run`; the integration tests import `Stack` to start the same
gateway on ports they pick. The config comes from envoy/specs/gateway.yaml through
scripts/sluice_gen.py, adapted to the environment (ports, provider keys and base URLs).

Provider keys are read from OPENAI_API_KEY, ANTHROPIC_API_KEY and GEMINI_API_KEY and written
only to SDS secret files (mode 0600) under the run directory; they are never printed and never
placed in a wasm configuration. A provider without a key is left out (its models answer 404).

SLUICE_SPEC picks another spec. SLUICE_REDIS_URL (redis://HOST:PORT) switches quotas to fleet
mode: `run` starts a sluice-quota replica on SLUICE_QUOTA_PORT (default 7070) against that Redis
and points the gateway at it. Run files live in .run/<SLUICE_PORT>, so several gateways of one
checkout (a fleet on one machine) do not share them.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sluice_gen  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WASM_DIR = ROOT / "target/wasm32-wasip1/release"
MOCK = ROOT / "target/release/sluice-mock"
QUOTA = ROOT / "target/release/sluice-quota"
ENVOY = ROOT / ".venv/bin/envoy"

# Real providers in envoy/specs/gateway.yaml: the backend that serves them, their models, and
# where their key and base URL come from.
PROVIDERS = {
    "openai": {"key_env": "OPENAI_API_KEY", "url_env": "OPENAI_BASE_URL", "models": ["gpt-*", "o1*", "o3*", "o4*", "text-embedding-*"]},
    "anthropic": {"key_env": "ANTHROPIC_API_KEY", "url_env": "ANTHROPIC_BASE_URL", "models": ["claude-*"]},
    "gemini": {"key_env": "GEMINI_API_KEY", "url_env": "GEMINI_BASE_URL", "models": ["gemini-*"]},
}
MOCK_DEFAULT = "127.0.0.1:18080"


MOCK_PATHS = {"openai": "/v1", "anthropic": "/v1", "gemini": "/v1beta", "bedrock": "", "vertex": ""}
MOCK_AWS_CREDENTIALS = ROOT / "envoy/secrets/mock-aws-credentials"


def mock_backend(provider: str, port: int, **extra) -> dict:
    """A spec backend for the mock provider speaking `provider`, with its stub key (Bedrock:
    the mock's AWS credentials file, which Envoy's signer reads; Vertex: its access token)."""
    b = {"provider": provider, "url": f"http://127.0.0.1:{port}{MOCK_PATHS[provider]}",
         # The mock's test controls (x-mock-status, x-mock-tag...) pass the header allow-list.
         "forward_headers": ["x-mock-*"], "return_headers": ["x-mock-*"]}
    if provider == "bedrock":
        b["credentials"] = {"source": "file", "file": str(MOCK_AWS_CREDENTIALS)}
    else:
        b["secret"] = str(ROOT / f"envoy/secrets/mock-{provider}.yaml")
    if provider == "vertex":
        b["project"] = "sluice-mock"
    return {**b, **extra}


def mock_spec(port: int, **extra) -> dict:
    """A spec with the three mock backends (OpenAI, Anthropic and Gemini formats) serving
    mock-gpt, mock-claude and mock-gemini; `extra` adds or replaces top-level keys."""
    return {
        "backends": {f"mock-{p}": mock_backend(p, port) for p in ("openai", "anthropic", "gemini")},
        "models": {"mock-gpt": {"chain": ["mock-openai"]}, "mock-claude": {"chain": ["mock-anthropic"]},
                   "mock-gemini": {"chain": ["mock-gemini"]}},
        **extra,
    }


def write_secret(path: Path, value: str) -> None:
    """An SDS file with one generic secret, named after the file (sluice-gen's convention)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": path.stem,
        "generic_secret": {"secret": {"inline_string": value}},
    }]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    os.chmod(path, 0o600)


def gateway_spec(*, port: int, admin_port: int, mock_port: int, run_dir: Path, env: dict) -> dict:
    """envoy/specs/gateway.yaml adapted to this environment."""
    spec = yaml.safe_load(Path(env.get("SLUICE_SPEC") or ROOT / "envoy/specs/gateway.yaml").read_text())
    if env.get("SLUICE_REDIS_URL"):
        quota = dict(spec.get("quota") or {})
        quota["endpoints"] = [f"127.0.0.1:{env.get('SLUICE_QUOTA_PORT', '7070')}"]
        spec["quota"] = quota
    listen = env.get("SLUICE_LISTEN_ADDRESS", "127.0.0.1")
    spec["listen"], spec["admin"], spec["wasm_dir"] = f"{listen}:{port}", f"{listen}:{admin_port}", str(WASM_DIR)
    for name, b in spec["backends"].items():
        if b.get("secret"):
            b["secret"] = str(ROOT / b["secret"])
        if (b.get("credentials") or {}).get("file"):
            b["credentials"] = {**b["credentials"], "file": str(ROOT / b["credentials"]["file"])}
        if name.startswith("mock-"):
            b["url"] = b["url"].replace(MOCK_DEFAULT, f"127.0.0.1:{mock_port}")
    # Extra headers every backend passes on (comma-separated names or globs), e.g. a private
    # endpoint's own controls; the allow-lists hold everything else back.
    for var, field in (("SLUICE_FORWARD_HEADERS", "forward_headers"), ("SLUICE_RETURN_HEADERS", "return_headers")):
        extra = [h.strip().lower() for h in env.get(var, "").split(",") if h.strip()]
        for b in spec["backends"].values():
            if extra:
                b[field] = sorted(set(b.get(field, [])) | set(extra))
    for name, p in PROVIDERS.items():
        key = env.get(p["key_env"], "").strip()
        b = spec["backends"].get(name)
        if b is None:
            continue
        if not key:
            drop_backend(spec, name)
            continue
        secret = run_dir / "secrets" / f"{name}.yaml"
        write_secret(secret, key)
        b["secret"] = str(secret)
        url = env.get(p["url_env"]) or b["url"]
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SystemExit(f"{p['url_env']} must be an http(s) URL, got {url!r}")
        b["url"] = url
        if name == "openai" and (u.hostname.endswith(".azure.com") or "/openai/deployments" in u.path):
            # Azure OpenAI: deployment path, api-version query, api-key header.
            b.update(provider="azure", name="azure", api_version=env.get("OPENAI_API_VERSION", "2024-10-21"))
    # Bedrock: signed by Envoy with the AWS credentials of its environment (Envoy's default
    # chain reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN).
    b = spec["backends"].get("bedrock")
    if b is not None:
        if env.get("AWS_ACCESS_KEY_ID", "").strip() and env.get("AWS_SECRET_ACCESS_KEY", "").strip():
            b["region"] = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
            b["credentials"] = {"source": "default"}
            if env.get("BEDROCK_BASE_URL"):
                b["url"] = env["BEDROCK_BASE_URL"]
        else:
            drop_backend(spec, "bedrock")
    # Vertex: an OAuth2 access token (a refresher would rewrite the secret file; Envoy reloads it).
    b = spec["backends"].get("vertex")
    if b is not None:
        token, project = env.get("VERTEX_ACCESS_TOKEN", "").strip(), env.get("VERTEX_PROJECT", "").strip()
        if token and project:
            secret = run_dir / "secrets" / "vertex.yaml"
            write_secret(secret, token)
            b.update(secret=str(secret), project=project, location=env.get("VERTEX_LOCATION") or "us-central1")
            if env.get("VERTEX_BASE_URL"):
                b["url"] = env["VERTEX_BASE_URL"]
        else:
            drop_backend(spec, "vertex")
    return spec


def drop_backend(spec: dict, name: str) -> None:
    """Removes a backend and every model that would route to it."""
    del spec["backends"][name]
    for model, m in list(spec["models"].items()):
        members = m.get("chain") or list((m.get("split") or {}).keys())
        if any(str(e).partition(":")[0] == name for e in members):
            del spec["models"][model]


def render(*, port: int, admin_port: int, mock_port: int, run_dir: Path, env: dict | None = None) -> dict:
    env = dict(os.environ if env is None else env)
    return sluice_gen.generate(gateway_spec(port=port, admin_port=admin_port, mock_port=mock_port,
                                            run_dir=run_dir, env=env))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready after {timeout}s")


def wait_tcp(port: int, proc: subprocess.Popen, timeout: float = 10,
             hello: tuple[bytes, bytes] | None = None) -> None:
    """Waits until `proc` accepts connections on `port` (and answers `hello[0]` with a reply
    starting `hello[1]`); fails at once if the process exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                if hello is None:
                    return
                c.sendall(hello[0])
                if c.recv(64).startswith(hello[1]):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} not listening on {port} after {timeout}s")


def stop_process(proc: subprocess.Popen | None, kill: bool = False) -> None:
    if proc and proc.poll() is None:
        proc.kill() if kill else proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Redis:
    """A redis-server of its own on a loopback port: no persistence, stops with the test."""

    def __init__(self, run_dir: Path, port: int | None = None, persist: bool = False):
        """`persist`: an append-only file fsynced on every write, so a restart keeps the data."""
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.persist = persist
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "Redis":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--dir", str(self.run_dir),
                                      *(["--appendonly", "yes", "--appendfsync", "always"] if self.persist
                                        else ["--appendonly", "no"]),
                                      "--loglevel", "warning"], stdout=subprocess.DEVNULL)
        wait_tcp(self.port, self.proc, hello=(b"PING\r\n", b"+PONG"))
        return self

    def stop(self) -> None:
        stop_process(self.proc)


class QuotaService:
    """One sluice-quota replica."""

    def __init__(self, redis_url: str, port: int | None = None, max_seconds: int | None = None):
        self.redis_url = redis_url
        self.port = port or free_port()
        self.max_seconds = max_seconds
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "QuotaService":
        life = ["--max-seconds", str(self.max_seconds)] if self.max_seconds else []
        self.proc = subprocess.Popen([str(QUOTA), "--listen", self.address, "--redis", self.redis_url, *life],
                                     stderr=subprocess.DEVNULL if os.environ.get("CI") else None)
        wait_tcp(self.port, self.proc)
        return self

    def stop(self, kill: bool = False) -> None:
        stop_process(self.proc, kill)


class Stack:
    """The mock provider and Envoy with the rendered gateway config."""

    def __init__(self, run_dir: Path, *, port: int | None = None, admin_port: int | None = None,
                 mock_port: int | None = None, env: dict | None = None, concurrency: int = 2,
                 log_level: str = "warn", max_seconds: int | None = None, quiet: bool = False,
                 mock_args: list[str] | None = None, spec: dict | None = None,
                 extra_mocks: list[list[str]] | None = None, lds: bool = False, start_mock: bool = True,
                 wasm_dir: Path | None = None, cpus: str | None = None):
        """`spec`: run this sluice-gen spec instead of the default gateway (listen, admin and
        wasm are filled in). `extra_mocks`: more mock instances, each given as its arguments.
        `lds`: serve the listener from a file (LDS) so that `reload()` can change it live.
        `wasm_dir`: the built filters to load (default: the release build).
        `cpus`: pin Envoy to these CPUs (`taskset -c`), for benchmarks."""
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.mock_port = mock_port or free_port()
        self.env = env
        self.concurrency = concurrency
        self.cpus = cpus
        self.log_level = log_level
        self.max_seconds = max_seconds
        self.quiet = quiet
        self.mock_args = mock_args or []
        self.spec = spec
        self.extra_mocks = extra_mocks or []
        self.lds = lds
        self.start_mock = start_mock  # False: a mock already listens on mock_port
        self.wasm_dir = Path(wasm_dir or WASM_DIR)
        self.procs: list[subprocess.Popen] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/stats?format=json", timeout=5) as r:
            import json
            data = json.load(r)
        return {s["name"]: s["value"] for s in data["stats"] if "value" in s}

    def start(self) -> "Stack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.run_dir / "stdout.log", "ab") if self.quiet else None  # the access log
        life = ["--max-seconds", str(self.max_seconds)] if self.max_seconds else []
        own = [["--port", str(self.mock_port), *self.mock_args]] if self.start_mock else []
        for args in [*own, *self.extra_mocks]:
            self.procs.append(subprocess.Popen([str(MOCK), *args, *life], stdout=subprocess.DEVNULL))
            port = args[args.index("--port") + 1]
            wait_http(f"http://127.0.0.1:{port}/health", 10, self.procs[-1])
        if self.spec is not None:
            cfg = self._generate(self.spec)
        else:
            cfg = render(port=self.port, admin_port=self.admin_port, mock_port=self.mock_port,
                         run_dir=self.run_dir, env=self.env)
        if self.lds:
            cfg = self._split_lds(cfg)
        path = self.run_dir / "gateway.yaml"
        path.write_text(sluice_gen.dump(cfg))
        envoy_cmd = [str(ENVOY), "-c", str(path), "--concurrency", str(self.concurrency),
                     "--log-level", self.log_level, "--base-id", str(self.admin_port),
                     "--log-path", str(self.run_dir / "envoy.log")]
        if self.cpus:
            envoy_cmd = ["taskset", "-c", self.cpus, *envoy_cmd]
        self.procs.append(subprocess.Popen(envoy_cmd, stdout=out, stderr=subprocess.STDOUT if self.quiet else None,
                                           start_new_session=True))
        try:
            wait_http(f"http://127.0.0.1:{self.admin_port}/ready", 60, self.procs[-1])
        except Exception:
            self.stop()
            raise
        return self

    def _generate(self, spec: dict) -> dict:
        return sluice_gen.generate({**spec, "listen": f"127.0.0.1:{self.port}",
                                    "admin": f"127.0.0.1:{self.admin_port}", "wasm_dir": str(self.wasm_dir)})

    def _split_lds(self, cfg: dict) -> dict:
        """Moves the listener to lds.yaml (replaced atomically: Envoy watches for the rename)."""
        listeners = cfg["static_resources"].pop("listeners")
        doc = {"resources": [{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **l}
                             for l in listeners]}
        tmp = self.run_dir / "lds.yaml.tmp"
        tmp.write_text(sluice_gen.dump(doc))
        os.replace(tmp, self.run_dir / "lds.yaml")
        cfg["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3",
                                                   "path_config_source": {"path": str(self.run_dir / "lds.yaml")}}}
        return cfg

    def reload(self, spec: dict) -> None:
        """Applies a new spec's listener (keys, limits, filters) without restarting Envoy."""
        assert self.lds, "reload needs Stack(lds=True)"
        self._split_lds(self._generate(spec))

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(self.procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run() -> None:
    port = int(os.environ.get("SLUICE_PORT", "10000"))
    admin = int(os.environ.get("SLUICE_ADMIN_PORT", "9901"))
    mock = int(os.environ.get("SLUICE_MOCK_PORT", "18080"))
    quota = None
    redis_url = os.environ.get("SLUICE_REDIS_URL", "").strip()
    if redis_url:
        quota = QuotaService(redis_url, port=int(os.environ.get("SLUICE_QUOTA_PORT", "7070"))).start()
    stack = Stack(ROOT / ".run" / str(port), port=port, admin_port=admin, mock_port=mock, log_level="warn")
    if quota:
        stack.procs.append(quota.proc)
    served = ["mock-gpt (OpenAI format)", "mock-claude (Anthropic Messages)", "mock-gemini (Gemini)"]
    for name, p in PROVIDERS.items():
        if os.environ.get(p["key_env"], "").strip():
            served.append(f"{', '.join(p['models'])} -> {name}")
    stack.start()

    def stop(*_):
        stack.stop()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"""
Sluice is running.
  OpenAI API:  {stack.base_url}/v1   (POST /v1/chat/completions, GET /v1/models)
  API key:     sk-sluice-demo   (the demo key of envoy/specs/gateway.yaml; usage: GET /v1/sluice/usage)
  Envoy admin: http://127.0.0.1:{admin}
  Quotas:      {f"fleet (sluice-quota on {quota.address}, Redis {redis_url})" if quota else "local (this Envoy's counters; SLUICE_REDIS_URL=redis://... for fleet mode)"}
  Models:      {chr(10).join(('  ' * 7) + s if i else s for i, s in enumerate(served))}
Try:
  curl -s {stack.base_url}/v1/chat/completions -H 'authorization: Bearer sk-sluice-demo' \\
    -H 'content-type: application/json' \\
    -d '{{"model":"mock-claude","messages":[{{"role":"user","content":"Hello!"}}]}}'
Ctrl-C stops Envoy and the mock provider.
""", flush=True)
    while True:
        for p in stack.procs:
            if p.poll() is not None:
                print(f"sluice: {p.args[0]} exited with {p.returncode}", file=sys.stderr)
                stack.stop()
                sys.exit(1)
        time.sleep(0.5)


if __name__ == "__main__":
    if sys.argv[1:] == ["run"]:
        run()
    elif sys.argv[1:2] == ["render"]:
        # sluice.py render OUT: writes the config `make run` would use (for inspection).
        cfg = render(port=int(os.environ.get("SLUICE_PORT", "10000")),
                     admin_port=int(os.environ.get("SLUICE_ADMIN_PORT", "9901")),
                     mock_port=int(os.environ.get("SLUICE_MOCK_PORT", "18080")),
                     run_dir=ROOT / ".run" / os.environ.get("SLUICE_PORT", "10000"))
        Path(sys.argv[2]).write_text(sluice_gen.dump(cfg))
    else:
        print("usage: sluice.py run | render OUT", file=sys.stderr)
        sys.exit(2)
