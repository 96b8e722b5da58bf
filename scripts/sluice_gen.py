#!/usr/bin/env python3
"""sluice-gen: turns a short description of backends and models into the Envoy config.

    python scripts/sluice_gen.py SPEC.yaml [-o OUT.yaml]

A spec (see envoy/specs/*.yaml, and the README's "Failover" section):

    listen: 127.0.0.1:10000          # optional, these are the defaults
    admin: 127.0.0.1:9901
    backends:
      openai:    {provider: openai, url: https://api.openai.com/v1, secret: envoy/secrets/openai.yaml}
      anthropic: {provider: anthropic, url: https://api.anthropic.com/v1, secret: envoy/secrets/anthropic.yaml}
      pool:                          # several endpoints: regions or a key pool
        provider: openai
        endpoints:
        - {url: https://us.example.com/v1, secret: envoy/secrets/us.yaml, weight: 3}
        - {url: https://eu.example.com/v1, secret: envoy/secrets/eu.yaml, weight: 1}
    models:
      gpt-4o:  {chain: [openai, "anthropic:claude-sonnet-4-5"]}   # attempt 1, attempt 2, ...
      smart:   {split: {"openai:gpt-4o": 80, "anthropic:claude-sonnet-4-5": 20}}
      claude-*: {chain: [anthropic]}
    quota:                           # fleet-wide quotas (absent: this Envoy's own counters)
      endpoints: [127.0.0.1:7070, 127.0.0.1:7071]   # sluice-quota replicas (one Redis behind)
      failure_mode: closed           # or open: serve on local_share of each limit, marked
      timeout_ms: 250
      local_share: 0.1
      reservation_ttl_seconds: 900

A chain entry is `backend` or `backend:provider-model`. Chains are lists of backends, so a
chain cannot loop; its length bounds the attempts. A secret is an SDS file whose one generic
secret is named after the file (`envoy/secrets/openai.yaml` holds secret `openai`).
"""
from __future__ import annotations

import argparse
import json
import re
import socket
import sys
import urllib.parse
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# The names and defaults the filters use (filters/core/src/contract.rs; a Rust test keeps the
# JSON equal to it).
CONTRACT = json.loads((ROOT / "filters/core/contract.json").read_text())
MODEL_HEADER = CONTRACT["request_headers"]["model"]
CREDENTIAL_HEADER = CONTRACT["request_headers"]["credential"]
LOCAL_REPLY_PROPERTY = CONTRACT["local_reply_property"]
PATH_PROPERTY = CONTRACT["properties"][0]  # the endpoint the filters recorded (property::PATH)
assert PATH_PROPERTY.endswith("_path"), "contract.json: properties[0] is the path property"

AUTH = {  # provider -> (header, value prefix) the credential injector writes
    "openai": ("authorization", "Bearer "),
    "azure": ("api-key", ""),
    "anthropic": ("x-api-key", ""),
    "gemini": ("x-goog-api-key", ""),
    # An OAuth2 access token from an SDS secret that the operator's refresher rewrites.
    "vertex": ("authorization", "Bearer "),
    # Signed by Envoy's aws_request_signing (SigV4), not injected: see _signer.
    "bedrock": None,
}
BASE_PATHS = CONTRACT["base_paths"]

TOP_KEYS = {"listen", "admin", "wasm_dir", "runtime", "max_body_bytes", "timeouts", "retry", "backends", "models",
            "auth", "cache", "pii", "quota"}
QUOTA_KEYS = {"endpoints", "failure_mode", "timeout_ms", "local_share", "reservation_ttl_seconds"}
QUOTA_CLUSTER = "sluice-quota"
BACKEND_KEYS = {"provider", "url", "secret", "endpoints", "name", "api_version", "max_tokens_default",
                "outlier_detection", "max_requests", "connect_timeout", "forward_headers",
                "return_headers", "region", "credentials", "project", "location", "strip_model_prefix"}
CREDENTIAL_KEYS = {"source", "file", "profile", "role_arn", "token_file", "session_name"}
ENDPOINT_KEYS = {"url", "secret", "weight"}
MODEL_KEYS = {"chain", "split", "retries"}
TIMEOUT_KEYS = {"request", "idle", "per_try", "per_try_idle"}
RETRY_KEYS = {"back_off_base", "back_off_max", "retry_after_max", "budget_percent"}
DEFAULT_TIMEOUTS = {"request": "600s", "idle": "300s", "per_try": "120s"}
DEFAULT_RETRY = {"back_off_base": "0.1s", "back_off_max": "1s", "retry_after_max": "10s", "budget_percent": 25}
BUFFER_LIMIT_FACTOR = 2  # Envoy's buffers hold twice the filter's limit (see gateway.yaml)


class SpecError(ValueError):
    pass


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise SpecError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise SpecError(f"{where}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(allowed))})")


def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-")
    return s or "x"


