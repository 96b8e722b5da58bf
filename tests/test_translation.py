"""Per-provider translation through a real Envoy: what reaches the provider (recorded by the mock)
and what the client gets back, JSON and streaming."""
import json

import pytest

from conftest import MODELS, assemble

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                   "required": ["city", "days"]}}}
PNG = "data:image/png;base64,iVBORw0KGgo="


def test_credentials_and_paths_per_provider(post, seen):
    cases = {
        "mock-gpt": ("/v1/chat/completions", "authorization", "Bearer mock-openai-key"),
        "mock-claude": ("/v1/messages", "x-api-key", "mock-anthropic-key"),
        "mock-gemini": ("/v1beta/models/mock-gemini:generateContent", "x-goog-api-key", "mock-gemini-key"),
    }
    for model, (path, header, value) in cases.items():
        tag = seen.tag()
        r = post({"model": model, "messages": [{"role": "user", "content": "hi"}]},
                 {**tag, "x-api-key": "client-secret", "x-goog-api-key": "client-secret"})
        assert r.status == 200, r.body
        got = seen.get(tag)
        assert got["path"] == path
        assert got["headers"][header] == value
        # The client's own credentials (its Sluice key included) never reach a provider.
        assert "client-secret" not in json.dumps(got["headers"])
        assert "sk-sluice-demo" not in json.dumps(got["headers"])
        assert not any(h.startswith("x-sluice-") for h in got["headers"])
        assert "accept-encoding" not in got["headers"]


def test_anthropic_request_translation(post, seen):
    tag = seen.tag()
    r = post({
        "model": "mock-claude", "temperature": 0.3, "top_p": 0.9, "stop": ["ZZZ"], "user": "user-7",
        "parallel_tool_calls": False, "tools": [WEATHER], "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": "image_url", "image_url": {"url": PNG}}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\",\"days\":1}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Rome\",\"days\":2}"}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "cold"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "warm"}]},
            {"role": "user", "content": "And tomorrow?"},
        ]}, tag)
    assert r.status == 200, r.body
    b = seen.get(tag)["body"]
    assert seen.get(tag)["headers"]["anthropic-version"] == "2023-06-01"
    assert b["system"] == [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric units."}]
    assert b["max_tokens"] == 4096  # the backend's default: the client gave none
    assert (b["temperature"], b["top_p"], b["stop_sequences"]) == (0.3, 0.9, ["ZZZ"])
    assert b["metadata"] == {"user_id": "user-7"}
    assert b["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert b["tools"] == [{"name": "get_weather", "description": "Weather for a city",
                           "input_schema": WEATHER["function"]["parameters"]}]
    m = b["messages"]
    assert [x["role"] for x in m] == ["user", "assistant", "user"]
    assert m[0]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    assert m[0]["content"][2] == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    assert [c["input"] for c in m[1]["content"]] == [{"city": "Oslo", "days": 1}, {"city": "Rome", "days": 2}]
    assert m[2]["content"][0] == {"type": "tool_result", "tool_use_id": "call_1", "content": "cold"}
    assert m[2]["content"][1]["content"] == [{"type": "text", "text": "warm"}]
    assert m[2]["content"][2] == {"type": "text", "text": "And tomorrow?"}
    # The mock echoes the whole last user turn: both tool results, then the question.
    assert r.json()["choices"][0]["message"]["content"] == "echo: coldwarmAnd tomorrow?"


