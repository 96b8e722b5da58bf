"""Streams through a real Envoy: random byte splits, usage handling, and every way a stream can
go wrong upstream."""
import http.client
import json

import pytest

from conftest import MODELS, assemble

TEXT = "Grüße aus Zürich 😀 — ünïcödé ✓ end"


@pytest.mark.parametrize("model", MODELS)
def test_split_fuzzing(post, model):
    """The mock writes each stream in pseudo-random byte pieces (inside multi-byte characters
    too); every seed must give the same well-formed OpenAI stream."""
    for seed in range(1, 16):
        r = post({"model": model, "stream": True, "messages": [{"role": "user", "content": TEXT}]},
                 {"x-mock-split": str(seed)})
        assert r.status == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        a = assemble(r.events())
        assert a["content"] == "echo: " + TEXT, (seed, a)
        assert a["role"] == "assistant" and a["finish"] == "stop" and a["done"] and a["error"] is None
        assert len(a["ids"]) == 1


@pytest.mark.parametrize("model", MODELS)
def test_split_fuzzing_tool_calls(post, model):
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "integer"}}, "required": ["q", "n"]}}}
    for seed in range(1, 8):
        r = post({"model": model, "stream": True, "tools": [tool], "tool_choice": "required",
                  "messages": [{"role": "user", "content": "go"}]}, {"x-mock-split": str(seed)})
        a = assemble(r.events())
        assert [(c["name"], json.loads(c["arguments"])) for c in a["tool_calls"]] == [("lookup", {"q": "mock", "n": 1})]
        assert a["finish"] == "tool_calls" and a["done"]


@pytest.mark.parametrize("model", MODELS)
def test_usage_only_when_asked(post, model):
    msgs = [{"role": "user", "content": "count these words"}]
    plain = post({"model": model, "stream": True, "messages": msgs}).events()
    assert all(e == "[DONE]" or ("usage" not in e or e["usage"] is None) for e in plain)
    assert all(e == "[DONE]" or e["choices"] for e in plain), "no usage-only chunk when not asked"
    asked = post({"model": model, "stream": True, "stream_options": {"include_usage": True}, "messages": msgs}).events()
    assert asked[-1] == "[DONE]"
    last = asked[-2]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
    assert last["usage"]["total_tokens"] == last["usage"]["prompt_tokens"] + 4
    # usage comes once, as the final chunk
    assert sum(1 for e in asked if e != "[DONE]" and e.get("usage")) == 1


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("fault,code", [("truncate", "upstream_stream_cut"), ("bad-event", "bad_upstream_response"),
                                        ("stream-error", None)])
def test_broken_streams_end_with_an_error_event(post, model, fault, code):
    r = post({"model": model, "stream": True, "messages": [{"role": "user", "content": "one two three four five six"}]},
             {"x-mock-fault": fault})
    assert r.status == 200
    events = r.events()
    assert events[-1] != "[DONE]", "a broken stream must not look like a normal end"
    a = assemble(events)
    assert a["error"] is not None, events
    assert a["finish"] is None
    if code:
        assert a["error"]["code"] == code
    else:
        assert a["error"]["type"] == "server_error"
    assert set(a["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize("model", MODELS)
def test_stream_reset_midway_is_not_a_clean_end(gw, model):
    """The provider resets the connection mid-stream: the client's response must not end like a
    complete one (Envoy resets the downstream stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "a b c d e f g h"}]})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json", "x-mock-fault": "cut",
                                                                          "authorization": "Bearer sk-sluice-demo"})
    r = conn.getresponse()
    assert r.status == 200
    with pytest.raises(http.client.IncompleteRead):
        data = r.read()
        # If the transport did complete, the payload must still say it is broken.
        assert b"[DONE]" not in data
        raise http.client.IncompleteRead(data)
    conn.close()
