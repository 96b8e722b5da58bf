"""Bedrock (Converse, ConverseStream, InvokeModel) and Vertex AI (Gemini, Claude) through a real
Envoy: requests signed by Envoy's aws_request_signing, which the mock verifies itself (SigV4 over
the path and the body it received, with the test credentials), Vertex's bearer token injected
from an SDS file; event-stream frames in random byte pieces, exceptions mid-stream, corrupt
frames, throttling; failover between Bedrock and OpenAI in both orders; usage and prices."""
import base64
import hashlib
import json

import anthropic
import openai
import pytest

import sluice
from conftest import assemble, request

KEY = "sk-clouds"
PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082")).decode()
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
NOVA, CLAUDE = "amazon.nova-pro-v1:0", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"


@pytest.fixture(scope="module")
def cl(tmp_path_factory):
    run = tmp_path_factory.mktemp("clouds")
    m = sluice.free_port()
    spec = {
        "timeouts": {"per_try": "2s"},
        "backends": {
            "p-openai": sluice.mock_backend("openai", m),
            "p-bedrock": sluice.mock_backend("bedrock", m, forward_headers=["x-mock-*", "anthropic-beta"]),
            "p-vertex": sluice.mock_backend("vertex", m, location="europe-west4"),
        },
        "models": {
            "nova": {"chain": [f"p-bedrock:{NOVA}"]},
            "bedrock-claude": {"chain": [f"p-bedrock:{CLAUDE}"]},
            "vertex-gemini": {"chain": ["p-vertex:gemini-2.5-pro"]},
            "vertex-claude": {"chain": ["p-vertex:claude-sonnet-4-5@20250929"]},
            "bedrock-first": {"chain": [f"p-bedrock:{NOVA}", "p-openai:gpt-4o-mini"]},
            "openai-first": {"chain": ["p-openai:gpt-4o-mini", f"p-bedrock:{NOVA}"]},
        },
        "auth": {"keys": [{"id": "clouds", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "team": "clouds"}],
                 "prices": {"amazon.*": {"input": 0.8, "output": 3.2}, "gemini-2.5-pro": {"input": 1.25, "output": 10}}},
    }
    stack = sluice.Stack(run, mock_port=m, spec=spec, concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def oai(cl):
    return openai.OpenAI(base_url=cl.base_url + "/v1", api_key=KEY, max_retries=0)


@pytest.fixture(scope="module")
def ant(cl):
    return anthropic.Anthropic(base_url=cl.base_url, api_key=KEY, max_retries=0)


def seen(stack, tag):
    r = request(stack, "GET", f"/_mock/requests/{tag}", port=stack.mock_port)
    assert r.status == 200, "the mock received nothing for this tag"
    return r.json()


def chat(stack, body, headers=None):
    return request(stack, "POST", "/v1/chat/completions", body,
                   {"authorization": f"Bearer {KEY}", **(headers or {})})


def test_converse_json_is_signed_and_translated(cl, oai):
    r = oai.chat.completions.with_raw_response.create(
        model="nova", max_tokens=40, temperature=0.5, stop=["ZZZ"], extra_headers={"x-mock-tag": "cl-json"},
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": [{"type": "text", "text": "what is this"},
                                               {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}])
    c = r.parse()
    assert c.choices[0].message.content == "echo: what is this" and c.choices[0].finish_reason == "stop"
    assert c.model == "nova" and r.headers["x-sluice-served-model"] == NOVA
    got = seen(cl, "cl-json")
    assert got["path"] == "/model/amazon.nova-pro-v1%3A0/converse"
    assert got["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDSLUICEMOCK")
    assert "/us-east-1/bedrock/aws4_request" in got["headers"]["authorization"]
    body = got["body"]
    assert body["system"] == [{"text": "Be brief."}]
    assert body["messages"][0]["content"][1] == {"image": {"format": "png", "source": {"bytes": PNG}}}
    assert body["inferenceConfig"] == {"maxTokens": 40, "temperature": 0.5, "stopSequences": ["ZZZ"]}
    assert KEY not in json.dumps(got)


