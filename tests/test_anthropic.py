"""The Anthropic Messages front (`/v1/messages`, `/v1/messages/count_tokens`), driven by the
official `anthropic` SDK through a real Envoy running the built wasm, against the mock playing
Anthropic (pass-through), OpenAI and Gemini (translated both ways)."""
import base64
import json

import anthropic
import pytest

from conftest import DEMO_KEY, request

BACKENDS = ["mock-claude", "mock-gpt", "mock-gemini"]
WEATHER = {"name": "weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")).decode()


@pytest.fixture(scope="module")
def client(gw):
    return anthropic.Anthropic(base_url=gw.base_url, api_key=DEMO_KEY, max_retries=0)


def mock_seen(gw, tag):
    r = request(gw, "GET", f"/_mock/requests/{tag}", port=gw.mock_port)
    assert r.status == 200, "the mock provider received nothing"
    return r.json()


def tagged(seen, **extra):
    return {**seen.tag(), **extra}


@pytest.mark.parametrize("model", BACKENDS)
def test_create_and_stream_on_every_backend(client, seen, model):
    h = tagged(seen)
    m = client.messages.create(model=model, max_tokens=64, extra_headers=h,
                               system=[{"type": "text", "text": "Be brief."}],
                               messages=[{"role": "user", "content": "hello gateway"}])
    assert m.type == "message" and m.role == "assistant"
    assert m.model == model, "the client's model name comes back"
    assert m.content[0].type == "text" and m.content[0].text == "echo: hello gateway"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    with client.messages.stream(model=model, max_tokens=64,
                                extra_headers={"x-mock-split": "7"},
                                messages=[{"role": "user", "content": "stream me please"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "echo: stream me please"
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", BACKENDS)
def test_what_each_backend_receives(gw, client, seen, model):
    h = tagged(seen, **{"anthropic-beta": "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
                        "anthropic-version": "2023-06-01"})
    client.messages.create(model=model, max_tokens=64, extra_headers=h,
                           system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
                           messages=[{"role": "user", "content": "what reaches you"}])
    got = mock_seen(gw, h["x-mock-tag"])
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert "sk-sluice-demo" not in json.dumps(got), "the client's key stays in the gateway"
    assert not any(k.startswith("x-sluice-") for k in headers)
    if model == "mock-claude":
        # Claude Code needs both headers on what the provider receives.
        assert got["path"] == "/v1/messages"
        assert headers["anthropic-version"] == "2023-06-01"
        assert headers["anthropic-beta"] == h["anthropic-beta"]
        assert got["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
        assert headers.get("x-api-key"), "the gateway's own credential, injected by Envoy"
    else:
        assert "anthropic-beta" not in headers and "anthropic-version" not in headers
    if model == "mock-gpt":
        assert got["path"] == "/v1/chat/completions"
        assert got["body"]["messages"][0] == {"role": "system", "content": "Be brief."}
        assert got["body"]["max_tokens"] == 64
    if model == "mock-gemini":
        assert ":generateContent" in got["path"]
        assert got["body"]["systemInstruction"]["parts"][0]["text"] == "Be brief."


def test_anthropic_bytes_pass_through_unchanged(gw, seen):
    """The body reaches Anthropic as the client wrote it (key order, spacing, unknown fields
    such as a thinking signature), since the host does not rename the model."""
    body = ('{"model": "mock-claude",  "max_tokens": 2000, "thinking": {"type": "enabled", "budget_tokens": 1024},'
            ' "messages": [{"role": "user", "content": "think first"},'
            ' {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm", "signature": "c2lnbmVk"},'
            ' {"type": "text", "text": "ok"}]}, {"role": "user", "content": "and now?"}]}')
    h = {**seen.tag(), "authorization": f"Bearer {DEMO_KEY}", "anthropic-version": "2023-06-01",
         "content-type": "application/json"}
    r = request(gw, "POST", "/v1/messages", body.encode(), h)
    assert r.status == 200, r.body
    got = mock_seen(gw, h["x-mock-tag"])
    assert got["body"] == json.loads(body)
    m = r.json()
    assert m["content"][0]["type"] == "thinking" and m["content"][0]["signature"]


@pytest.mark.parametrize("model", BACKENDS)
def test_tool_round_trip(client, model):
    q = [{"role": "user", "content": "weather in Paris"}]
    m = client.messages.create(model=model, max_tokens=200, tools=[WEATHER],
                               tool_choice={"type": "any"}, messages=q)
    assert m.stop_reason == "tool_use"
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert use.name == "weather" and isinstance(use.input, dict) and "city" in use.input
    follow = q + [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                "content": "sunny and 21 C"}]}]
    m2 = client.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=follow)
    assert m2.stop_reason == "end_turn"
    assert "sunny and 21 C" in m2.content[0].text
    # Streamed: the tool input arrives as input_json_delta pieces, split anywhere.
    with client.messages.stream(model=model, max_tokens=200, tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "weather"}, messages=q,
                                extra_headers={"x-mock-split": "3"}) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.name == "weather" and "city" in use.input and final.stop_reason == "tool_use"


