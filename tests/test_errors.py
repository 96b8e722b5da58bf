"""Provider errors and Envoy's own failures, all in the OpenAI envelope with the right status."""
import time

import pytest

from conftest import MODELS

MSGS = [{"role": "user", "content": "x"}]


def envelope(r):
    assert r.headers["content-type"].startswith("application/json"), r.headers
    e = r.json()["error"]
    assert set(e) == {"message", "type", "param", "code"}
    return e


@pytest.mark.parametrize("model", MODELS)
def test_rate_limit_keeps_retry_after(post, model):
    r = post({"model": model, "messages": MSGS}, {"x-mock-status": "429", "x-mock-retry-after": "7"})
    assert r.status == 429
    assert r.headers["retry-after"] == "7"  # Gemini says it in the body (RetryInfo): mapped to the header
    e = envelope(r)
    assert e["code"] == "rate_limit_exceeded" and "mock fault injected" in e["message"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("upstream,status,code", [("500", 502, "upstream_error"), ("503", 503, "upstream_overloaded"),
                                                  ("400", 400, "provider"), ("404", 404, "model_not_found")])
def test_provider_statuses(post, model, upstream, status, code):
    r = post({"model": model, "messages": MSGS}, {"x-mock-status": upstream})
    assert r.status == status, r.body
    e = envelope(r)
    # A 400 carries the provider's own error type as its code (what the client may act on).
    want = {"mock-gpt": "invalid_request_error", "mock-claude": "invalid_request_error",
            "mock-gemini": "INVALID_ARGUMENT"}[model] if code == "provider" else code
    assert e["code"] == want
    assert model.split("-")[1] in ("gpt", "claude", "gemini")


def test_anthropic_overloaded_529_is_503(post):
    r = post({"model": "mock-claude", "messages": MSGS}, {"x-mock-status": "529"})
    assert r.status == 503 and envelope(r)["code"] == "upstream_overloaded"


@pytest.mark.parametrize("model", MODELS)
def test_garbage_from_upstream_is_502(post, model):
    r = post({"model": model, "messages": MSGS}, {"x-mock-fault": "garbage"})
    assert r.status == 502, r.body
    assert envelope(r)["code"] == "bad_upstream_response"


@pytest.mark.parametrize("model", MODELS)
def test_connection_reset_is_503_in_the_envelope(post, model):
    r = post({"model": model, "messages": MSGS}, {"x-mock-fault": "reset"})
    assert r.status == 503
    e = envelope(r)
    assert e["type"] == "server_error" and "reset" in e["message"]


def test_upstream_validation_errors_come_back_mapped(post):
    # temperature 1.5 is valid for OpenAI but not for Anthropic (0..1): the provider's 400
    # reaches the client in OpenAI's envelope, with the provider's message.
    r = post({"model": "mock-claude", "temperature": 1.5, "messages": MSGS})
    assert r.status == 400
    e = envelope(r)
    assert e["type"] == "invalid_request_error" and "temperature" in e["message"]


def test_delay_is_waited_for(post):
    t = time.monotonic()
    r = post({"model": "mock-gemini", "messages": MSGS}, {"x-mock-delay-ms": "300"})
    assert r.status == 200 and time.monotonic() - t >= 0.3
