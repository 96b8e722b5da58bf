"""Integration harness: the real mock provider and a real Envoy running the built wasm, with the
shipped config rendered for ports picked here. Everything listens on 127.0.0.1 and stops at the
end of the session (the mock also stops itself after --max-seconds)."""
from __future__ import annotations

import http.client
import json
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import sluice  # noqa: E402

NO_KEYS = {"PATH": "/usr/bin:/bin"}
DEMO_KEY = "sk-sluice-demo"  # the key `make run` ships (envoy/specs/gateway.yaml)


@pytest.fixture(scope="session")
def gw(tmp_path_factory):
    stack = sluice.Stack(tmp_path_factory.mktemp("run"), env=NO_KEYS, concurrency=2,
                         max_seconds=1800, quiet=True)
    stack.start()
    yield stack
    stack.stop()


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def events(self):
        """SSE data payloads, parsed as JSON (the string "[DONE]" for the end marker)."""
        out = []
        for block in self.body.decode().replace("\r\n", "\n").split("\n\n"):
            data = [l[5:].lstrip(" ") if l.startswith("data:") else None for l in block.split("\n")]
            data = [d for d in data if d is not None]
            if not data:
                continue
            d = "\n".join(data)
            out.append("[DONE]" if d == "[DONE]" else json.loads(d))
        return out


def request(gw, method, path, body=None, headers=None, port=None):
    conn = http.client.HTTPConnection("127.0.0.1", port or gw.port, timeout=30)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    h = {"content-type": "application/json", "authorization": f"Bearer {DEMO_KEY}"}
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    resp = Resp(r.status, r.getheaders(), r.read())
    conn.close()
    return resp


@pytest.fixture
def post(gw):
    def _post(body, headers=None, path="/v1/chat/completions"):
        return request(gw, "POST", path, body, headers)
    return _post


@pytest.fixture
def seen(gw):
    """Tags a request and returns what the mock provider received for it."""
    class Seen:
        def tag(self):
            return {"x-mock-tag": uuid.uuid4().hex}

        def get(self, headers):
            r = request(gw, "GET", f"/_mock/requests/{headers['x-mock-tag']}", port=gw.mock_port)
            assert r.status == 200, "the mock provider received nothing for this request"
            return r.json()
    return Seen()


def assemble(events):
    """What an OpenAI client builds from chat.completion.chunk events (choice 0)."""
    out = {"role": None, "content": "", "reasoning": "", "tool_calls": [], "finish": None,
           "usage": None, "done": False, "error": None, "ids": set()}
    for e in events:
        if e == "[DONE]":
            out["done"] = True
            continue
        assert not out["done"], "event after [DONE]"
        if "error" in e:
            out["error"] = e["error"]
            continue
        assert e["object"] == "chat.completion.chunk"
        out["ids"].add(e["id"])
        if e.get("usage"):
            out["usage"] = e["usage"]
        for c in e["choices"]:
            d = c["delta"]
            if "role" in d:
                assert out["role"] is None, "role sent twice"
                out["role"] = d["role"]
            else:
                assert out["role"], "a chunk before the role chunk"
            out["content"] += d.get("content") or ""
            out["reasoning"] += d.get("reasoning_content") or ""
            for tc in d.get("tool_calls") or []:
                if tc["index"] == len(out["tool_calls"]):
                    out["tool_calls"].append({"id": tc["id"], "name": tc["function"]["name"], "arguments": ""})
                out["tool_calls"][tc["index"]]["arguments"] += tc["function"].get("arguments") or ""
            if c.get("finish_reason"):
                out["finish"] = c["finish_reason"]
    return out


MODELS = ["mock-gpt", "mock-claude", "mock-gemini"]
# What `make run` lists with no keys: the three formats above, then the mock as Bedrock and Vertex,
# then its embedding models.
EMBEDDING_MODELS = ["mock-embedding", "mock-gemini-embedding", "mock-vertex-embedding",
                    "mock-titan-embedding", "mock-cohere-embedding"]
LISTED = MODELS + ["mock-nova", "mock-bedrock-claude", "mock-vertex-gemini", "mock-vertex-claude"] + EMBEDDING_MODELS
