#!/usr/bin/env python3
"""Render envoy/gateway.yaml for this environment and run it with the mock provider.

`make run` calls `sluice.py run`; the integration tests import `Stack` to start the same
gateway on ports they pick.

Provider keys are read from OPENAI_API_KEY, ANTHROPIC_API_KEY and GEMINI_API_KEY and written
only to SDS secret files (mode 0600) under the run directory; they are never printed and never
placed in a wasm configuration. A provider without a key is left out (its models answer 404).
"""
from __future__ import annotations

import json
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

ROOT = Path(__file__).resolve().parent.parent
WASM = ROOT / "target/wasm32-wasip1/release/sluice_translate.wasm"
MOCK = ROOT / "target/release/sluice-mock"
ENVOY = ROOT / ".venv/bin/envoy"

# Real providers: the cluster that serves them, their model globs, routes, and key handling.
PROVIDERS = {
    "openai": {
        "key_env": "OPENAI_API_KEY",
        "url_env": "OPENAI_BASE_URL",
        "default_url": "https://api.openai.com/v1",
        "models": ["gpt-*", "o1*", "o3*", "o4*"],
        "routes": ["openai-gpt", "openai-o1", "openai-o3", "openai-o4"],
    },
    "anthropic": {
        "key_env": "ANTHROPIC_API_KEY",
        "url_env": "ANTHROPIC_BASE_URL",
        "default_url": "https://api.anthropic.com/v1",
        "models": ["claude-*"],
        "routes": ["anthropic-claude"],
    },
    "gemini": {
        "key_env": "GEMINI_API_KEY",
        "url_env": "GEMINI_BASE_URL",
        "default_url": "https://generativelanguage.googleapis.com/v1beta",
        "models": ["gemini-*"],
        "routes": ["gemini-gemini"],
    },
}


class _PlainDumper(yaml.SafeDumper):
    """Writes every object in full (no YAML anchors/aliases) so the rendered file reads plainly."""

    def ignore_aliases(self, data):
        return True


def dump(cfg: dict) -> str:
    return yaml.dump(cfg, Dumper=_PlainDumper, sort_keys=False)


def _walk(node, fn):
    fn(node)
    if isinstance(node, dict):
        for v in node.values():
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)


def write_secret(path: Path, name: str, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"resources": [{
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": name,
        "generic_secret": {"secret": {"inline_string": value}},
    }]}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f)
    os.chmod(path, 0o600)


