"""Route role: validation, model routing, listing, limits, through a real Envoy."""
import pytest

from conftest import LISTED, MODELS, request

USER = [{"role": "user", "content": "hi"}]


def err(r, status):
    assert r.status == status, (r.status, r.body)
    assert r.headers["content-type"].startswith("application/json")
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}
    return e


@pytest.mark.parametrize("body,param,needle", [
    (b"", None, "empty"),
    (b"   ", None, "empty"),
    (b"{\"model\": \"mock-gpt\", ", None, "could not parse"),
    (b"[1,2]", None, "JSON object"),
    (b"\"text\"", None, "JSON object"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", None, "UTF-8"),
    (b"{\"model\":\"mock-gpt\",\"messages\":" + b"[" * 5000 + b"]" * 5000 + b"}", None, "recursion limit"),
    (b"{\"messages\":[]}", "model", "model"),
    (b"{\"model\":42,\"messages\":[]}", "model", "string"),
    (b"{\"model\":\"mock-gpt\"}", "messages", "messages"),
    (b"{\"model\":\"mock-gpt\",\"messages\":\"hi\"}", "messages", "array"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[]}", "messages", "at least one"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", "messages[0].role", "robot"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages[0].content", "string or an array"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\"}]}", "messages[0]", "content"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", "messages[0]", "tool_call_id"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature", "temperature"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", "stream", "stream"),
    (b"{\"model\":\"mock-gpt\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"sometimes\"}", "tool_choice", "sometimes"),
])
def test_bad_bodies_get_precise_400s(post, body, param, needle):
    e = err(post(body), 400)
    assert e["type"] == "invalid_request_error"
    assert e["param"] == param
    assert needle.lower() in e["message"].lower(), e["message"]


def test_unknown_model_is_404(post):
    e = err(post({"model": "gpt-4o", "messages": USER}), 404)
    assert e["code"] == "model_not_found" and "gpt-4o" in e["message"]


def test_unknown_path_and_method_are_404(gw):
    assert err(request(gw, "POST", "/v1/images/generations", {"prompt": "x"}), 404)["code"] == "unknown_url"
    assert err(request(gw, "GET", "/v1/chat/completions"), 404)["code"] == "unknown_url"


def test_models_listing(gw):
    r = request(gw, "GET", "/v1/models")
    assert r.status == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == LISTED  # no provider keys: only the mock models
    assert all(m["object"] == "model" for m in body["data"])
    r = request(gw, "GET", "/v1/models/mock-claude")
    assert r.status == 200 and r.json()["id"] == "mock-claude"
    assert err(request(gw, "GET", "/v1/models/claude-3"), 404)["code"] == "model_not_found"


def test_body_over_the_limit_is_413(post):
    big = b'{"model":"mock-gpt","messages":[{"role":"user","content":"' + b"a" * (32 * 1024 * 1024 + 1000) + b'"}]}'
    e = err(post(big), 413)
    assert "33554432" in e["message"]


def test_large_body_under_the_limit_passes(post):
    text = "word " * 400_000  # 2 MB: above Envoy's 1 MiB default buffer
    r = post({"model": "mock-claude", "messages": [{"role": "user", "content": text}]})
    assert r.status == 200, r.body[:300]
    assert r.json()["choices"][0]["message"]["content"].startswith("echo: word word")


def test_client_cannot_spoof_internal_headers(post):
    # The body says mock-claude; a forged routing header must not send it elsewhere, and no
    # x-sluice- header may reach a provider (the mock refuses those with a 400).
    r = post({"model": "mock-claude", "messages": USER}, {"x-sluice-model": "mock-gemini", "x-sluice-anything": "1"})
    assert r.status == 200, r.body
    assert r.headers["x-sluice-provider"] == "mock-anthropic"
