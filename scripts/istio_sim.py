#!/usr/bin/env python3
"""The Envoy configuration Istio would build from Sluice's manifests, without a cluster.

Reads the shipped manifests (deploy/istio/*.yaml: ServiceEntry, DestinationRule, VirtualService,
Gateway, WasmPlugin, EnvoyFilter) and writes what istiod and istio-agent would give one proxy:

- a sidecar (`--role sidecar`): the outbound HTTP listener of the ServiceEntry's port, a virtual
  host per ServiceEntry host (`api.openai.com`, `api.openai.com:80`) routing to
  `outbound|<port>||<host>`, the node metadata Istio sets (NAMESPACE, SERVICE_ACCOUNT,
  WORKLOAD_NAME, LABELS...);
- an egress gateway (`--role gateway`): the Gateway's server (mutual TLS: the workloads' SPIFFE
  certificates) routing by the VirtualService to the same cluster.

Into it go the WasmPlugins whose selector and match select this proxy, ordered as Istio orders
them (phase AUTHN, AUTHZ, STATS, then unspecified, higher priority first), each as the wasm
filter Istio's ECDS sends (the module pulled from the image: here the plugin.wasm of the OCI
layout `make oci` wrote, pluginConfig as its JSON configuration), and the EnvoyFilter patches
of this context (CLUSTER MERGE). What differs from a cluster, and why: DNS (the ServiceEntry's
host resolves to the mock), TLS origination to the provider (the mock speaks plain HTTP:
`--plaintext-upstream`), the capture (the app reaches the listener as an HTTP proxy instead of
through iptables), and file mounts (`--mount /var/lib/sluice=DIR`).

    python3 scripts/istio_sim.py --manifests deploy/istio/sidecar-egress.yaml --role sidecar \\
        --listen 127.0.0.1:15080 --admin 127.0.0.1:15000 --resolve api.openai.com=127.0.0.1:18080 \\
        --oci target/oci --namespace shop --service-account checkout -o sidecar.yaml
"""
from __future__ import annotations

import argparse
import copy
import gzip
import io
import json
import tarfile
from pathlib import Path

import yaml

PHASES = {"AUTHN": 0, "AUTHZ": 1, "STATS": 2, "UNSPECIFIED_PHASE": 3, None: 3}


def load(paths: list[Path]) -> list[dict]:
    docs = []
    for p in paths:
        docs += [d for d in yaml.safe_load_all(p.read_text()) if d]
    return docs


def of_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def selects(selector: dict | None, labels: dict) -> bool:
    want = (selector or {}).get("matchLabels") or (selector or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in want.items())


def plugin_wasm(oci: Path, out_dir: Path) -> Path:
    """The module of the OCI layout's image, as istio-agent extracts it from the layer."""
    index = json.loads((oci / "index.json").read_text())
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((oci / "blobs/sha256" / digest).read_text())
    layer = (oci / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        data = tar.extractfile("plugin.wasm").read()
    out = out_dir / "plugin.wasm"
    out.write_bytes(data)
    return out


def wasm_filter(plugin: dict, wasm: Path) -> dict:
    meta, spec = plugin["metadata"], plugin["spec"]
    name = f"{meta.get('namespace', 'default')}.{meta['name']}"
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name, "root_id": spec.get("pluginName", ""),
            "fail_open": spec.get("failStrategy") == "FAIL_OPEN",
            "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": str(wasm)}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(spec.get("pluginConfig") or {}, separators=(",", ":"))},
        }}}


