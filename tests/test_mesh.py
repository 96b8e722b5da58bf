"""Sluice as Istio deploys it, without a cluster: the shipped manifests (deploy/istio/) are turned
into the Envoy configuration a sidecar, or an egress gateway, would run (scripts/istio_sim.py),
with the module pulled from the OCI image `make oci` writes, and driven end to end against the
mock provider.

- Sidecar egress: an app with the plain `openai` SDK, its provider URL unchanged
  (http://api.openai.com/v1) and a placeholder key, reaches its own sidecar (here as an HTTP
  proxy, where Istio captures with iptables); the sidecar authenticates the workload by its node
  metadata, redacts PII, injects the real key, and charges the namespace's team.
- Egress gateway: workloads present mesh certificates with SPIFFE URI SANs (made here); two map
  to two teams, an unknown one is refused.
"""
import datetime
import ipaddress
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx2
import openai
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import sluice
from conftest import request

DEPLOY = sluice.ROOT / "deploy/istio"
EMAIL = "ann.lee@corp.example"


def mock_key_secret(manifest: Path, out: Path) -> None:
    """The manifest's Secret (an SDS document), as the kubelet mounts it, with the mock's key."""
    secret = next(d for d in yaml.safe_load_all(manifest.read_text()) if d and d["kind"] == "Secret")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in secret["stringData"].items():
        (out / name).write_text(text.replace("sk-REPLACE-ME", "mock-openai-key"))


def start_proxy(tmp: Path, manifest: Path, role: str, mock_port: int, ns: str, sa: str, labels=(), tls=None):
    oci = tmp / "oci"
    subprocess.run([sys.executable, str(sluice.ROOT / "scripts/oci.py"), "--out", str(oci)], check=True,
                   capture_output=True)
    mock_key_secret(manifest, tmp / "secrets")
    port, admin = sluice.free_port(), sluice.free_port()
    cmd = [sys.executable, str(sluice.ROOT / "scripts/istio_sim.py"), "--manifests", str(manifest), "--role", role,
           "--listen", f"127.0.0.1:{port}", "--admin", f"127.0.0.1:{admin}", "--oci", str(oci),
           "--namespace", ns, "--service-account", sa, "--resolve", f"api.openai.com=127.0.0.1:{mock_port}",
           "--mount", f"/var/lib/sluice={tmp}", "--mount", f"/etc/sluice/secrets={tmp / 'secrets'}",
           "--plaintext-upstream", "-o", str(tmp / f"{role}.yaml")]
    for k, v in labels:
        cmd += ["--label", f"{k}={v}"]
    if tls:
        cmd += ["--tls", *tls]
    subprocess.run(cmd, check=True)
    subprocess.run([str(sluice.ENVOY), "--mode", "validate", "-c", str(tmp / f"{role}.yaml"), "--log-level", "error"],
                   check=True, capture_output=True)
    proc = subprocess.Popen([str(sluice.ENVOY), "-c", str(tmp / f"{role}.yaml"), "--concurrency", "1",
                             "--log-level", "warn", "--base-id", str(admin), "--log-path", str(tmp / "envoy.log")],
                            stdout=open(tmp / "access.log", "ab"), stderr=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{admin}/ready", 30, proc)
    return proc, port


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    port = sluice.free_port()
    # Every request the mock gets is remembered as "last" (the manifests pass no test headers).
    proc = subprocess.Popen([str(sluice.MOCK), "--port", str(port), "--max-seconds", "600",
                             "--default", "x-mock-tag=last"], stdout=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{port}/health", 10, proc)
    yield port
    sluice.stop_process(proc)


def last(mock_port):
    return request(None, "GET", "/_mock/requests/last", port=mock_port).json()


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory, mock):
    tmp = tmp_path_factory.mktemp("sidecar")
    proc, port = start_proxy(tmp, DEPLOY / "sidecar-egress.yaml", "sidecar", mock, "shop", "checkout",
                             labels=[("sluice.io/egress", "enabled"), ("app", "checkout")])
    yield port
    sluice.stop_process(proc)


def app_client(port, key="sk-placeholder"):
    """An app as it is written: the SDK, the provider's URL; its traffic goes to its sidecar."""
    return openai.OpenAI(base_url="http://api.openai.com/v1", api_key=key, max_retries=0,
                         http_client=httpx2.Client(proxy=f"http://127.0.0.1:{port}"))


def test_sidecar_serves_an_app_that_has_no_key(sidecar, mock):
    c = app_client(sidecar)
    r = c.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"mail {EMAIL} the report"}])
    answer = r.parse()
    assert answer.choices[0].message.content == f"echo: mail {EMAIL} the report"
    got = last(mock)
    assert got["path"] == "/v1/chat/completions"
    assert got["headers"]["authorization"] == "Bearer mock-openai-key", "the real key, injected by Envoy"
    assert got["headers"]["host"] == "api.openai.com"
    assert EMAIL not in json.dumps(got["body"]), "PII redacted before it left the sidecar"
    assert "sk-placeholder" not in json.dumps(got)
    # Streams too, through the same sidecar.
    s = c.chat.completions.create(model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "a b c"}])
    assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == "echo: a b c"