def test_gemini_request_translation(post, seen):
    first = post({"model": "mock-gemini", "tools": [WEATHER], "tool_choice": "required",
                  "messages": [{"role": "user", "content": "weather?"}]})
    call = first.json()["choices"][0]["message"]["tool_calls"][0]
    tag = seen.tag()
    r = post({"model": "mock-gemini", "max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.5, "stop": "END",
              "seed": 3, "n": 2, "response_format": {"type": "json_object"}, "tools": [WEATHER],
              "messages": [
                  {"role": "system", "content": "sys"},
                  {"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "image_url", "image_url": {"url": PNG}}]},
                  {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": call["id"], "content": "{\"temp\": 21}"},
              ]}, tag)
    assert r.status == 200, r.body
    b = seen.get(tag)["body"]
    assert b["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert [c["role"] for c in b["contents"]] == ["user", "model", "user"]
    assert b["contents"][0]["parts"][1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    fc = b["contents"][1]["parts"][0]
    assert fc["functionCall"]["name"] == "get_weather" and fc["functionCall"]["args"] == {"city": "mock", "days": 1}
    assert "thoughtSignature" in fc  # carried through the OpenAI tool-call id and given back
    assert b["contents"][2]["parts"][0]["functionResponse"]["response"] == {"temp": 21}
    assert b["contents"][2]["parts"][0]["functionResponse"]["name"] == "get_weather"
    gc = b["generationConfig"]
    assert gc == {"maxOutputTokens": 50, "temperature": 0.2, "topP": 0.5, "stopSequences": ["END"], "seed": 3,
                  "candidateCount": 2, "responseMimeType": "application/json"}
    assert b["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == WEATHER["function"]["parameters"]
    assert b["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    choices = r.json()["choices"]
    assert [c["index"] for c in choices] == [0, 1]


def test_openai_passthrough_keeps_unknown_fields(post, seen):
    tag = seen.tag()
    body = {"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"50256": -100},
            "vendor_extension": {"a": 1}, "seed": 7}
    assert post(body, tag).status == 200
    got = seen.get(tag)["body"]
    assert got["vendor_extension"] == {"a": 1} and got["logit_bias"] == {"50256": -100} and got["seed"] == 7


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tool_call_round_trip(post, model, stream):
    """The model calls a tool, the client answers it, the model sees the result: on every provider."""
    first = post({"model": model, "stream": stream, "tools": [WEATHER],
                  "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
                  "messages": [{"role": "user", "content": "Weather in Oslo?"}]})
    assert first.status == 200, first.body
    if stream:
        a = assemble(first.events())
        calls, finish = a["tool_calls"], a["finish"]
        assert a["done"] and len(a["ids"]) == 1
    else:
        msg = first.json()["choices"][0]
        calls = [{"id": c["id"], "name": c["function"]["name"], "arguments": c["function"]["arguments"]}
                 for c in msg["message"]["tool_calls"]]
        finish = msg["finish_reason"]
        assert msg["message"]["content"] is None
    assert finish == "tool_calls"
    assert len(calls) == 1 and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "mock", "days": 1}
    second = post({"model": model, "tools": [WEATHER], "messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": calls[0]["id"], "type": "function", "function": {"name": "get_weather", "arguments": calls[0]["arguments"]}}]},
        {"role": "tool", "tool_call_id": calls[0]["id"], "content": "sunny"}]})
    assert second.status == 200, second.body
    assert "sunny" in second.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", MODELS)
def test_json_schema_response_format(post, model):
    """Anthropic has no JSON mode: a forced tool whose input is the answer; Gemini gets
    responseMimeType + responseJsonSchema; OpenAI passes through."""
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"], "additionalProperties": False}
    for stream in (False, True):
        r = post({"model": model, "stream": stream, "messages": [{"role": "user", "content": "Invent a person"}],
                  "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}})
        assert r.status == 200, r.body
        if stream:
            a = assemble(r.events())
            content, finish, calls = a["content"], a["finish"], a["tool_calls"]
        else:
            c = r.json()["choices"][0]
            content, finish, calls = c["message"]["content"], c["finish_reason"], c["message"].get("tool_calls") or []
        assert json.loads(content) == {"name": "mock", "age": 1}
        assert finish == "stop" and calls == []


@pytest.mark.parametrize("model,field", [("mock-claude", "reasoning_content"), ("mock-gemini", "reasoning_content")])
def test_thinking_is_surfaced(post, model, field):
    r = post({"model": model, "reasoning_effort": "low", "messages": [{"role": "user", "content": "think"}]})
    assert r.status == 200, r.body
    assert r.json()["choices"][0]["message"][field] == "mock reasoning"
    s = post({"model": model, "stream": True, "reasoning_effort": "low", "messages": [{"role": "user", "content": "think"}]})
    assert assemble(s.events())["reasoning"] == "mock reasoning"


@pytest.mark.parametrize("model", MODELS)
def test_finish_reasons_length_and_stop(post, model):
    r = post({"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "one two three four"}]})
    assert r.json()["choices"][0]["finish_reason"] == "length", r.body
    assert r.json()["choices"][0]["message"]["content"] == "echo: one "
    r = post({"model": model, "stop": ["three"], "messages": [{"role": "user", "content": "one two three four"}]})
    c = r.json()["choices"][0]
    assert (c["finish_reason"], c["message"]["content"]) == ("stop", "echo: one two ")


@pytest.mark.parametrize("model", MODELS)
def test_usage_with_cached_tokens(post, model):
    r = post({"model": model, "messages": [{"role": "user", "content": "a b c"}]}, {"x-mock-cached-tokens": "2"})
    u = r.json()["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
    assert u["completion_tokens"] == 4  # "echo: a b c"
    assert u["prompt_tokens_details"]["cached_tokens"] == 2
    if model == "mock-claude":
        # Anthropic counts cache reads outside input_tokens; OpenAI's prompt_tokens includes them.
        assert u["prompt_tokens"] >= 2 + 3


@pytest.mark.parametrize("body,param", [
    ({"n": 2}, "n"),
    ({"logprobs": True}, "logprobs"),
    ({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]}, "messages[0].content[0]"),
    ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "a", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages[0].tool_calls[0].function.arguments"),
    ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
    ({"reasoning_effort": "extreme"}, "reasoning_effort"),
])
def test_anthropic_refuses_what_would_change_meaning(post, body, param):
    req = {"model": "mock-claude", "messages": [{"role": "user", "content": "x"}], **body}
    r = post(req)
    assert r.status == 400, r.body
    e = r.json()["error"]
    assert e["param"] == param and e["type"] == "invalid_request_error"


def test_gemini_refuses_remote_images_and_unknown_tool_ids(post):
    r = post({"model": "mock-gemini", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]})
    assert r.status == 400 and "inline" in r.json()["error"]["message"]
    r = post({"model": "mock-gemini", "messages": [{"role": "tool", "tool_call_id": "ghost", "content": "x"}]})
    assert r.status == 400 and r.json()["error"]["param"] == "messages[0].tool_call_id"