def _addr(text: str, where: str) -> tuple[str, int]:
    host, sep, port = str(text).rpartition(":")
    if not sep or not port.isdigit():
        raise SpecError(f"{where}: expected HOST:PORT, got {text!r}")
    return host, int(port)


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        return True
    except OSError:
        return False


def _secret_name(path: str) -> str:
    return Path(path).stem


def _log_field(name: str) -> str:
    """An access-log field from a filter-state property the filters write (escaped there)."""
    if name not in CONTRACT["properties"]:
        raise SpecError(f"internal: {name} is not a property of the contract")
    return f"%FILTER_STATE(wasm.{name}:PLAIN)%"


def _envelope(message: str, kind: str, code: str) -> dict:
    return {"content_type": "application/json", "json_format": {"error": {
        "message": message, "type": kind, "param": None, "code": code}}}


def _anthropic_envelope(message: str, kind: str) -> dict:
    return {"content_type": "application/json", "json_format": {"type": "error", "error": {
        "type": kind, "message": message}}}


# The endpoint the filters recorded (contract: Endpoint::path in filter state), else what the
# path and an anthropic-version header say, as `contract::api_of` decides for the filters.
_ANTHROPIC_CEL = (
    "('wasm.{p}' in filter_state) ? (filter_state['wasm.{p}'] == b'/v1/messages' || "
    "filter_state['wasm.{p}'] == b'/v1/messages/count_tokens') : "
    "(request.path.startsWith('/v1/messages') || 'anthropic-version' in request.headers)")


def _cel(expression: str) -> dict:
    """A local-reply (access-log) filter that is a CEL expression."""
    return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
        "expression": expression}}}


def _anthropic_client() -> dict:
    """A local-reply filter: the request is a Messages client's."""
    return _cel(_ANTHROPIC_CEL.format(p=PATH_PROPERTY))


def _status_is(op: str, value: int) -> dict:
    return {"status_code_filter": {"comparison": {"op": op, "value": {
        "default_value": value, "runtime_key": f"sluice.local_reply.{op.lower()}_{value}"}}}}


def _local_replies() -> dict:
    """Every reply Envoy makes itself, in the OpenAI envelope. The filters' own replies are
    already in it: they mark the request (LOCAL_REPLY_PROPERTY, in filter state) and the first
    mapper keeps them."""
    upstream_flags = ["UH", "UF", "UO", "NR", "URX", "NC", "UT", "UC", "UR", "LR", "UMSDR", "DPE", "UPE"]
    by_status = [
        (400, "The request is not valid HTTP.", "invalid_request_error", "bad_request"),
        (408, "The request timed out: the client or the stream went idle.", "server_error", "request_timeout"),
        (413, "The request body is larger than the gateway's limit.", "invalid_request_error",
         "request_too_large"),
        (426, "HTTP/1.1 or later is required.", "invalid_request_error", "http_version_not_supported"),
        (431, "The request headers are too large.", "invalid_request_error", "headers_too_large"),
        (500, "The gateway could not complete the request (the answer may have exceeded its buffer).",
         "server_error", "gateway_error"),
        (504, "The backend did not answer in time.", "server_error", "upstream_timeout"),
    ]
    mappers = [
        {"filter": _cel(f"'wasm.{LOCAL_REPLY_PROPERTY}' in filter_state")},
    ]
    # A Messages client gets Anthropic's envelope and statuses (an unavailable upstream is its
    # 529 overloaded_error): first, so that it wins over the OpenAI mappers below.
    mappers.append({"filter": {"and_filter": {"filters": [
        _anthropic_client(), {"response_flag_filter": {"flags": upstream_flags}}, _status_is("EQ", 504)]}},
        "body_format_override": _anthropic_envelope("%LOCAL_REPLY_BODY%", "timeout_error")})
    mappers.append({"filter": {"and_filter": {"filters": [
        _anthropic_client(), {"response_flag_filter": {"flags": upstream_flags}}]}},
        "status_code": 529, "body_format_override": _anthropic_envelope("%LOCAL_REPLY_BODY%", "overloaded_error")})
    for status, message, kind in [(400, "The request is not valid HTTP.", "invalid_request_error"),
                                  (408, "The request timed out: the client or the stream went idle.", "timeout_error"),
                                  (413, "The request body is larger than the gateway's limit.", "request_too_large"),
                                  (431, "The request headers are too large.", "invalid_request_error"),
                                  (504, "The backend did not answer in time.", "timeout_error")]:
        mappers.append({"filter": {"and_filter": {"filters": [_anthropic_client(), _status_is("EQ", status)]}},
                        "body_format_override": _anthropic_envelope(message, kind)})
    mappers.append({"filter": {"and_filter": {"filters": [_anthropic_client(), _status_is("GE", 500)]}},
                    "body_format_override": _anthropic_envelope("%LOCAL_REPLY_BODY%", "api_error")})
    mappers.append({"filter": {"and_filter": {"filters": [_anthropic_client(), _status_is("GE", 400)]}},
                    "body_format_override": _anthropic_envelope("%LOCAL_REPLY_BODY%", "invalid_request_error")})
    mappers.append({"filter": {"response_flag_filter": {"flags": upstream_flags}},
                    "body_format_override": _envelope("%LOCAL_REPLY_BODY%", "server_error", "upstream_error")})
    for status, message, kind, code in by_status:
        mappers.append({"filter": _status_is("EQ", status), "body_format_override": _envelope(message, kind, code)})
    mappers.append({"filter": _status_is("GE", 500),
                    "body_format_override": _envelope("%LOCAL_REPLY_BODY%", "server_error", "gateway_error")})
    mappers.append({"filter": _status_is("GE", 400),
                    "body_format_override": _envelope("%LOCAL_REPLY_BODY%", "invalid_request_error",
                                                      "invalid_request")})
    return {"mappers": mappers}