def merge(dst, src):
    """Protobuf MERGE as Istio applies it: messages merge field by field, lists append."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        elif isinstance(v, list) and isinstance(dst.get(k), list):
            dst[k] = dst[k] + copy.deepcopy(v)
        else:
            dst[k] = copy.deepcopy(v)


def remount(o, mounts: dict[str, str]):
    if isinstance(o, dict):
        return {k: remount(v, mounts) for k, v in o.items()}
    if isinstance(o, list):
        return [remount(v, mounts) for v in o]
    if isinstance(o, str):
        for src, dst in mounts.items():
            if o.startswith(src + "/"):
                return dst + o[len(src):]
    return o


def build(a) -> dict:
    docs = load(a.manifests)
    labels = dict(a.label or [])
    mode, context = ("CLIENT", "SIDECAR_OUTBOUND") if a.role == "sidecar" else ("SERVER", "GATEWAY")
    resolve = dict(r.split("=", 1) for r in a.resolve or [])
    mounts = dict(m.split("=", 1) for m in a.mount or [])
    out_dir = Path(a.output).parent
    wasm = plugin_wasm(a.oci, out_dir)

    # ServiceEntry hosts and the HTTP port apps call.
    clusters, vhosts = {}, []
    for se in of_kind(docs, "ServiceEntry"):
        for host in se["spec"]["hosts"]:
            for port in se["spec"]["ports"]:
                if port.get("protocol") != "HTTP":
                    continue
                name = f"outbound|{port['number']}||{host}"
                addr, _, p = resolve.get(host, f"{host}:{port.get('targetPort', port['number'])}").rpartition(":")
                c = {"name": name, "type": "STATIC" if addr.replace(".", "").isdigit() else "STRICT_DNS",
                     "connect_timeout": "10s",
                     "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
                         {"endpoint": {"address": {"socket_address": {"address": addr, "port_value": int(p)}}}}]}]}}
                for dr in of_kind(docs, "DestinationRule"):
                    if dr["spec"]["host"] != host:
                        continue
                    for pl in dr["spec"].get("trafficPolicy", {}).get("portLevelSettings", []):
                        tls = pl.get("tls") or {}
                        if pl["port"]["number"] == port["number"] and tls.get("mode") == "SIMPLE" \
                                and not a.plaintext_upstream:
                            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                                "sni": tls.get("sni", host)}}
                clusters[name] = c
                vhosts.append({"name": f"{host}:{port['number']}", "domains": [host, f"{host}:{port['number']}"],
                               "routes": [{"match": {"prefix": "/"}, "route": {"cluster": name, "timeout": "0s"}}]})

    # The EnvoyFilter patches of this proxy's context.
    for ef in of_kind(docs, "EnvoyFilter"):
        if not selects(ef["spec"].get("workloadSelector"), labels):
            continue
        for cp in ef["spec"]["configPatches"]:
            m = cp.get("match", {})
            if cp["applyTo"] != "CLUSTER" or m.get("context", context) != context:
                continue
            want = m.get("cluster", {})
            for name, c in clusters.items():
                _, port, _, host = name.split("|")
                if want.get("service", host) == host and int(want.get("portNumber", port)) == int(port):
                    if cp["patch"]["operation"] != "MERGE":
                        raise SystemExit(f"istio_sim: only MERGE patches are simulated, got {cp['patch']['operation']}")
                    merge(c, remount(cp["patch"]["value"], mounts))

    # The WasmPlugins that select this proxy, in Istio's order.
    plugins = []
    for wp in of_kind(docs, "WasmPlugin"):
        spec = wp["spec"]
        if not selects(spec.get("selector"), labels):
            continue
        if spec.get("match") and not any(x.get("mode", "CLIENT_AND_SERVER") in (mode, "CLIENT_AND_SERVER")
                                         for x in spec["match"]):
            continue
        plugins.append((PHASES[spec.get("phase")], -int(spec.get("priority", 0)), wp))
    plugins.sort(key=lambda t: (t[0], t[1]))
    http_filters = [wasm_filter(wp, wasm) for _, _, wp in plugins]
    http_filters.append({"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})

    listen_host, _, listen_port = a.listen.rpartition(":")
    hcm = {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "stat_prefix": f"outbound_0.0.0.0_{listen_port}" if a.role == "sidecar" else "outbound_gateway",
           "normalize_path": True, "merge_slashes": True,
           "path_with_escaped_slashes_action": "REJECT_REQUEST",
           "route_config": {"name": listen_port, "virtual_hosts": vhosts},
           "http_filters": http_filters,
           "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
               "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}]}
    chain = {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
    if a.role == "gateway":
        # The Gateway's server: ISTIO_MUTUAL, i.e. the workloads' mesh certificates.
        gw = of_kind(docs, "Gateway")[0]["spec"]["servers"][0]
        if gw["tls"]["mode"] != "ISTIO_MUTUAL":
            raise SystemExit("istio_sim: the egress gateway is simulated with ISTIO_MUTUAL")
        cert, key, ca = a.tls
        chain["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": True,
            "common_tls_context": {
                "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
                "validation_context": {"trusted_ca": {"filename": ca}}}}}
    ns, sa, workload = a.namespace, a.service_account, a.workload or a.service_account
    node = {"id": f"{a.role}~10.1.2.3~{workload}-7d9f.{ns}~{ns}.svc.cluster.local",
            "cluster": f"{workload}.{ns}",
            "metadata": {"NAMESPACE": ns, "SERVICE_ACCOUNT": sa, "WORKLOAD_NAME": workload,
                         "LABELS": {**labels}, "MESH_ID": "cluster.local", "CLUSTER_ID": "Kubernetes",
                         "ISTIO_VERSION": "1.27.0", "NAME": f"{workload}-7d9f"}}
    admin_host, _, admin_port = a.admin.rpartition(":")
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": admin_host, "port_value": int(admin_port)}}},
        "static_resources": {
            "listeners": [{"name": f"0.0.0.0_{listen_port}",
                           "address": {"socket_address": {"address": listen_host, "port_value": int(listen_port)}},
                           "filter_chains": [chain]}],
            "clusters": list(clusters.values()),
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifests", type=Path, nargs="+", required=True)
    ap.add_argument("--role", choices=["sidecar", "gateway"], required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--admin", required=True)
    ap.add_argument("--oci", type=Path, required=True)
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--service-account", required=True)
    ap.add_argument("--workload")
    ap.add_argument("--label", action="append", type=lambda s: tuple(s.split("=", 1)))
    ap.add_argument("--resolve", action="append")
    ap.add_argument("--mount", action="append")
    ap.add_argument("--tls", nargs=3, metavar=("CERT", "KEY", "CA"))
    ap.add_argument("--plaintext-upstream", action="store_true")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    Path(a.output).write_text(yaml.safe_dump(build(a), sort_keys=False))


if __name__ == "__main__":
    main()