@pytest.mark.parametrize("model", BACKENDS)
def test_images_reach_every_backend(gw, client, seen, model):
    h = tagged(seen)
    m = client.messages.create(model=model, max_tokens=50, extra_headers=h, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this"}]}])
    assert m.content[0].text
    body = json.dumps(mock_seen(gw, h["x-mock-tag"])["body"])
    assert PNG in body, "the image's bytes reach the provider"


def test_count_tokens(gw, client, seen):
    msgs = [{"role": "user", "content": "one two three four"}]
    h = tagged(seen)
    n = client.messages.count_tokens(model="mock-claude", messages=msgs, extra_headers=h)
    got = mock_seen(gw, h["x-mock-tag"])
    # Anthropic (the mock) counts: one token per word of the body, model and role included.
    assert got["path"] == "/v1/messages/count_tokens" and n.input_tokens == 6
    for model in ("mock-gpt", "mock-gemini"):
        est = client.messages.count_tokens(model=model, messages=msgs,
                                           system="You are terse.", tools=[WEATHER])
        assert est.input_tokens >= 4 + 3, "the gateway's estimate errs high"
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.count_tokens(model="mock-gpt", messages=[])
    assert e.value.body["type"] == "error"


def test_models_in_anthropics_shape(client, gw):
    page = client.models.list()
    ids = [m.id for m in page.data]
    assert "mock-claude" in ids and all(m.type == "model" for m in page.data)
    assert client.models.retrieve("mock-gpt").id == "mock-gpt"
    openai_shape = request(gw, "GET", "/v1/models", headers={"authorization": f"Bearer {DEMO_KEY}"}).json()
    assert openai_shape["object"] == "list"


def test_errors_are_in_anthropics_envelope(gw, client):
    bad_key = anthropic.Anthropic(base_url=gw.base_url, api_key="sk-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad_key.messages.create(model="mock-claude", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["type"] == "error" and e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "not_found_error"
    for body, field in [({"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
                        ({"model": "mock-gpt", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}, "role"),
                        ({"model": "../x", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}, "model")]:
        r = request(gw, "POST", "/v1/messages", json.dumps(body).encode(),
                    {"x-api-key": DEMO_KEY, "anthropic-version": "2023-06-01"})
        assert r.status == 400, r.body
        v = r.json()
        assert v["type"] == "error" and v["error"]["type"] == "invalid_request_error", v
        assert field in v["error"]["message"]
    r = request(gw, "POST", "/v1/messages", b"{not json", {"x-api-key": DEMO_KEY})
    assert r.status == 400 and r.json()["type"] == "error"
    # anthropic-beta goes to Anthropic as sent: anything but a plain list of names is refused.
    r = request(gw, "POST", "/v1/messages", json.dumps({"model": "mock-claude", "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}]}).encode(),
                {"x-api-key": DEMO_KEY, "anthropic-beta": "a;b=<script>"})
    assert r.status == 400 and "anthropic-beta" in r.json()["error"]["message"]


@pytest.mark.parametrize("model", BACKENDS)
@pytest.mark.parametrize("status,kind,want", [(529, "overloaded_error", 529), (503, "overloaded_error", 529),
                                              (429, "rate_limit_error", 429), (400, "invalid_request_error", 400)])
def test_backend_errors_map_to_anthropics_statuses(client, model, status, kind, want):
    with pytest.raises(anthropic.APIStatusError) as e:
        client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}],
                               extra_headers={"x-mock-status": str(status), "x-mock-retry-after": "0"})
    assert e.value.status_code == want, e.value.body
    assert e.value.body["type"] == "error"
    if want != 400:
        assert e.value.body["error"]["type"] == kind


@pytest.mark.parametrize("model", BACKENDS)
def test_a_stream_cut_short_ends_in_an_error_event(client, model):
    with pytest.raises(anthropic.APIError):
        with client.messages.stream(model=model, max_tokens=64, extra_headers={"x-mock-fault": "truncate"},
                                    messages=[{"role": "user", "content": "a b c d e f g h"}]) as s:
            for _ in s:
                pass


def test_claude_code_bearer_token(gw):
    """Claude Code sends ANTHROPIC_AUTH_TOKEN as `Authorization: Bearer`."""
    c = anthropic.Anthropic(base_url=gw.base_url, auth_token=DEMO_KEY, max_retries=0)
    m = c.messages.create(model="mock-claude", max_tokens=20, messages=[{"role": "user", "content": "hi"}])
    assert m.content[0].text == "echo: hi"


@pytest.mark.parametrize("model", BACKENDS)
def test_pii_is_redacted_and_put_back(gw, client, seen, model):
    h = tagged(seen, **{"x-mock-split": "5"})
    q = [{"role": "user", "content": "mail jane.doe@corp.com about 4111111111111111"}]
    with client.messages.stream(model=model, max_tokens=64, messages=q, extra_headers=h) as s:
        final = s.get_final_message()
    sent = json.dumps(mock_seen(gw, h["x-mock-tag"])["body"])
    assert "jane.doe@corp.com" not in sent and "4111111111111111" not in sent
    assert "[EMAIL_1]" in sent
    assert final.content[0].text == "echo: mail jane.doe@corp.com about 4111111111111111"
    echo = {"name": "send", "input_schema": {"type": "object", "required": ["echo"],
                                             "properties": {"echo": {"type": "string"}}}}
    m = client.messages.create(model=model, max_tokens=64, messages=q, tools=[echo],
                               tool_choice={"type": "any"})
    use = [b for b in m.content if b.type == "tool_use"][0]
    assert use.input["echo"] == q[0]["content"], "tool input re-hydrated"
    with client.messages.stream(model=model, max_tokens=64, messages=q, tools=[echo],
                                tool_choice={"type": "any"}, extra_headers={"x-mock-split": "11"}) as s:
        final = s.get_final_message()
    use = [b for b in final.content if b.type == "tool_use"][0]
    assert use.input["echo"] == q[0]["content"], "streamed tool input re-hydrated"


@pytest.mark.parametrize("model", BACKENDS)
def test_usage_is_charged_from_anthropic_usage(gw, client, model):
    def total():
        r = request(gw, "GET", "/v1/sluice/usage", headers={"x-api-key": DEMO_KEY})
        assert r.status == 200, r.body
        return r.json()["keys"]["demo"]["total"]
    q = [{"role": "user", "content": "count my tokens please"}]
    before = total()
    m = client.messages.create(model=model, max_tokens=64, messages=q)
    with client.messages.stream(model=model, max_tokens=64, messages=q) as s:
        f = s.get_final_message()
    after = total()
    assert after["requests"] - before["requests"] == 2
    assert after["tokens_in"] - before["tokens_in"] == m.usage.input_tokens + f.usage.input_tokens
    assert after["tokens_out"] - before["tokens_out"] == m.usage.output_tokens + f.usage.output_tokens
    assert after["partial"] == before["partial"], "a whole answer is not charged as partial"


@pytest.mark.parametrize("model", BACKENDS)
def test_cache_replays_in_anthropics_format(gw, client, seen, model):
    """A deterministic request is stored on its first answer (streamed or not) and replayed,
    as JSON or as Anthropic's event stream, which the SDK's stream helper accumulates into the
    same message; PII is stored as placeholders and put back on replay."""
    q = [{"role": "user", "content": f"cache me {model} {seen.tag()['x-mock-tag']} ann@corp.com"}]
    kw = dict(model=model, max_tokens=64, messages=q, extra_body={"temperature": 0})
    with client.messages.stream(**kw) as s:
        first = s.get_final_message()
        r = s.response
    assert r.headers["x-sluice-cache"] == "miss"
    raw = client.messages.with_raw_response.create(**kw)
    assert raw.headers["x-sluice-cache"] == "hit" and raw.headers["x-sluice-provider"] == "cache"
    hit = raw.parse()

    def blocks(m):
        return [{"type": b.type, "text": b.text} for b in m.content]
    assert blocks(hit) == blocks(first) and hit.stop_reason == first.stop_reason
    assert "ann@corp.com" in hit.content[0].text
    with client.messages.stream(**kw) as s:
        replayed = s.get_final_message()
        assert s.response.headers["x-sluice-cache"] == "hit"
    assert blocks(replayed) == blocks(first) and replayed.usage.output_tokens == first.usage.output_tokens
    # The same words as a chat completion are another entry.
    r = request(gw, "POST", "/v1/chat/completions",
                json.dumps({"model": model, "temperature": 0, "max_tokens": 64, "messages": q}).encode(),
                {"authorization": f"Bearer {DEMO_KEY}"})
    assert r.status == 200 and r.headers["x-sluice-cache"] == "miss"
    assert r.json()["object"] == "chat.completion"