def _model_match(name: str) -> dict:
    """Route match on x-sluice-model for an exact name or a glob."""
    if "*" not in name:
        sm = {"exact": name}
    elif name.count("*") == 1 and name.endswith("*"):
        sm = {"prefix": name[:-1]}
    else:
        sm = {"safe_regex": {"regex": ".*".join(re.escape(p) for p in name.split("*"))}}
    return {"prefix": "/", "headers": [{"name": MODEL_HEADER, "string_match": sm}]}


def _wasm_filter(name: str, root_id: str, configuration: dict, wasm_dir: str, runtime: str) -> dict:
    """One Sluice filter: the sluice.wasm module, the filter named by root_id. Every entry shares
    one vm_id, so all of them run in one VM per worker thread."""
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": root_id, "root_id": root_id,
            "allow_on_headers_stop_iteration": True,
            "failure_policy": "FAIL_RELOAD",
            "vm_config": {"vm_id": "sluice", "runtime": f"envoy.wasm.runtime.{runtime}",
                          "code": {"local": {"filename": f"{wasm_dir}/sluice.wasm"}}},
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": json.dumps(configuration, separators=(",", ":"))},
        }}}


def wasm_configs(cfg: dict) -> list[dict]:
    """The `config` (PluginConfig) of every Sluice Wasm filter in a generated Envoy config, listener
    and upstream chains alike, for tools that inspect or adjust them."""
    found = []

    def walk(o):
        if isinstance(o, dict):
            if o.get("@type", "").endswith("filters.http.wasm.v3.Wasm"):
                found.append(o["config"])
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    walk(cfg)
    return found


def _injector(provider: str, secret_path: str) -> dict:
    header, prefix = AUTH[provider]
    generic = {"@type": "type.googleapis.com/envoy.extensions.http.injected_credentials.generic.v3.Generic",
               "credential": {"name": _secret_name(secret_path),
                              "sds_config": {"path_config_source": {"path": secret_path}}},
               "header": header}
    if prefix:
        generic["header_value_prefix"] = prefix
    return {"@type": "type.googleapis.com/envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True,
            "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": generic}}


def _signer(region: str, credentials: dict) -> dict:
    """Envoy's SigV4 signer for Bedrock: it signs the rewritten path and body of each attempt
    (use_unsigned_payload: false) and only content-type besides what SigV4 requires (host,
    x-amz-date, x-amz-content-sha256, x-amz-security-token): a header removed after it (the
    credential selector) cannot break the signature. The credentials come from Envoy's own
    providers, never from a wasm configuration."""
    cfg = {"@type": "type.googleapis.com/envoy.extensions.filters.http.aws_request_signing.v3.AwsRequestSigning",
           "service_name": "bedrock", "region": region, "use_unsigned_payload": False,
           "match_included_headers": [{"exact": "content-type"}]}
    source = credentials.get("source", "default")
    if source == "file":
        provider = {"credentials_data_source": {"filename": credentials["file"]}}
        if "profile" in credentials:
            provider["profile"] = credentials["profile"]
        # Only this file: not Envoy's default chain (which would also ask instance metadata).
        cfg["credential_provider"] = {"credentials_file_provider": provider,
                                      "custom_credential_provider_chain": True}
    elif source == "web_identity":
        cfg["credential_provider"] = {"assume_role_with_web_identity_provider": {
            "role_arn": credentials["role_arn"],
            "web_identity_token_data_source": {"filename": credentials["token_file"]},
            "role_session_name": credentials.get("session_name", "sluice")},
            "custom_credential_provider_chain": True}
    # "default": Envoy's chain (environment, credentials file, web identity from the
    # environment as IRSA sets it, then instance or task metadata).
    return cfg


def _credential_filter(spec) -> dict:
    """The filter that adds one attempt's credential: an injector of an SDS secret, or the
    SigV4 signer."""
    if spec[0] == "sigv4":
        return _signer(spec[1], spec[2])
    provider, path = spec
    return _injector(provider, path)


