"""POST /v1/embeddings through a real Envoy and the wasm, with the official openai SDK as the
client, on every backend the mock speaks: OpenAI and Azure (pass-through), Gemini
(batchEmbedContents), Vertex AI (predict), Bedrock Titan and Cohere (InvokeModel, signed by
Envoy). The mock's vectors are deterministic, so each backend's answer is checked against the
same function; float and base64; dimensions; what each provider received; quotas and prices on
input tokens; the exact cache; PII redacted in the inputs without placeholders."""
import base64
import hashlib
import math
import struct

import openai
import pytest

import sluice
from conftest import request

KEY = "sk-embed"
TITAN, COHERE = "amazon.titan-embed-text-v2:0", "cohere.embed-english-v3"


@pytest.fixture(scope="module")
def em(tmp_path_factory):
    run = tmp_path_factory.mktemp("embeddings")
    m = sluice.free_port()
    azure_secret = run / "azure.yaml"
    sluice.write_secret(azure_secret, "mock-azure-key")
    spec = {
        "backends": {
            "p-openai": sluice.mock_backend("openai", m),
            "p-azure": {"provider": "azure", "url": f"http://127.0.0.1:{m}/openai/deployments",
                        "secret": str(azure_secret), "api_version": "2024-10-21",
                        "forward_headers": ["x-mock-*"]},
            "p-gemini": sluice.mock_backend("gemini", m),
            "p-vertex": sluice.mock_backend("vertex", m),
            "p-bedrock": sluice.mock_backend("bedrock", m),
            "p-anthropic": sluice.mock_backend("anthropic", m),
        },
        "models": {
            "e-openai": {"chain": ["p-openai:text-embedding-3-small"]},
            "e-azure": {"chain": ["p-azure:emb-deploy"]},
            "e-gemini": {"chain": ["p-gemini:text-embedding-004"]},
            "e-vertex": {"chain": ["p-vertex:text-embedding-005"]},
            "e-titan": {"chain": [f"p-bedrock:{TITAN}"]},
            "e-cohere": {"chain": [f"p-bedrock:{COHERE}"]},
            "e-claude": {"chain": ["p-anthropic"]},
        },
        "auth": {"keys": [{"id": "emb", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "team": "emb",
                           "limits": {"tokens_per_minute": 100000}}],
                 "prices": {"text-embedding-3-small": {"input": 0.02, "output": 0},
                            "e-*": {"input": 0.1, "output": 0}}},
        "cache": {"deterministic_only": True, "ttl_seconds": 600},
        "pii": {"default_action": "tokenize"},
    }
    stack = sluice.Stack(run, mock_port=m, spec=spec, concurrency=2, max_seconds=900, quiet=True)
    stack.start()
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def oai(em):
    return openai.OpenAI(base_url=em.base_url + "/v1", api_key=KEY, max_retries=0)


def post(em, body, headers=None):
    return request(em, "POST", "/v1/embeddings", body, {"authorization": f"Bearer {KEY}", **(headers or {})})


def seen(em, tag):
    r = request(em, "GET", f"/_mock/requests/{tag}", port=em.mock_port)
    return r.json() if r.status == 200 else None


# The mock's embedding (tests/mock/src/providers/embeddings.rs), recomputed here.
STOP = set("a an the of is are was what which who whats how to in on for and or me tell please do does "
           "you i it its that this be can with by at as my your".split())


def mock_embed(text, dims=256):
    t = text.lower().replace("'s", " ")
    words = []
    for w in "".join(c if c.isalnum() else " " for c in t).split():
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        if w not in STOP:
            words.append(w)
    v = [0.0] * dims
    for w in words:
        h = 0xcbf29ce484222325
        for b in w.encode():
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
        v[h % dims] += 1.0 if h >> 63 == 0 else -1.0
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def close(a, b, tol=1e-6):
    return len(a) == len(b) and all(abs(x - y) < tol for x, y in zip(a, b))


TEXTS = ["The capital of France is Paris.", "Rust compiles to wasm32-wasip1"]


@pytest.mark.parametrize("model", ["e-openai", "e-azure", "e-gemini", "e-vertex", "e-cohere"])
def test_every_backend_through_the_sdk(em, oai, model):
    tag = f"emb-{model}"
    r = oai.embeddings.create(model=model, input=TEXTS, extra_headers={"x-mock-tag": tag,
                                                                        "cache-control": "no-cache"})
    dims = 1024 if model == "e-cohere" else 256
    assert [d.index for d in r.data] == [0, 1]
    for d, t in zip(r.data, TEXTS):
        assert close(d.embedding, mock_embed(t, dims), 1e-6), model
    # A pass-through answer names the provider's model (as chat's does); a translated one the client's.
    assert r.model == {"e-openai": "text-embedding-3-small", "e-azure": "emb-deploy"}.get(model, model)
    assert r.usage.prompt_tokens > 0 and r.usage.total_tokens == r.usage.prompt_tokens
    got = seen(em, tag)
    body, path = got["body"], got["path"]
    if model == "e-openai":
        assert path == "/v1/embeddings" and body["model"] == "text-embedding-3-small"
        assert body["input"] == TEXTS
    elif model == "e-azure":
        assert path == "/openai/deployments/emb-deploy/embeddings" and got["query"] == "api-version=2024-10-21"
        assert got["headers"]["api-key"] == "mock-azure-key"
    elif model == "e-gemini":
        assert path == "/v1beta/models/text-embedding-004:batchEmbedContents"
        assert [x["content"]["parts"][0]["text"] for x in body["requests"]] == TEXTS
    elif model == "e-vertex":
        assert path.endswith("/publishers/google/models/text-embedding-005:predict")
        assert got["headers"]["authorization"].startswith("Bearer ")
    elif model == "e-cohere":
        assert path == "/model/cohere.embed-english-v3/invoke" and body["texts"] == TEXTS
        assert got["headers"]["authorization"].startswith("AWS4-HMAC-SHA256")


