"""The official `openai` Python SDK as the client, against every wire format."""
import json

import openai
import pytest

from conftest import DEMO_KEY, EMBEDDING_MODELS, LISTED, MODELS


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=f"{gw.base_url}/v1", api_key=DEMO_KEY, max_retries=0, timeout=30)


TOOL = {"type": "function", "function": {"name": "add", "description": "Add two numbers", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}


@pytest.mark.parametrize("model", MODELS)
def test_chat(client, model):
    r = client.chat.completions.create(model=model, messages=[
        {"role": "system", "content": "You echo."}, {"role": "user", "content": "Hello, Sluice ✓"}])
    assert r.object == "chat.completion"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "echo: Hello, Sluice ✓"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 4 and r.usage.total_tokens == r.usage.prompt_tokens + 4


@pytest.mark.parametrize("model", MODELS)
def test_streaming(client, model):
    stream = client.chat.completions.create(model=model, stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "stream me please"}])
    text, finish, usage, n = "", None, None, 0
    for chunk in stream:
        n += 1
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            text += c.delta.content or ""
            finish = c.finish_reason or finish
    assert text == "echo: stream me please"
    assert finish == "stop" and n >= 4
    assert usage.completion_tokens == 4


@pytest.mark.parametrize("model", MODELS)
def test_stream_helper_accumulates(client, model):
    with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "helper test"}]) as s:
        final = s.get_final_completion()
    assert final.choices[0].message.content == "echo: helper test"


@pytest.mark.parametrize("model", MODELS)
def test_tools(client, model):
    r = client.chat.completions.create(model=model, tools=[TOOL], tool_choice="required",
                                       messages=[{"role": "user", "content": "What is 2+3?"}])
    msg = r.choices[0].message
    assert r.choices[0].finish_reason == "tool_calls"
    call = msg.tool_calls[0]
    assert call.function.name == "add" and json.loads(call.function.arguments) == {"a": 1.5, "b": 1.5}
    r2 = client.chat.completions.create(model=model, tools=[TOOL], messages=[
        {"role": "user", "content": "What is 2+3?"},
        msg.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "5"}])
    assert "5" in r2.choices[0].message.content


@pytest.mark.parametrize("model", MODELS)
def test_parse_with_pydantic_schema(client, model):
    from pydantic import BaseModel

    class Person(BaseModel):
        name: str
        age: int

    r = client.chat.completions.parse(model=model, response_format=Person,
                                      messages=[{"role": "user", "content": "Invent a person"}])
    # Each mock answers an object that fits the schema (Anthropic through a forced tool).
    assert r.choices[0].message.parsed == Person(name="mock", age=1)


def test_errors_are_the_sdks_own_types(client):
    msgs = [{"role": "user", "content": "x"}]
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="no-such-model", messages=msgs)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="mock-claude", messages=[])
    assert e.value.param == "messages"
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="mock-claude", messages=msgs, extra_headers={"x-mock-status": "429"})
    assert e.value.response.headers["retry-after"] == "1"
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="mock-gemini", messages=msgs, extra_headers={"x-mock-status": "503"})
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(model="mock-gpt", messages=msgs, extra_headers={"x-mock-fault": "garbage"})
    assert e.value.status_code == 502


@pytest.mark.parametrize("model", MODELS)
def test_mid_stream_error_raises(client, model):
    stream = client.chat.completions.create(model=model, stream=True, extra_headers={"x-mock-fault": "truncate"},
                                            messages=[{"role": "user", "content": "a b c d e f g h i j"}])
    got = ""
    with pytest.raises(openai.APIError) as e:
        for chunk in stream:
            for c in chunk.choices:
                got += c.delta.content or ""
    assert "ended before the answer was complete" in e.value.message
    assert got.startswith("echo:")


def test_models_list(client):
    assert [m.id for m in client.models.list()] == LISTED
    assert client.models.retrieve("mock-gemini").id == "mock-gemini"


@pytest.mark.parametrize("model", EMBEDDING_MODELS)
def test_embeddings_as_make_run_serves_them(client, model):
    # What the README's embeddings example does, on each of the mock's embedding models.
    texts = ["What's the capital of France?", "Which city is France's capital?", "What's the capital of Spain?"]
    # One input per call: Titan takes no more.
    rs = [client.embeddings.create(model=model, input=[t]) for t in texts]
    a, b, c = (r.data[0].embedding for r in rs)
    cos = lambda x, y: sum(p * q for p, q in zip(x, y))  # noqa: E731 (the mock's vectors are unit length)
    assert cos(a, b) > 0.75 > 0.6 > cos(a, c)
    assert all(r.usage.prompt_tokens > 0 for r in rs)
    if model == "mock-embedding":
        r = client.embeddings.create(model=model, input=texts[:2])  # the README's example
        assert (len(r.data), len(r.data[0].embedding), r.usage.prompt_tokens) == (2, 256, 10)