def _upstream_filters(credentials: dict[str, tuple], wasm: str, runtime: str) -> list:
    """translate (upstream role) -> the credential this attempt's host names -> codec."""
    filters = [_wasm_filter("sluice.translate.upstream", "sluice-translate-upstream", {"role": "upstream"},
                            wasm, runtime)]
    if credentials:
        actions = {cid: {"action": {"name": f"credential-{cid}", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.ExecuteFilterAction",
            "typed_config": {"name": f"credential-{cid}", "typed_config": _credential_filter(spec)}}}}
            for cid, spec in sorted(credentials.items())}
        filters.append({"name": "sluice.credentials", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.common.matching.v3.ExtensionWithMatcher",
            "extension_config": {"name": "envoy.filters.http.composite", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.composite.v3.Composite"}},
            "xds_matcher": {"matcher_tree": {
                "input": {"name": "credential", "typed_config": {
                    "@type": "type.googleapis.com/envoy.type.matcher.v3.HttpRequestHeaderMatchInput",
                    "header_name": CREDENTIAL_HEADER}},
                "exact_match_map": {"map": actions}}}}})
        filters.append({"name": "sluice.credentials.cleanup", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
            "mutations": {"request_mutations": [{"remove": CREDENTIAL_HEADER}]}}})
    filters.append({"name": "envoy.filters.http.upstream_codec", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}})
    return filters