def test_sidecar_charges_the_namespaces_team(sidecar):
    proxy = httpx2.Client(proxy=f"http://127.0.0.1:{sidecar}")
    before = proxy.get("http://api.openai.com/v1/sluice/usage").json()["keys"]["shop-checkout"]["total"]
    c = app_client(sidecar, key="not-a-sluice-key")
    u = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}]).usage
    report = proxy.get("http://api.openai.com/v1/sluice/usage").json()
    after = report["keys"]["shop-checkout"]["total"]
    assert after["tokens_in"] - before["tokens_in"] == u.prompt_tokens
    assert report["teams"]["shop"]["total"]["requests"] >= 2
    r = proxy.post("http://api.openai.com/v1/chat/completions",
                   json={"model": "dall-e-3", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found", (r.status_code, r.text)


# ---- the egress gateway, with mutual TLS --------------------------------------------------------

def make_certs(d: Path):
    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject, issuer_key, issuer_name, key, sans, ca=False):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    def write(name, c, key):
        (d / f"{name}.crt").write_bytes(c.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        return str(d / f"{name}.crt"), str(d / f"{name}.key")

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh test CA")])
    ca = cert(ca_name, ca_key, ca_name, ca_key, None, ca=True)
    write("ca", ca, ca_key)
    out = {"ca": str(d / "ca.crt")}
    for name, sans in [("gateway", [x509.DNSName("api.openai.com"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                    x509.UniformResourceIdentifier("spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account")]),
                       ("checkout", [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/checkout")]),
                       ("trainer", [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/ml/sa/trainer")]),
                       ("stranger", [x509.UniformResourceIdentifier("spiffe://cluster.local/ns/other/sa/default")])]:
        key = ec.generate_private_key(ec.SECP256R1())
        out[name] = write(name, cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), ca_key, ca_name, key, sans), key)
    return out


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, mock):
    tmp = tmp_path_factory.mktemp("gateway")
    certs = make_certs(tmp)
    proc, port = start_proxy(tmp, DEPLOY / "egress-gateway.yaml", "gateway", mock, "istio-system",
                             "istio-egressgateway-service-account", labels=[("istio", "egressgateway")],
                             tls=[*certs["gateway"], certs["ca"]])
    yield port, certs
    sluice.stop_process(proc)


def tls(certs, who=None):
    ctx = ssl.create_default_context(cafile=certs["ca"])
    if who:
        ctx.load_cert_chain(*certs[who])
    return ctx


def workload(gateway, who):
    port, certs = gateway
    return httpx2.Client(base_url=f"https://127.0.0.1:{port}", verify=tls(certs, who),
                         headers={"host": "api.openai.com"})


def test_gateway_maps_mtls_identities_to_teams(gateway, mock):
    for who, team in [("checkout", "shop"), ("trainer", "ml")]:
        c = workload(gateway, who)
        r = c.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": [{"role": "user", "content": f"from {who}"}]})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == f"echo: from {who}"
        assert last(mock)["headers"]["authorization"] == "Bearer mock-openai-key"
        usage = c.get("/v1/sluice/usage").json()
        assert team in usage["teams"] and usage["teams"][team]["total"]["requests"] >= 1, usage
    r = workload(gateway, "stranger").post("/v1/chat/completions",
                                           json={"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 403 and r.json()["error"]["code"] == "unknown_identity", r.text


def test_gateway_refuses_a_caller_without_a_mesh_certificate(gateway):
    port, certs = gateway
    with pytest.raises(httpx2.HTTPError):
        httpx2.Client(base_url=f"https://127.0.0.1:{port}", verify=tls(certs)).post(
            "/v1/chat/completions", json={"model": "gpt-4o", "messages": []}, headers={"host": "api.openai.com"})


# ---- Envoy Gateway: the same filters from its manifest ------------------------------------------

def test_envoy_gateway_manifest_runs(tmp_path, mock):
    """deploy/envoy-gateway/sluice.yaml as Envoy Gateway would apply it to its proxy: the
    EnvoyExtensionPolicy's filters in order on the route's listener, the EnvoyPatchPolicy's JSON
    patches on the route's cluster (`httproute/<ns>/<name>/rule/0`, here pointing at the mock)."""
    docs = [d for d in yaml.safe_load_all((sluice.ROOT / "deploy/envoy-gateway/sluice.yaml").read_text()) if d]
    oci = tmp_path / "oci"
    subprocess.run([sys.executable, str(sluice.ROOT / "scripts/oci.py"), "--out", str(oci)], check=True,
                   capture_output=True)
    sys.path.insert(0, str(sluice.ROOT / "scripts"))
    import istio_sim
    wasm = istio_sim.plugin_wasm(oci, tmp_path)
    mock_key_secret(sluice.ROOT / "deploy/istio/sidecar-egress.yaml", tmp_path / "secrets")
    policy = next(d for d in docs if d["kind"] == "EnvoyExtensionPolicy")
    filters = [{"name": w["name"], "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {"name": w["name"], "root_id": w["rootID"], "fail_open": w.get("failOpen", False),
                   "vm_config": {"vm_id": w["name"], "runtime": "envoy.wasm.runtime.v8",
                                 "code": {"local": {"filename": str(wasm)}}},
                   "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": json.dumps(w["config"])}}}} for w in policy["spec"]["wasm"]]
    filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    cname = f"httproute/{route['metadata']['namespace']}/{route['metadata']['name']}/rule/0"
    cluster = {"name": cname, "type": "STATIC", "connect_timeout": "5s", "load_assignment": {
        "cluster_name": cname, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
            "address": "127.0.0.1", "port_value": mock}}}}]}]}}
    for p in next(d for d in docs if d["kind"] == "EnvoyPatchPolicy")["spec"]["jsonPatches"]:
        assert p["name"] == cname and p["operation"]["op"] == "add"
        cluster[p["operation"]["path"].strip("/")] = istio_sim.remount(
            p["operation"]["value"], {"/var/lib/sluice": str(tmp_path), "/etc/sluice/secrets": str(tmp_path / "secrets")})
    # The mock speaks HTTP/1.1: Envoy Gateway's auto_config would pick it by ALPN over TLS.
    cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].pop("auto_config")
    cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "explicit_http_config"] = {"http_protocol_options": {}}
    port, admin = sluice.free_port(), sluice.free_port()
    cfg = {"node": {"id": "envoy-gateway", "cluster": "ai/ai-gateway"},
           "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
           "static_resources": {"clusters": [cluster], "listeners": [{
               "name": "ai/ai-gateway/http", "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
               "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": {
                   "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                   "stat_prefix": "http", "http_filters": filters,
                   "route_config": {"virtual_hosts": [{"name": "ai", "domains": ["*"], "routes": [
                       {"match": {"prefix": "/v1/"}, "route": {"cluster": cname, "timeout": "0s"}}]}]}}}]}]}]}}
    (tmp_path / "eg.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen([str(sluice.ENVOY), "-c", str(tmp_path / "eg.yaml"), "--concurrency", "1",
                             "--log-level", "warn", "--base-id", str(admin)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sluice.wait_http(f"http://127.0.0.1:{admin}/ready", 30, proc)
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-sluice-demo", max_retries=0)
        answer = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": f"hi {EMAIL}"}])
        assert answer.choices[0].message.content == f"echo: hi {EMAIL}"
        got = last(mock)
        assert got["headers"]["authorization"] == "Bearer mock-openai-key" and EMAIL not in json.dumps(got["body"])
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong", max_retries=0) \
                .chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    finally:
        sluice.stop_process(proc)
