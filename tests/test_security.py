"""Hostile clients and misbehaving providers, through a real Envoy running the whole chain (auth,
pii, cache, translate): each class of hole with its variants, asserting what the provider
received (the mock records every request by tag), what the client got (status, headers,
envelope), and what the access log holds. After every class the gateway still serves and no
Wasm VM has trapped."""
import hashlib
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import sluice
from conftest import assemble, request

MODELS = ["mock-gpt", "mock-claude", "mock-gemini"]
EMAIL = "jane.doe@example.com"
SSN = "078-05-1120"
MOCK_KEYS = {"mock-gpt": "mock-openai-key", "mock-claude": "mock-anthropic-key", "mock-gemini": "mock-gemini-key"}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def sec(tmp_path_factory):
    run = tmp_path_factory.mktemp("security")
    m = sluice.free_port()
    spec = sluice.mock_spec(m)
    spec["models"]["gemini-*"] = {"chain": ["mock-gemini"]}
    spec.update({
        "timeouts": {"idle": "2s"},
        "auth": {
            "keys": [{"id": "sec", "sha256": sha("sk-sec"), "team": "sec"},
                     {"id": "tight", "sha256": sha("sk-tight"), "team": "tight",
                      "limits": {"tokens_per_minute": 3000}}],
            "prices": {"mock-*": {"input": 1, "output": 2}, "gemini-2.5-pro": {"input": 1.25, "output": 10}},
            "default_max_tokens": 50,
        },
        "pii": {},
        "cache": {},
    })
    stack = sluice.Stack(run, mock_port=m, spec=spec, concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


def send(stack, body, headers=None, path="/v1/chat/completions", method="POST", key="sk-sec"):
    """Sends a request tagged for the mock; returns the answer and what the provider received
    (None when nothing reached it)."""
    tag = uuid.uuid4().hex
    # The cache is bypassed unless a test asks for it (a hit would never reach the mock).
    h = {"authorization": f"Bearer {key}", "x-mock-tag": tag, "cache-control": "no-cache, no-store",
         **(headers or {})}
    r = request(stack, method, path, body, h)
    got = request(stack, "GET", f"/_mock/requests/{tag}", port=stack.mock_port)
    r.sent = got.json() if got.status == 200 else None
    return r


def envelope(r):
    assert r.headers["content-type"].startswith("application/json"), (r.status, r.headers, r.body)
    e = json.loads(r.body)["error"]
    assert set(e) == {"message", "type", "param", "code"}, e
    return e


def chat(model="mock-gpt", text="hi", **kw):
    return {"model": model, "messages": [{"role": "user", "content": text}], **kw}


def raw(stack, data: bytes, timeout=10) -> bytes:
    s = socket.create_connection(("127.0.0.1", stack.port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except OSError:
        pass
    s.close()
    return out


def access_log(stack) -> str:
    time.sleep(0.3)  # Envoy flushes its access log asynchronously
    return (stack.run_dir / "stdout.log").read_text(errors="replace")


@pytest.fixture(autouse=True)
def still_serving(sec):
    """After each case: the gateway answers and no worker's VM trapped."""
    yield
    r = send(sec, chat())
    assert r.status == 200, r.body
    assert not any(v for k, v in sec.stats().items() if "wasm" in k and ("crash" in k or "fail" in k)), \
        {k: v for k, v in sec.stats().items() if "wasm" in k and v}


# ---- 1. one route table ----------------------------------------------------------------------

# Envoy normalises these first (dot segments, merged slashes, decoded unreserved characters,
# backslashes): every filter then sees the one path.
@pytest.mark.parametrize("path", ["/v1/chat/completions/", "/v1/chat/completions?a=1", "/v1/chat/completions/?a=1",
                                  "/v1/./chat/completions", "/v1//chat/completions", "/v1/x/../chat/completions",
                                  "/v1/chat/%63ompletions", "/v1/chat\\completions", "/v1/chat/completions//",
                                  "/v1/chat/completions/."])
def test_path_variants_get_every_filter(sec, path):
    r = send(sec, chat(text=f"mail {EMAIL}, ssn {SSN} ({path})", temperature=0), path=path,
             headers={"cache-control": "public"})
    assert r.status == 200, r.body
    sent = json.dumps(r.sent["body"])
    assert EMAIL not in sent and SSN not in sent, sent          # sluice-pii ran
    assert r.headers.get("x-sluice-cache") in ("miss", "hit")   # sluice-cache ran
    assert EMAIL in r.json()["choices"][0]["message"]["content"]  # and re-hydrated


@pytest.mark.parametrize("path", ["/v1/chat/completions%2F", "/v1/chat%2fcompletions", "/V1/chat/completions",
                                  "/v1/chat/completions/x", "/v1/chat/completions;x", "/v2/chat/completions"])
def test_other_path_variants_are_refused_everywhere(sec, path):
    r = send(sec, chat(text=f"mail {EMAIL}"), path=path)
    assert r.status in (400, 404), r.body
    envelope(r)
    assert r.sent is None  # nothing reached a provider


def anthropic_envelope(r):
    assert r.headers["content-type"].startswith("application/json"), (r.status, r.headers, r.body)
    v = json.loads(r.body)
    assert v["type"] == "error" and set(v["error"]) == {"type", "message"}, v
    return v["error"]


def msgs(model="mock-gpt", text="hi", **kw):
    return {"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}], **kw}


# The Messages front shares the one route table: its variants get every filter too.
@pytest.mark.parametrize("model", ["mock-gpt", "mock-claude"])
@pytest.mark.parametrize("path", ["/v1/messages/", "/v1/messages?beta=true", "/v1/./messages", "/v1//messages",
                                  "/v1/x/../messages", "/v1/%6dessages", "/v1\\messages"])
def test_messages_path_variants_get_every_filter(sec, path, model):
    r = send(sec, msgs(model, text=f"mail {EMAIL}, ssn {SSN} ({path})", temperature=0), path=path,
             headers={"cache-control": "public", "anthropic-version": "2023-06-01"})
    assert r.status == 200, r.body
    sent = json.dumps(r.sent["body"])
    assert EMAIL not in sent and SSN not in sent, sent
    assert r.headers.get("x-sluice-cache") in ("miss", "hit")
    assert EMAIL in r.json()["content"][0]["text"]


@pytest.mark.parametrize("path", ["/v1/messages%2F", "/v1/messages/x", "/v1/messages;x", "/V1/messages",
                                  "/v1/messages/count_tokens/x"])
def test_other_messages_paths_are_refused_in_anthropics_envelope(sec, path):
    r = send(sec, msgs(text=f"mail {EMAIL}"), path=path, headers={"anthropic-version": "2023-06-01"})
    assert r.status in (400, 404), r.body
    anthropic_envelope(r)
    assert r.sent is None


@pytest.mark.parametrize("model", ["gemini-x/../gemini-2.5-pro", "mock-gpt\r\nx-evil: 1",
                                   "mock-gpt\nforged log line", "m" * 100_000], ids=range(4))
def test_bad_model_names_on_the_messages_front(sec, model):
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        r = send(sec, msgs(model), path=path)
        assert r.status == 400, r.body
        e = anthropic_envelope(r)
        assert e["type"] == "invalid_request_error" and "model" in e["message"]
        assert r.sent is None
        for k, v in r.headers.items():
            assert "\r" not in v and "\n" not in v and k != "x-evil"


@pytest.mark.parametrize("body", [
    b'{"model":"mock-claude","max_tokens":5,"messages":[{"role":"user","content":"' + EMAIL.encode() + b'"}],'
    b'"messages":[{"role":"user","content":"hi"}]}',
    b'{"model":"mock-claude","model":"mock-gpt","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
])
def test_duplicate_keys_are_refused_on_the_messages_front(sec, body):
    """A pass-through sends the client's bytes: what was checked must be what is sent."""
    r = send(sec, body, path="/v1/messages")
    assert r.status == 400, r.body
    assert "duplicate key" in anthropic_envelope(r)["message"]
    assert r.sent is None


@pytest.mark.parametrize("header", ["anthropic-beta", "anthropic-version"])
@pytest.mark.parametrize("value", ["x\u00e9", "a;b", "a" * 2000])
def test_anthropic_headers_are_checked_before_they_are_forwarded(sec, header, value):
    r = send(sec, msgs("mock-claude"), path="/v1/messages", headers={header: value})
    assert r.status == 400, r.body
    assert header in anthropic_envelope(r)["message"]
    assert r.sent is None


# ---- 2. model names at the edge ----------------------------------------------------------------

BAD_MODELS = ["gemini-x/../../v1beta/cachedContents?", "gemini-x/../gemini-2.5-pro", "mock-gpt\r\nx-evil: 1",
              "mock-gpt\r\n\r\nHTTP/1.1 200 OK", "mock-gpt\nforged log line", EMAIL, "m" * 100_000, "gemini-%2e%2e",
              "gemini-a b", "gemini-\u00e9", "gemini-\u0000"]


@pytest.mark.parametrize("model", BAD_MODELS, ids=range(len(BAD_MODELS)))
def test_bad_model_names_are_refused_before_any_path_header_or_log(sec, model):
    before = len(access_log(sec).splitlines())
    r = send(sec, chat(model=model))
    assert r.status == 400, r.body
    e = envelope(r)
    assert e["param"] == "model" and e["code"] == "invalid_model"
    assert r.sent is None
    for k, v in r.headers.items():
        assert "\r" not in v and "\n" not in v and len(v) < 1024 and k != "x-evil"
    new = access_log(sec).splitlines()[before:]
    assert all("forged" not in l and EMAIL not in l and len(l) < 4096 for l in new), new


def test_model_header_values_are_bounded_and_escaped(sec):
    # A valid but long model name still cannot grow a header past the bound.
    r = send(sec, chat(model="gemini-" + "a" * 240))
    assert r.status == 200, r.body
    assert len(r.headers["x-sluice-served-model"]) <= 260


# ---- 3. provider error texts ---------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("status", ["400", "401", "403", "404", "429", "500", "503"])
def test_provider_errors_never_echo_the_gateways_key(sec, model, status):
    r = send(sec, chat(model=model), {"x-mock-fault": "leak-key", "x-mock-status": status})
    assert r.sent is not None
    assert r.status >= 400
    e = envelope(r)
    assert MOCK_KEYS[model] not in r.body.decode(), r.body
    assert MOCK_KEYS[model] not in json.dumps(dict(r.headers))
    if status in ("401", "403"):
        assert r.status == 502 and e["code"] == "upstream_auth_error"
    assert MOCK_KEYS[model] not in access_log(sec)


def test_stream_errors_never_echo_a_key(sec):
    r = send(sec, chat(model="mock-gpt", stream=True), {"x-mock-fault": "leak-key", "x-mock-status": "429"})
    assert MOCK_KEYS["mock-gpt"] not in r.body.decode()


# ---- 4. outbound headers are an allow-list -------------------------------------------------------

SMUGGLED = {"openai-organization": "org-evil", "openai-project": "proj_evil", "x-goog-user-project": "evil-project",
            "cookie": "session=evil", "x-forwarded-for": "10.0.0.1", "x-sluice-credential": "mock-anthropic.mock-anthropic",
            "x-api-key": "sk-client-own", "api-key": "client", "x-goog-api-key": "client", "anthropic-beta": "evil",
            "x-stainless-arch": "x64", "x-sluice-served-model": "forged", "proxy-authorization": "Basic eA=="}


@pytest.mark.parametrize("model", MODELS)
def test_only_allowed_headers_reach_the_provider(sec, model):
    r = send(sec, chat(model=model), {**SMUGGLED, "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert r.status == 200, r.body
    got = {k.lower() for k in r.sent["headers"]}
    assert not got & set(SMUGGLED) - {"x-api-key", "api-key", "x-goog-api-key"}, got & set(SMUGGLED)
    cred = {"mock-gpt": "authorization", "mock-claude": "x-api-key", "mock-gemini": "x-goog-api-key"}[model]
    assert r.sent["headers"][cred].endswith(MOCK_KEYS[model])  # the gateway's key, not the client's
    assert "traceparent" in got


def test_provider_response_headers_are_an_allow_list(sec):
    r = send(sec, chat())
    # The mock's own test header passes (its backend returns x-mock-*); nothing else of its.
    assert {"content-type", "x-sluice-provider", "x-sluice-served-model"} <= set(r.headers)
    assert "set-cookie" not in r.headers and "openai-organization" not in r.headers


# ---- 5. PII outside messages ---------------------------------------------------------------------

def test_pii_in_every_field_the_provider_sees(sec):
    body = chat(text="hello", user=EMAIL, metadata={"owner": EMAIL}, stop=[EMAIL, "END"],
                tools=[{"type": "function", "function": {
                    "name": "mail", "description": f"mails {EMAIL}",
                    "parameters": {"type": "object", "properties": {"to": {"type": "string", "description": EMAIL}}}}}],
                response_format={"type": "json_schema", "json_schema": {
                    "name": "r", "schema": {"type": "object", "description": f"for {EMAIL} ssn {SSN}"}}})
    body["messages"][0]["name"] = "jane"
    r = send(sec, body)
    assert r.status == 200, r.body
    sent = json.dumps(r.sent["body"])
    assert EMAIL not in sent and SSN not in sent, sent


# ---- 6. duplicate keys ---------------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"model":"mock-gpt","messages":[{"role":"user","content":"' + EMAIL.encode() + b'"}],'
    b'"messages":[{"role":"user","content":"hi"}]}',
    b'{"model":"mock-gpt","messages":[{"role":"user","content":"' + EMAIL.encode() + b'","content":"hi"}]}',
    b'{"model":"mock-gpt","model":"mock-claude","messages":[{"role":"user","content":"hi"}]}',
    b'{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"metadata":{"a":"1","a":"' + EMAIL.encode() + b'"}}',
])
def test_duplicate_keys_are_refused(sec, body):
    r = send(sec, body)
    assert r.status == 400, r.body
    assert "duplicate key" in envelope(r)["message"]
    assert r.sent is None


# ---- 7. a 200 whose body is an error -------------------------------------------------------------

def test_error_in_a_200_is_a_502(sec):
    r = send(sec, chat(), {"x-mock-fault": "error-200"})
    assert r.status == 502, r.body
    assert envelope(r)["type"] == "server_error"


# ---- 8. every reply in the envelope --------------------------------------------------------------

def test_envoys_own_replies_are_in_the_envelope(sec):
    for data, status in [
        (b"GET /v1/models HTTP/1.0\r\n\r\n", 426),
        (b"POST /v1/chat%2Fcompletions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}", 400),
        (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: x\r\n\r\n", 400),
    ]:
        out = raw(sec, data)
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.split(b" ")[1] == str(status).encode(), out
        assert b"content-type: application/json" in head.lower(), out
        assert set(json.loads(body)["error"]) == {"message", "type", "param", "code"}


def test_idle_timeout_is_in_the_envelope(sec):
    r = send(sec, chat(), {"x-mock-delay-ms": "4000"})
    assert r.status in (408, 504), r.body
    envelope(r)


# ---- 9. the estimate counts what the provider bills ----------------------------------------------

def test_schema_heavy_requests_cannot_overshoot_a_token_budget(sec):
    props = {f"field_{j}": {"type": "string", "description": f"The {j}th attribute of the invoice line item."}
             for j in range(60)}
    schema = {"type": "object", "properties": props}
    assert len(json.dumps(schema)) > 4000
    body = chat(text="extract", max_tokens=10,
                response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    with ThreadPoolExecutor(30) as ex:
        rs = list(ex.map(lambda _: send(sec, body, key="sk-tight"), range(30)))
    admitted = [r for r in rs if r.status == 200]
    assert all(r.status in (200, 429) for r in rs), [r.status for r in rs]
    # Each request bills about 1,100 tokens (its schema): 3,000 a minute admit at most two.
    assert 1 <= len(admitted) <= 2, len(admitted)


# ---- 10. metric labels ---------------------------------------------------------------------------

def test_unknown_models_create_no_metric_series(sec):
    for i in range(20):
        r = send(sec, chat(model=f"gemini-made-up-{i}"))
        assert r.status == 200
    names = [k for k in sec.stats() if "sluice_auth" in k]
    assert not any("made-up" in k for k in names), names
    assert any("other" in k for k in names), names


# ---- contract out --------------------------------------------------------------------------------

def test_tool_call_without_input_has_object_arguments(sec):
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    for stream in (False, True):
        r = send(sec, chat(model="mock-claude", tools=tools, tool_choice="required", stream=stream))
        assert r.status == 200, r.body
        if stream:
            args = assemble(r.events())["tool_calls"][0]["arguments"]
        else:
            args = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(args) == {}, args


def test_finish_reason_is_always_openais(sec):
    r = send(sec, chat(), {"x-mock-fault": "odd-finish"})
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    r = send(sec, chat(stream=True), {"x-mock-fault": "odd-finish"})
    assert assemble(r.events())["finish"] == "stop"


def test_gemini_accepts_tool_history_from_another_provider(sec):
    body = {"model": "mock-gemini", "messages": [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "toolu_01", "type": "function", "function": {"name": "now", "arguments": "{}"}},
            {"id": "toolu_02", "type": "function", "function": {"name": "zone", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01", "content": "12:00"},
        {"role": "tool", "tool_call_id": "toolu_02", "content": "UTC"}],
        "tools": [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("now", "zone")]}
    r = send(sec, body)
    assert r.status == 200, r.body
    parts = r.sent["body"]["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"


def test_models_list_has_no_globs(sec):
    ids = [m["id"] for m in request(sec, "GET", "/v1/models", headers={"authorization": "Bearer sk-sec"}).json()["data"]]
    assert ids and not any("*" in i for i in ids), ids
    assert "gemini-2.5-pro" in ids  # priced, and served by gemini-*