def _protocol_options(credentials, wasm, runtime, tls: bool) -> dict:
    opts = {"@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http_protocol_options": {}},
            "http_filters": _upstream_filters(credentials, wasm, runtime)}
    if tls:
        # The upstream filter sets :authority per host, so TLS SNI and certificate checks
        # follow the host of each attempt (regions with different host names in one cluster).
        opts["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
    return {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": opts}


class Generator:
    def __init__(self, spec: dict):
        _check_keys(spec, TOP_KEYS, "spec")
        self.spec = spec
        self.wasm = str(spec.get("wasm_dir", "target/wasm32-wasip1/release")).rstrip("/")
        self.auth = spec.get("auth")
        if self.auth is not None and not isinstance(self.auth, dict):
            raise SpecError("auth: expected the sluice-auth configuration (a mapping)")
        self.pii = spec.get("pii")
        if self.pii is not None and not isinstance(self.pii, dict):
            raise SpecError("pii: expected the sluice-pii configuration (a mapping, {} for defaults)")
        self.cache = spec.get("cache")
        if self.cache is not None and not isinstance(self.cache, dict):
            raise SpecError("cache: expected the sluice-cache configuration (a mapping, {} for defaults)")
        self.quota = spec.get("quota")
        if self.quota is not None:
            if not isinstance(self.quota, dict):
                raise SpecError("quota: expected {endpoints: [HOST:PORT, ...], failure_mode, ...}")
            _check_keys(self.quota, QUOTA_KEYS, "quota")
            eps = self.quota.get("endpoints")
            if not isinstance(eps, list) or not eps:
                raise SpecError("quota.endpoints: expected a list of HOST:PORT (the sluice-quota replicas)")
            for e in eps:
                _addr(e, "quota.endpoints")
            if self.auth is None:
                raise SpecError("quota: fleet quotas need auth (the keys, teams and limits)")
        self.runtime = spec.get("runtime", "v8")
        if self.runtime not in ("v8", "wasmtime", "wamr"):
            raise SpecError(f"runtime: expected v8, wasmtime or wamr, got {self.runtime!r}")
        self.max_body = int(spec.get("max_body_bytes", CONTRACT["default_max_body_bytes"]))
        self.timeouts = {**DEFAULT_TIMEOUTS, **(spec.get("timeouts") or {})}
        _check_keys(self.timeouts, TIMEOUT_KEYS, "timeouts")
        self.retry = {**DEFAULT_RETRY, **(spec.get("retry") or {})}
        _check_keys(self.retry, RETRY_KEYS, "retry")
        self.backends = self._read_backends(spec.get("backends"))
        self.models = self._read_models(spec.get("models"))

    # ---- reading the spec -----------------------------------------------------------------
    def _read_backends(self, raw) -> dict:
        if not isinstance(raw, dict) or not raw:
            raise SpecError("backends: at least one backend is required")
        out = {}
        for name, b in raw.items():
            where = f"backends.{name}"
            _check_keys(b, BACKEND_KEYS, where)
            provider = b.get("provider")
            if provider not in AUTH:
                raise SpecError(f"{where}.provider: expected one of {', '.join(AUTH)}, got {provider!r}")
            b = self._cloud_defaults(b, where)
            if ("url" in b) == ("endpoints" in b):
                raise SpecError(f"{where}: give either 'url' or 'endpoints'")
            eps = b["endpoints"] if "endpoints" in b else [{"url": b["url"]}]
            if not isinstance(eps, list) or not eps:
                raise SpecError(f"{where}.endpoints: expected a non-empty list")
            endpoints = []
            for i, e in enumerate(eps):
                _check_keys(e, ENDPOINT_KEYS, f"{where}.endpoints[{i}]")
                u = urllib.parse.urlsplit(str(e.get("url", "")))
                if u.scheme not in ("http", "https") or not u.hostname:
                    raise SpecError(f"{where}.endpoints[{i}].url: expected an http(s) URL, got {e.get('url')!r}")
                tls = u.scheme == "https"
                port = u.port or (443 if tls else 80)
                secret = e.get("secret", b.get("secret"))
                base_path = u.path.rstrip("/") or BASE_PATHS[provider]
                if provider == "vertex":
                    base_path = (f"{u.path.rstrip('/')}/v1/projects/{b['project']}/locations/{b['location']}"
                                 "/publishers")
                endpoints.append({
                    "host": u.hostname, "port": port, "tls": tls,
                    "authority": u.hostname if port == (443 if tls else 80) else f"{u.hostname}:{port}",
                    "base_path": base_path,
                    "secret": str(secret) if secret else None,
                    "weight": int(e.get("weight", 1)),
                })
            if len({e["tls"] for e in endpoints}) > 1:
                raise SpecError(f"{where}: endpoints must all be https or all be http")
            out[name] = {**b, "endpoints": endpoints, "models": {}, "cluster": f"backend-{slug(name)}"}
        return out

    @staticmethod
    def _cloud_defaults(b: dict, where: str) -> dict:
        """Bedrock and Vertex: region, project, location and credentials checked, the public
        endpoint as the default URL."""
        b = {**b, "credentials": dict(b["credentials"])} if isinstance(b.get("credentials"), dict) else dict(b)
        provider = b.get("provider")
        if provider == "bedrock":
            region = b.setdefault("region", "us-east-1")
            if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", str(region)):
                raise SpecError(f"{where}.region: expected an AWS region such as us-east-1, got {region!r}")
            if "secret" in b:
                raise SpecError(f"{where}.secret: Bedrock requests are signed by Envoy; give 'credentials'")
            creds = b.setdefault("credentials", {"source": "default"})
            _check_keys(creds, CREDENTIAL_KEYS, f"{where}.credentials")
            source = creds.setdefault("source", "default")
            need = {"default": [], "file": ["file"], "web_identity": ["role_arn", "token_file"]}.get(source)
            if need is None:
                raise SpecError(f"{where}.credentials.source: expected default, file or web_identity, got {source!r}")
            for k in need:
                if k not in creds:
                    raise SpecError(f"{where}.credentials.{k}: required for source {source}")
            if "url" not in b and "endpoints" not in b:
                b["url"] = f"https://bedrock-runtime.{region}.amazonaws.com"
        elif provider == "vertex":
            if not re.fullmatch(r"[a-z][a-z0-9-]{4,61}[a-z0-9]", str(b.get("project", ""))):
                raise SpecError(f"{where}.project: expected a Google Cloud project id, got {b.get('project')!r}")
            location = b.setdefault("location", "us-central1")
            if not re.fullmatch(r"[a-z]+(-[a-z]+\d*)?", str(location)):
                raise SpecError(f"{where}.location: expected a Vertex location such as us-central1, got {location!r}")
            if "url" not in b and "endpoints" not in b:
                host = "aiplatform.googleapis.com" if location == "global" else f"{location}-aiplatform.googleapis.com"
                b["url"] = f"https://{host}"
        elif any(k in b for k in ("region", "credentials", "project", "location")):
            raise SpecError(f"{where}: region, credentials, project and location are for bedrock and vertex backends")
        return b

    def _target(self, entry: str, model: str, where: str) -> tuple[str, str | None]:
        backend, _, target = str(entry).partition(":")
        if backend not in self.backends:
            raise SpecError(f"{where}: unknown backend {backend!r} (known: {', '.join(self.backends)})")
        if target:
            if "*" in model:
                raise SpecError(f"{where}: a glob model name cannot be mapped to one provider model")
            self.backends[backend]["models"][model] = target
        return backend, target or None

    def _read_models(self, raw) -> dict:
        if not isinstance(raw, dict) or not raw:
            raise SpecError("models: at least one model is required")
        out = {}
        for model, m in raw.items():
            where = f"models.{model}"
            _check_keys(m, MODEL_KEYS, where)
            if ("chain" in m) == ("split" in m):
                raise SpecError(f"{where}: give either 'chain' or 'split'")
            if "chain" in m:
                chain = m["chain"]
                if not isinstance(chain, list) or not chain:
                    raise SpecError(f"{where}.chain: expected a non-empty list of backends")
                out[model] = {"chain": [self._target(e, model, f"{where}.chain[{i}]")[0]
                                        for i, e in enumerate(chain)], "retries": m.get("retries")}
            else:
                split = m["split"]
                if not isinstance(split, dict) or not split:
                    raise SpecError(f"{where}.split: expected backend: weight pairs")
                weights = {}
                for entry, w in split.items():
                    b, _ = self._target(entry, model, f"{where}.split")
                    if not isinstance(w, int) or w <= 0:
                        raise SpecError(f"{where}.split.{entry}: weight must be a positive integer")
                    weights[b] = weights.get(b, 0) + w
                out[model] = {"split": weights, "retries": m.get("retries")}
        return out

    # ---- writing Envoy config -----------------------------------------------------------------
    def _credentials(self, backends) -> dict:
        creds = {}
        for name in backends:
            b = self.backends[name]
            for e in b["endpoints"]:
                cid = self._credential_id(name, e)
                if b["provider"] == "bedrock":
                    creds[cid] = ("sigv4", b["region"], b["credentials"])
                elif e["secret"]:
                    creds[cid] = (b["provider"], e["secret"])
        return creds

    def _credential_id(self, name: str, endpoint: dict) -> str | None:
        if self.backends[name]["provider"] == "bedrock":
            return f"{slug(name)}.sigv4"
        return f"{slug(name)}.{_secret_name(endpoint['secret'])}" if endpoint["secret"] else None

    def _backend_cluster(self, name: str) -> dict:
        b = self.backends[name]
        eps = b["endpoints"]
        tls = eps[0]["tls"]
        lb_endpoints = []
        for e in eps:
            md = {"provider": b["provider"], "name": b.get("name", name), "base_path": e["base_path"],
                  "authority": e["authority"]}
            if b["models"]:
                md["models"] = dict(sorted(b["models"].items()))
            for k in ("api_version", "max_tokens_default", "forward_headers", "return_headers",
                      "strip_model_prefix"):
                if k in b:
                    md[k] = b[k]
            cid = self._credential_id(name, e)
            if cid:
                md["credential"] = cid
            lb_endpoints.append({
                "endpoint": {"address": {"socket_address": {"address": e["host"], "port_value": e["port"]}}},
                "load_balancing_weight": e["weight"],
                "metadata": {"filter_metadata": {"sluice": md}}})
        hosts = {e["host"] for e in eps}
        if all(_is_ip(h) for h in hosts):
            kind = "STATIC"
        elif len(eps) == 1:
            kind = "LOGICAL_DNS"
        else:
            kind = "STRICT_DNS"
        max_requests = int(b.get("max_requests", 1024))
        c = {
            "name": b["cluster"], "type": kind, "connect_timeout": b.get("connect_timeout", "5s"),
            "per_connection_buffer_limit_bytes": self.max_body * BUFFER_LIMIT_FACTOR,
            "load_assignment": {"cluster_name": b["cluster"], "endpoints": [{"lb_endpoints": lb_endpoints}]},
            "circuit_breakers": {"thresholds": [{
                "max_connections": max_requests, "max_pending_requests": max_requests,
                "max_requests": max_requests,
                "retry_budget": {"budget_percent": {"value": float(self.retry["budget_percent"])},
                                 "min_retry_concurrency": 3}}]},
            "typed_extension_protocol_options": _protocol_options(self._credentials([name]), self.wasm,
                                                                  self.runtime, tls),
        }
        if kind != "STATIC":
            c["dns_lookup_family"] = "V4_PREFERRED"
        od = b.get("outlier_detection", {})
        if od is not False:
            c["outlier_detection"] = {"consecutive_5xx": 3, "consecutive_gateway_failure": 3,
                                      "interval": "2s", "base_ejection_time": "30s",
                                      "max_ejection_percent": 50, **(od or {})}
        if tls:
            c["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {"validation_context": {
                    "trusted_ca": {"filename": "/etc/ssl/certs/ca-certificates.crt"}}}}}
            if len(hosts) == 1:
                c["transport_socket"]["typed_config"]["sni"] = eps[0]["host"]
        return c

    def _quota_cluster(self) -> dict:
        """The sluice-quota replicas over HTTP/2 (gRPC). Health checks and outlier detection take
        a dead replica out within a second; a reserve that hits one is retried by the filter
        (UNAVAILABLE), and the load balancer sends the retry to another."""
        eps = []
        for e in self.quota["endpoints"]:
            host, port = _addr(e, "quota.endpoints")
            eps.append({"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}})
        return {
            "name": QUOTA_CLUSTER, "type": "STATIC" if all(_is_ip(_addr(e, "")[0]) for e in self.quota["endpoints"]) else "STRICT_DNS",
            "connect_timeout": "0.25s", "lb_policy": "ROUND_ROBIN",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "health_checks": [{"timeout": "0.5s", "interval": "1s", "unhealthy_threshold": 1,
                               "healthy_threshold": 1, "tcp_health_check": {}}],
            "outlier_detection": {"consecutive_gateway_failure": 2, "interval": "1s",
                                  "base_ejection_time": "5s", "max_ejection_percent": 50},
            "load_assignment": {"cluster_name": QUOTA_CLUSTER, "endpoints": [{"lb_endpoints": eps}]},
        }

    def _chain_cluster(self, model: str, chain: list[str]) -> dict:
        name = f"chain-{slug(model)}"
        tls = any(self.backends[b]["endpoints"][0]["tls"] for b in chain)
        return {
            "name": name, "connect_timeout": "5s", "lb_policy": "CLUSTER_PROVIDED",
            "per_connection_buffer_limit_bytes": self.max_body * BUFFER_LIMIT_FACTOR,
            "cluster_type": {"name": "envoy.clusters.composite", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.clusters.composite.v3.ClusterConfig",
                "clusters": [{"name": self.backends[b]["cluster"]} for b in chain]}},
            # Only the composite's own upstream filters run: they carry every chain member's key.
            "typed_extension_protocol_options": _protocol_options(self._credentials(dict.fromkeys(chain)),
                                                                  self.wasm, self.runtime, tls),
        }

    def _retry_policy(self, retries: int, same_endpoint: bool) -> dict:
        """`same_endpoint`: the retry goes back to the endpoint that answered (one backend with
        one endpoint), the only case where that endpoint's retry-after means anything. A chain
        or a pool retries elsewhere at once, with a short jittered exponential back-off."""
        t, r = self.timeouts, self.retry
        policy = {
            "retry_on": "5xx,reset,connect-failure,retriable-status-codes",
            "retriable_status_codes": [429],
            "num_retries": retries,
            "per_try_timeout": t["per_try"],
            "retry_back_off": {"base_interval": r["back_off_base"], "max_interval": r["back_off_max"]},
            "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
            "host_selection_retry_max_attempts": 5,
        }
        if same_endpoint:
            # Honours the endpoint's retry-after up to a bound; a longer one (hours) is not
            # waited for: the normal back-off applies.
            policy["rate_limited_retry_back_off"] = {
                "reset_headers": [{"name": "retry-after", "format": "SECONDS"}],
                "max_interval": r["retry_after_max"]}
        if "per_try_idle" in t:
            policy["per_try_idle_timeout"] = t["per_try_idle"]
        return policy

    def generate(self) -> dict:
        clusters = [self._backend_cluster(n) for n in self.backends]
        if self.quota is not None:
            clusters.append(self._quota_cluster())
        routes = []
        # Exact names first, so that `gpt-4o` wins over `gpt-*`.
        ordered = sorted(self.models.items(), key=lambda kv: "*" in kv[0])
        for model, m in ordered:
            route = {"timeout": self.timeouts["request"], "idle_timeout": self.timeouts["idle"]}
            same_endpoint = False
            if "chain" in m:
                chain = m["chain"]
                if len(chain) == 1:
                    b = self.backends[chain[0]]
                    route["cluster"] = b["cluster"]
                    # One endpoint: transparent (clients' SDKs retry themselves); a pool: try
                    # each other endpoint once.
                    default = len(b["endpoints"]) - 1
                    same_endpoint = len(b["endpoints"]) == 1
                else:
                    cc = self._chain_cluster(model, chain)
                    clusters.append(cc)
                    route["cluster"] = cc["name"]
                    default = len(chain) - 1
            else:
                route["weighted_clusters"] = {"clusters": [
                    {"name": self.backends[b]["cluster"], "weight": w} for b, w in m["split"].items()]}
                default = 0
            retries = int(m["retries"] if m["retries"] is not None else default)
            if retries > 0:
                route["retry_policy"] = self._retry_policy(retries, same_endpoint)
            routes.append({"name": f"model-{slug(model)}", "match": _model_match(model), "route": route})

        listen_host, listen_port = _addr(self.spec.get("listen", "127.0.0.1:10000"), "listen")
        admin_host, admin_port = _addr(self.spec.get("admin", "127.0.0.1:9901"), "admin")
        known = sorted({t for b in self.backends.values() for t in b["models"].values()}
                       | set((self.auth or {}).get("prices", {})))
        route_conf = {"role": "route", "models": list(self.models), "known_models": known,
                      "max_body_bytes": self.max_body}
        http_filters = []
        if self.auth is not None:
            # sluice-auth reads usage from the answer before it reaches the client, and removes
            # the usage chunk a client did not ask for itself, after reading it.
            route_conf["strip_unrequested_usage"] = False
            auth_conf = {**self.auth, "max_body_bytes": self.max_body, "models": sorted(self.models)}
            if self.quota is not None:
                auth_conf["store"] = {"cluster": QUOTA_CLUSTER,
                                      **{k: v for k, v in self.quota.items() if k != "endpoints"}}
            http_filters.append(_wasm_filter("sluice.auth", "sluice-auth", auth_conf, self.wasm, self.runtime))
        if self.pii is not None:
            # Before the cache: entries are keyed on, and hold, the redacted form (no PII at rest);
            # on the way back it re-hydrates answers, cache hits included.
            http_filters.append(_wasm_filter("sluice.pii", "sluice-pii", self.pii, self.wasm, self.runtime))
        if self.cache is not None:
            # After auth (the tenant comes from its filter state), before translate: entries are
            # keyed on, and hold, the OpenAI form. Behind auth, a replay always carries the usage
            # chunk, which auth reads and removes for clients that did not ask.
            cache_conf = {**self.cache}
            if self.auth is not None:
                cache_conf.setdefault("usage_in_replay", True)
            http_filters.append(_wasm_filter("sluice.cache", "sluice-cache", cache_conf, self.wasm, self.runtime))
        http_filters += [
            _wasm_filter("sluice.translate.route", "sluice-translate-route", route_conf, self.wasm, self.runtime),
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
        ]
        rh = {k: v.upper() for k, v in CONTRACT["response_headers"].items()}
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "sluice",
            # One form of every path before any filter sees it: dot segments resolved, slashes
            # merged, escaped slashes refused (the filters' route table refuses what is left).
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "REJECT_REQUEST",
            # Long generations: no overall request timeout, but a stream that goes silent ends.
            "stream_idle_timeout": self.timeouts["idle"],
            "access_log": [{"name": "envoy.access_loggers.stdout", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {"text_format_source": {"inline_string": (
                    f"[%START_TIME%] \"%REQ(:METHOD)% {_log_field('sluice_path')}\" %RESPONSE_CODE% "
                    f"%RESPONSE_FLAGS% team={_log_field('sluice_team')} "
                    f"project={_log_field('sluice_project')} key={_log_field('sluice_key_id')} "
                    f"model={_log_field('sluice_model')} "
                    f"provider=%RESP({rh['provider']})% served=%RESP({rh['served_model']})% "
                    f"tokens_in={_log_field('sluice_tokens_in')} "
                    f"tokens_out={_log_field('sluice_tokens_out')} "
                    f"cost_micro_usd={_log_field('sluice_cost_micro_usd')} cache=%RESP({rh['cache']})% "
                    f"refusal={_log_field('sluice_refusal')} quota={_log_field('sluice_quota')} "
                    f"identity={_log_field('sluice_identity')} "
                    "attempts=%UPSTREAM_REQUEST_ATTEMPT_COUNT% upstream=%UPSTREAM_HOST% %DURATION%ms\n")}}}}],
            # Errors Envoy itself generates (no healthy upstream, connect failure, reset, timeout,
            # overflow) get the OpenAI error envelope too.
            "local_reply_config": _local_replies(),
            "http_filters": http_filters,
            "route_config": {"name": "sluice", "virtual_hosts": [{"name": "sluice", "domains": ["*"], "routes": routes}]},
        }
        return {
            "node": {"id": "sluice", "cluster": "sluice"},
            # sluice-auth's metrics are wasmcustom.sluice_auth.team.T.model.M.<what> and
            # wasmcustom.sluice_auth.team.T.reason.R.refused: team, model and reason become labels.
            "stats_config": {"stats_tags": [
                {"tag_name": "team", "regex": r"^wasmcustom\.sluice_auth\.(team\.([^.]+)\.)"},
                {"tag_name": "model", "regex": r"^wasmcustom\.sluice_auth\.team\.[^.]+\.(model\.([^.]+)\.)"},
                {"tag_name": "reason", "regex": r"^wasmcustom\.sluice_auth\.team\.[^.]+\.(reason\.([^.]+)\.)"},
            ]},
            "admin": {"address": {"socket_address": {"address": admin_host, "port_value": admin_port}}},
            "static_resources": {
                "listeners": [{
                    "name": "sluice",
                    "address": {"socket_address": {"address": listen_host, "port_value": listen_port}},
                    # Twice the filter's body limit: one socket read can add megabytes at once, and
                    # the filter (which answers with an OpenAI 413) must see an oversized body first.
                    "per_connection_buffer_limit_bytes": self.max_body * BUFFER_LIMIT_FACTOR,
                    "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                    "typed_config": hcm}]}],
                }],
                "clusters": clusters,
            },
        }


class _PlainDumper(yaml.SafeDumper):
    """Writes every object in full (no YAML anchors/aliases)."""

    def ignore_aliases(self, data):
        return True


def generate(spec: dict) -> dict:
    return Generator(spec).generate()


def dump(cfg: dict, source: str | None = None) -> str:
    head = ""
    if source:
        head = (f"# Generated by scripts/sluice_gen.py from {source}: edit that file and run\n"
                f"#   python scripts/sluice_gen.py {source} -o <this file>\n")
    return head + yaml.dump(cfg, Dumper=_PlainDumper, sort_keys=False, width=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="the spec (YAML)")
    ap.add_argument("-o", "--output", help="where to write the Envoy config (default: stdout)")
    args = ap.parse_args(argv)
    try:
        spec = yaml.safe_load(Path(args.spec).read_text())
        out = dump(generate(spec), args.spec)
    except (SpecError, yaml.YAMLError, OSError) as e:
        print(f"sluice-gen: {args.spec}: {e}", file=sys.stderr)
        return 1
    if args.output:
        Path(args.output).write_text(out)
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