def _injector(cluster: dict) -> dict:
    for f in cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["http_filters"]:
        if f["name"] == "envoy.filters.http.credential_injector":
            return f["typed_config"]["credential"]["typed_config"]
    raise KeyError("credential_injector")


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def point_cluster(cluster: dict, url: str, provider: str, env: dict) -> None:
    """Points a provider cluster at a base URL (https or plain http, any port and path)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise SystemExit(f"{PROVIDERS[provider]['url_env']} must be an http(s) URL, got {url!r}")
    tls = u.scheme == "https"
    port = u.port or (443 if tls else 80)
    ep = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    ep["endpoint"]["address"]["socket_address"] = {"address": u.hostname, "port_value": port}
    md = ep["metadata"]["filter_metadata"]["sluice"]
    default_port = 443 if tls else 80
    md["authority"] = u.hostname if port == default_port else f"{u.hostname}:{port}"
    md["base_path"] = u.path.rstrip("/") or "/"
    cluster["type"] = "STATIC" if _is_ip(u.hostname) else "LOGICAL_DNS"
    if tls:
        cluster["transport_socket"]["typed_config"]["sni"] = u.hostname
    else:
        cluster.pop("transport_socket", None)
    if provider == "openai" and (u.hostname.endswith(".azure.com") or "/openai/deployments" in u.path):
        # Azure OpenAI: deployment path, api-version query, api-key header.
        md["provider"] = "azure"
        md["base_path"] = u.path.rstrip("/") if "/openai/deployments" in u.path else "/openai/deployments"
        md["api_version"] = env.get("OPENAI_API_VERSION", "2024-10-21")
        inj = _injector(cluster)
        inj["header"] = "api-key"
        inj.pop("header_value_prefix", None)


def render(*, port: int, admin_port: int, mock_port: int, run_dir: Path, env: dict | None = None,
           base: Path = ROOT / "envoy/gateway.yaml") -> dict:
    env = dict(os.environ if env is None else env)
    cfg = yaml.safe_load(base.read_text())
    # YAML aliases load as shared objects: copy each use so that edits stay local.
    cfg = json.loads(json.dumps(cfg))
    listen = env.get("SLUICE_LISTEN_ADDRESS", "127.0.0.1")
    cfg["admin"]["address"]["socket_address"].update(address=listen, port_value=admin_port)
    listener = cfg["static_resources"]["listeners"][0]
    listener["address"]["socket_address"].update(address=listen, port_value=port)

    def fix_paths(n):
        if isinstance(n, dict):
            local = n.get("local")
            if isinstance(local, dict) and "filename" in local:
                local["filename"] = str(WASM)
            pcs = n.get("path_config_source")
            if isinstance(pcs, dict) and not os.path.isabs(pcs["path"]):
                pcs["path"] = str(ROOT / pcs["path"])
    _walk(cfg, fix_paths)

    clusters = cfg["static_resources"]["clusters"]
    for c in clusters:
        if c["name"].startswith("mock-"):
            ep = c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
            ep["endpoint"]["address"]["socket_address"]["port_value"] = mock_port

    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route_filter = hcm["http_filters"][0]["typed_config"]["config"]["configuration"]
    route_conf = json.loads(route_filter["value"])
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    for name, p in PROVIDERS.items():
        key = env.get(p["key_env"], "").strip()
        cluster = next(c for c in clusters if c["name"] == name)
        if not key:
            clusters.remove(cluster)
            routes[:] = [r for r in routes if r["name"] not in p["routes"]]
            route_conf["models"] = [m for m in route_conf["models"] if m not in p["models"]]
            continue
        secret = run_dir / "secrets" / f"{name}.yaml"
        write_secret(secret, f"{name}-key", key)
        _injector(cluster)["credential"]["sds_config"]["path_config_source"]["path"] = str(secret)
        point_cluster(cluster, env.get(p["url_env"]) or p["default_url"], name, env)
    route_filter["value"] = json.dumps(route_conf)
    return cfg


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


class Stack:
    """The mock provider and Envoy with the rendered gateway config."""

    def __init__(self, run_dir: Path, *, port: int | None = None, admin_port: int | None = None,
                 mock_port: int | None = None, env: dict | None = None, concurrency: int = 2,
                 log_level: str = "warn", max_seconds: int | None = None, quiet: bool = False,
                 mock_args: list[str] | None = None):
        self.run_dir = Path(run_dir)
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.mock_port = mock_port or free_port()
        self.env = env
        self.concurrency = concurrency
        self.log_level = log_level
        self.max_seconds = max_seconds
        self.quiet = quiet
        self.mock_args = mock_args or []
        self.procs: list[subprocess.Popen] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Stack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        out = subprocess.DEVNULL if self.quiet else None
        mock_cmd = [str(MOCK), "--port", str(self.mock_port), *self.mock_args]
        if self.max_seconds:
            mock_cmd += ["--max-seconds", str(self.max_seconds)]
        self.procs.append(subprocess.Popen(mock_cmd, stdout=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{self.mock_port}/health", 10, self.procs[-1])
        cfg = render(port=self.port, admin_port=self.admin_port, mock_port=self.mock_port,
                     run_dir=self.run_dir, env=self.env)
        path = self.run_dir / "gateway.yaml"
        path.write_text(dump(cfg))
        envoy_cmd = [str(ENVOY), "-c", str(path), "--concurrency", str(self.concurrency),
                     "--log-level", self.log_level, "--base-id", str(self.admin_port),
                     "--log-path", str(self.run_dir / "envoy.log")]
        self.procs.append(subprocess.Popen(envoy_cmd, stdout=out, stderr=subprocess.STDOUT if self.quiet else None,
                                           start_new_session=True))
        try:
            wait_http(f"http://127.0.0.1:{self.admin_port}/ready", 60, self.procs[-1])
        except Exception:
            self.stop()
            raise
        return self

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
    stack = Stack(ROOT / ".run", port=port, admin_port=admin, mock_port=mock, log_level="warn")
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
  Envoy admin: http://127.0.0.1:{admin}
  Models:      {chr(10).join(('  ' * 7) + s if i else s for i, s in enumerate(served))}
Try:
  curl -s {stack.base_url}/v1/chat/completions -H 'content-type: application/json' \\
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
                     mock_port=int(os.environ.get("SLUICE_MOCK_PORT", "18080")), run_dir=ROOT / ".run")
        Path(sys.argv[2]).write_text(dump(cfg))
    else:
        print("usage: sluice.py run | render OUT", file=sys.stderr)
        sys.exit(2)