@pytest.mark.parametrize("split", [None, "3", "17"])
def test_converse_stream_frames_in_random_pieces(cl, split):
    h = {"x-mock-split": split} if split else {}
    r = chat(cl, {"model": "nova", "stream": True, "stream_options": {"include_usage": True},
                  "messages": [{"role": "user", "content": "one two three four five"}]}, h)
    assert r.status == 200 and r.headers["content-type"].startswith("text/event-stream"), r.body
    a = assemble(r.events())
    assert a["content"] == "echo: one two three four five" and a["finish"] == "stop" and a["done"]
    assert a["usage"]["completion_tokens"] > 0


def test_tool_round_trip_on_converse(cl, oai):
    q = [{"role": "user", "content": "weather in Paris"}]
    c = oai.chat.completions.create(model="nova", messages=q, tools=[WEATHER], tool_choice="required")
    call = c.choices[0].message.tool_calls[0]
    assert c.choices[0].finish_reason == "tool_calls" and call.function.name == "weather"
    assert "city" in json.loads(call.function.arguments)
    follow = q + [c.choices[0].message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "sunny and 21 C"}]
    c2 = oai.chat.completions.create(model="nova", messages=follow, tools=[WEATHER],
                                     extra_headers={"x-mock-tag": "cl-tools"})
    assert "sunny and 21 C" in c2.choices[0].message.content
    sent = seen(cl, "cl-tools")["body"]
    assert sent["messages"][2]["content"][0]["toolResult"]["toolUseId"] == call.id
    s = oai.chat.completions.create(model="nova", messages=q, tools=[WEATHER], stream=True,
                                    tool_choice={"type": "function", "function": {"name": "weather"}},
                                    extra_headers={"x-mock-split": "5"})
    args = "".join(ch.choices[0].delta.tool_calls[0].function.arguments or "" for ch in s
                   if ch.choices and ch.choices[0].delta.tool_calls)
    assert "city" in json.loads(args)


@pytest.mark.parametrize("status,want", [(429, 429), (400, 400), (503, 503), (500, 502), (408, 504), (424, 502)])
def test_bedrock_errors_by_their_type(cl, status, want):
    r = chat(cl, {"model": "nova", "messages": [{"role": "user", "content": "x"}]},
             {"x-mock-status": str(status), "x-mock-retry-after": "3"})
    assert r.status == want, r.body
    e = r.json()["error"]
    assert "bedrock" in e["message"]
    if want == 429:
        assert r.headers.get("retry-after") == "3"


@pytest.mark.parametrize("fault", ["stream-error", "bad-event", "truncate"])
def test_broken_bedrock_streams_end_in_an_error(cl, fault):
    r = chat(cl, {"model": "nova", "stream": True, "messages": [{"role": "user", "content": "a b c d e f g h"}]},
             {"x-mock-fault": fault})
    assert r.status == 200
    a = assemble(r.events())
    assert a["error"] is not None and not a["done"], (fault, r.body)
    if fault == "stream-error":
        assert "Too many requests" in a["error"]["message"]


def test_claude_on_bedrock_keeps_anthropics_body(cl, ant):
    beta = "interleaved-thinking-2025-05-14"
    m = ant.messages.create(
        model="bedrock-claude", max_tokens=2000, extra_headers={"x-mock-tag": "cl-invoke", "anthropic-beta": beta},
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "think about it"}])
    assert m.content[0].type == "thinking" and m.content[0].signature, "the signature survives"
    assert m.content[1].text == "echo: think about it"
    got = seen(cl, "cl-invoke")
    assert got["path"] == "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke"
    assert got["body"]["anthropic_version"] == "bedrock-2023-05-31"
    assert got["body"]["anthropic_beta"] == [beta] and "model" not in got["body"]
    assert got["body"]["system"][0]["cache_control"] == {"type": "ephemeral"}
    follow = [{"role": "user", "content": "think about it"},
              {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
              {"role": "user", "content": "and then?"}]
    with ant.messages.stream(model="bedrock-claude", max_tokens=2000, messages=follow,
                             thinking={"type": "enabled", "budget_tokens": 1024},
                             extra_headers={"x-mock-split": "9", "x-mock-tag": "cl-invoke-2"}) as s:
        final = s.get_final_message()
    assert final.content[-1].text == "echo: and then?"
    sent = seen(cl, "cl-invoke-2")["body"]["messages"][1]["content"][0]
    assert sent["type"] == "thinking" and sent["signature"] == m.content[0].signature
    # The OpenAI front on the same model goes through Converse.
    r = chat(cl, {"model": "bedrock-claude", "messages": [{"role": "user", "content": "hi"}]}, {"x-mock-tag": "cl-conv"})
    assert r.status == 200 and seen(cl, "cl-conv")["path"].endswith("/converse")


@pytest.mark.parametrize("model,publisher", [("vertex-gemini", "google"), ("vertex-claude", "anthropic")])
def test_vertex_both_publishers_both_fronts(cl, oai, ant, model, publisher):
    c = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello vertex"}],
                                    extra_headers={"x-mock-tag": f"cl-v-{model}"})
    assert c.choices[0].message.content == "echo: hello vertex"
    got = seen(cl, f"cl-v-{model}")
    assert got["path"].startswith(f"/v1/projects/sluice-mock/locations/europe-west4/publishers/{publisher}/models/")
    assert got["headers"]["authorization"] == "Bearer mock-vertex-token"
    if publisher == "anthropic":
        assert got["path"].endswith(":rawPredict") and got["body"]["anthropic_version"] == "vertex-2023-10-16"
        assert "model" not in got["body"]
    with ant.messages.stream(model=model, max_tokens=50, messages=[{"role": "user", "content": "stream vertex"}],
                             extra_headers={"x-mock-split": "4"}) as s:
        assert "".join(s.text_stream) == "echo: stream vertex"
    s = oai.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "s v"}])
    assert "".join(ch.choices[0].delta.content or "" for ch in s if ch.choices) == "echo: s v"


