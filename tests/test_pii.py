"""sluice-pii through a real Envoy, with the mock provider echoing what it received, so that
redaction and re-hydration run for real: every action, JSON and streams on every wire format,
tool-call arguments, and a placeholder split at every byte boundary."""
import json
import uuid
import urllib.request

import pytest

import sluice
from conftest import assemble, request

MODELS = ["mock-gpt", "mock-claude", "mock-gemini"]
EMAIL = "jane.doe@example.com"
CUSTOMER = 'Acme "Rockets" Ltd'


@pytest.fixture(scope="module")
def ps(tmp_path_factory):
    run = tmp_path_factory.mktemp("pii")
    m = sluice.free_port()
    spec = sluice.mock_spec(m, **{
        "pii": {
            "actions": {"US_SSN": "redact", "CREDIT_CARD": "mask", "IP_ADDRESS": "hash", "API_KEY": "block",
                        "MAC_ADDRESS": "allow"},
            "hash_secret": "test-secret",
            "dictionaries": [{"type": "CUSTOMER", "values": [CUSTOMER]}],
            "scan_output": True,
        },
    })
    stack = sluice.Stack(run, mock_port=m, spec=spec, concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


def chat(stack, text, model="mock-gpt", headers=None, **body):
    tag = uuid.uuid4().hex
    b = {"model": model, "messages": [{"role": "user", "content": text}], **body}
    r = request(stack, "POST", "/v1/chat/completions", b, {"x-mock-tag": tag, **(headers or {})})
    r.sent = request(stack, "GET", f"/_mock/requests/{tag}", port=stack.mock_port)
    return r


def upstream_text(r):
    return json.dumps(r.sent.json()["body"]) if r.sent.status == 200 else ""


def content(r):
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        return assemble(r.events())["content"]
    return r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("stream", [False, True])
def test_tokenized_values_never_leave_and_come_back(ps, model, stream):
    text = f"Mail {EMAIL} or {EMAIL.upper()} about {CUSTOMER}; call +1 415 555 2671."
    r = chat(ps, text, model, stream=stream, headers={"x-mock-split": "3"} if stream else None)
    assert r.status == 200, r.body
    sent = upstream_text(r)
    for value in (EMAIL, EMAIL.upper(), "Rockets", "555 2671"):
        assert value not in sent
    assert "[EMAIL_1]" in sent and "[EMAIL_2]" in sent and "[CUSTOMER_1]" in sent and "[PHONE_NUMBER_1]" in sent
    assert content(r) == f"echo: {text}"


def test_other_actions(ps):
    text = "ssn 123-45-6789 card 4111 1111 1111 1111 ip 10.1.2.3 mac 00:1A:2B:3C:4D:5E"
    r = chat(ps, text)
    sent = r.sent.json()["body"]["messages"][0]["content"]
    assert "[US_SSN]" in sent and "**** **** **** 1111" in sent and "[IP_ADDRESS:" in sent
    assert "123-45-6789" not in sent and "10.1.2.3" not in sent
    assert "00:1A:2B:3C:4D:5E" in sent and "00:1A:2B:3C:4D:5E" in content(r)  # allowed both ways
    hashed = sent.split("[IP_ADDRESS:")[1].split("]")[0]
    again = chat(ps, "ip 10.1.2.3").sent.json()["body"]["messages"][0]["content"]
    assert f"[IP_ADDRESS:{hashed}]" in again  # stable across requests


def test_output_scanning_redacts_what_the_model_wrote(ps):
    r = chat(ps, f"who is {EMAIL}?", headers={"x-mock-reply": "Ask leak@corp.example or 123-45-6789 - [EMAIL_1]"})
    # The model's own PII is redacted; the client's tokenized value still comes back.
    assert content(r) == f"Ask [EMAIL] or [US_SSN] - {EMAIL}"


def test_block_names_types_never_values(ps):
    r = chat(ps, "my key is sk-proj-abcdefghijklmnopqrstuvwxyz012345")
    assert r.status == 400 and r.sent.status == 404  # nothing reached the provider
    e = r.json()["error"]
    assert e["code"] == "pii_blocked" and "API_KEY" in e["message"] and "abcdefgh" not in e["message"]


@pytest.mark.parametrize("model", MODELS)
def test_tool_call_arguments_are_rehydrated_json_escaped(ps, model):
    tool = {"type": "function", "function": {"name": "notify", "parameters": {
        "type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}}}
    for stream in (False, True):
        r = chat(ps, f"tell {CUSTOMER} at {EMAIL}", model, stream=stream, tools=[tool], tool_choice="required")
        assert r.status == 200, r.body
        assert CUSTOMER not in upstream_text(r) and "Rockets" not in upstream_text(r)
        if stream:
            args = assemble(r.events())["tool_calls"][0]["arguments"]
        else:
            args = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
        assert json.loads(args) == {"echo": f"tell {CUSTOMER} at {EMAIL}"}


def test_placeholder_split_at_every_byte_boundary(ps):
    text = f"to {EMAIL} ok"
    whole = chat(ps, text, stream=True)
    # An upper bound of the mock's stream length (its JSON is compact): split at every byte.
    n = len(b"".join(
        f"data: {json.dumps(e)}\n\n".encode() if e != "[DONE]" else b"data: [DONE]\n\n" for e in whole.events()))
    failures = []
    for at in range(0, n + 40):
        r = chat(ps, text, stream=True, headers={"x-mock-split-at": str(at)})
        got = assemble(r.events())
        if got["content"] != f"echo: {text}" or not got["done"]:
            failures.append((at, got["content"]))
    assert not failures, failures[:5]


def test_user_typed_and_mangled_placeholders_stay_literal(ps):
    text = f"I wrote [EMAIL_1] and [EMAIL_2 myself; real one {EMAIL}"
    for stream in (False, True):
        r = chat(ps, text, stream=stream)
        sent = upstream_text(r)
        # [EMAIL_1] is the user's own text: numbering skips it; "[EMAIL_2" is no placeholder.
        assert EMAIL not in sent and "one [EMAIL_2]" in sent
        assert content(r) == f"echo: {text}"


def test_several_choices_and_repeats(ps):
    text = f"{EMAIL} {EMAIL} {EMAIL}"
    r = chat(ps, text, model="mock-gemini", n=2)
    assert [c["message"]["content"] for c in r.json()["choices"]] == [f"echo: {text}"] * 2
    s = chat(ps, text, model="mock-gemini", n=2, stream=True)
    per = ["", ""]
    for e in s.events():
        if e != "[DONE]":
            for c in e["choices"]:
                per[c["index"]] += c["delta"].get("content") or ""
    assert per == [f"echo: {text}"] * 2


def test_nothing_in_logs_and_metrics_count_types(ps):
    chat(ps, f"log test {EMAIL}")
    logs = (ps.run_dir / "stdout.log").read_text() + (ps.run_dir / "envoy.log").read_text()
    assert EMAIL not in logs
    with urllib.request.urlopen(f"http://127.0.0.1:{ps.admin_port}/stats?filter=sluice_pii") as f:
        stats = f.read().decode()
    assert "sluice_pii.type.EMAIL.action.tokenize.detections" in stats
    assert EMAIL not in stats


def test_large_messages_with_pii(ps):
    text = ("lorem ipsum dolor " * 50000) + EMAIL
    r = chat(ps, text)
    assert r.status == 200 and EMAIL not in upstream_text(r)
    assert content(r).endswith(EMAIL)