def test_titan_float_base64_and_dimensions(em):
    tag = "emb-titan"
    r = post(em, {"model": "e-titan", "input": "one text", "dimensions": 512, "encoding_format": "float"},
             {"x-mock-tag": tag})
    assert r.status == 200, r.body
    v = r.json()["data"][0]["embedding"]
    assert close(v, mock_embed("one text", 512))
    assert seen(em, tag)["body"] == {"inputText": "one text", "normalize": True, "dimensions": 512}
    assert r.json()["usage"]["prompt_tokens"] == 2  # Titan's inputTextTokenCount
    r = post(em, {"model": "e-gemini", "input": ["one text"], "dimensions": 64, "encoding_format": "base64"})
    b = base64.b64decode(r.json()["data"][0]["embedding"])
    assert close(list(struct.unpack(f"<{len(b) // 4}f", b)), mock_embed("one text", 64), 1e-6)
    # Two inputs are one too many for Titan: a 400 that says so, before anything is sent.
    r = post(em, {"model": "e-titan", "input": ["a", "b"]})
    assert r.status == 400 and r.json()["error"]["param"] == "input"
    assert "one input" in r.json()["error"]["message"]


def test_refusals_in_the_openai_envelope(em):
    r = post(em, {"model": "e-claude", "input": "x"})
    assert r.status == 400 and r.json()["error"]["code"] == "model_not_supported"
    for body, param in [({"model": "e-openai"}, "input"), ({"model": "e-openai", "input": []}, "input"),
                        ({"model": "e-openai", "input": [[1], "a"]}, "input"),
                        ({"model": "e-openai", "input": "a", "dimensions": 0}, "dimensions"),
                        ({"model": "e-openai", "input": "a", "encoding_format": "int8"}, "encoding_format"),
                        ({"input": "a"}, "model")]:
        r = post(em, body)
        assert r.status == 400, (body, r.body)
        assert r.json()["error"]["param"] == param, (body, r.body)
    r = post(em, {"model": "nope", "input": "a"})
    assert r.status == 404 and r.json()["error"]["code"] == "model_not_found"
    r = post(em, {"model": "e-gemini", "input": [1, 2, 3]})
    assert r.status == 400 and "token ids" in r.json()["error"]["message"]
    r = request(em, "POST", "/v1/embeddings", {"model": "e-openai", "input": "a"}, {"authorization": "Bearer wrong"})
    assert r.status == 401


def usage(em):
    return request(em, "GET", "/v1/sluice/usage", headers={"authorization": f"Bearer {KEY}"}).json()["keys"]["emb"]["total"]


def test_input_tokens_are_charged_at_the_models_price(em):
    before = usage(em)
    r = post(em, {"model": "e-vertex", "input": ["five words are in here", "and three more"]},
             {"cache-control": "no-cache"})
    assert r.status == 200
    n = r.json()["usage"]["prompt_tokens"]
    assert n == 8  # Vertex's statistics.token_count, summed
    after = usage(em)
    assert after["tokens_in"] - before["tokens_in"] == n
    assert after["tokens_out"] == before["tokens_out"]
    # e-* costs 0.1 USD per million input tokens: 8 tokens are 0.8 micro-USD, rounded up.
    assert 0 <= after["micro_usd"] - before["micro_usd"] <= 1


def test_the_exact_cache_serves_the_same_input_once(em):
    body = {"model": "e-openai", "input": ["cache me", "and me"]}
    first = post(em, body, {"x-mock-tag": "emb-cache-1"})
    assert first.status == 200 and first.headers["x-sluice-cache"] == "miss"
    again = post(em, body, {"x-mock-tag": "emb-cache-2"})
    assert again.headers["x-sluice-cache"] == "hit"
    assert again.json()["data"] == first.json()["data"]
    assert seen(em, "emb-cache-2") is None, "a hit does not reach the provider"
    # Another input, dimensions or format is another entry.
    other = post(em, {**body, "dimensions": 32}, {"x-mock-tag": "emb-cache-3"})
    assert other.headers["x-sluice-cache"] == "miss" and len(other.json()["data"][0]["embedding"]) == 32


def test_pii_in_inputs_is_redacted_without_placeholders(em):
    tag = "emb-pii"
    r = post(em, {"model": "e-openai", "input": ["write to jane.doe@corp.com", "jane.doe@corp.com"]},
             {"x-mock-tag": tag})
    assert r.status == 200
    sent = seen(em, tag)["body"]["input"]
    assert sent == ["write to [EMAIL]", "[EMAIL]"], sent
    assert close(r.json()["data"][0]["embedding"], mock_embed("write to [EMAIL]"))