def test_each_attempt_carries_only_its_own_credential(cl):
    # Bedrock fails, OpenAI serves: no signature, no x-amz-* on the OpenAI attempt.
    r = chat(cl, {"model": "bedrock-first", "messages": [{"role": "user", "content": "hi"}]},
             {"x-mock-target": "bedrock", "x-mock-status": "503", "x-mock-tag": "cl-fo1"})
    assert r.status == 200 and r.headers["x-sluice-provider"] == "p-openai", r.body
    h = seen(cl, "cl-fo1")["headers"]
    assert h["authorization"] == "Bearer mock-openai-key"
    assert not any(k.startswith("x-amz-") for k in h), h
    # OpenAI fails, Bedrock serves: a valid signature (the mock verified it), no bearer key.
    r = chat(cl, {"model": "openai-first", "messages": [{"role": "user", "content": "hi"}], "stream": True},
             {"x-mock-target": "openai", "x-mock-status": "429", "x-mock-retry-after": "0", "x-mock-tag": "cl-fo2"})
    assert r.status == 200 and r.headers["x-sluice-provider"] == "p-bedrock", r.body
    assert assemble(r.events())["content"] == "echo: hi"
    got = seen(cl, "cl-fo2")
    assert got["headers"]["authorization"].startswith("AWS4-HMAC-SHA256") and got["path"].endswith("/converse-stream")


def test_bedrock_and_vertex_usage_is_charged_at_their_prices(cl, oai):
    def total():
        return request(cl, "GET", "/v1/sluice/usage", headers={"authorization": f"Bearer {KEY}"}).json()["keys"]["clouds"]["total"]
    for model, price_in, price_out in (("nova", 0.8, 3.2), ("vertex-gemini", 1.25, 10)):
        before = total()
        c = oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "price me"}])
        after = total()
        assert after["tokens_in"] - before["tokens_in"] == c.usage.prompt_tokens
        assert after["tokens_out"] - before["tokens_out"] == c.usage.completion_tokens
        want = round(c.usage.prompt_tokens * price_in + c.usage.completion_tokens * price_out)
        assert abs((after["micro_usd"] - before["micro_usd"]) - want) <= 1, (model, after, before, want)


def test_a_wrong_signature_is_refused_by_the_mock(cl):
    """The verifier is real: a request signed with other credentials fails it."""
    r = request(cl, "POST", "/model/amazon.nova-pro-v1:0/converse", json.dumps(
        {"messages": [{"role": "user", "content": [{"text": "x"}]}]}).encode(),
        {"authorization": "AWS4-HMAC-SHA256 Credential=AKIDSLUICEMOCK0000001/20261202/us-east-1/bedrock/aws4_request, "
                          "SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=00",
         "x-amz-date": "20261202T000000Z", "x-amz-content-sha256": "0" * 64}, port=cl.mock_port)
    assert r.status == 403
