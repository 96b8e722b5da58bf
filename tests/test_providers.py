"""Provider keys and base URLs, as `make run` reads them from the environment: the real-provider
clusters, pointed at the mock over plain http, with keys only in 0600 SDS files."""
import os
import stat

import pytest

import sluice
from conftest import LISTED, request

MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("keyed")
    mock_port = sluice.free_port()
    env = {
        # Azure: the deployments path selects it (api-key header, api-version query).
        "OPENAI_API_KEY": "az-secret-123",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{mock_port}/openai/deployments",
        "OPENAI_API_VERSION": "2024-06-01",
        "ANTHROPIC_API_KEY": "an-secret-456",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{mock_port}/v1",
        # A wrong key: the provider refuses the gateway's credential.
        "GEMINI_API_KEY": "wrong-key",
        "GEMINI_BASE_URL": f"http://localhost:{mock_port}/v1beta",
        # The mock's test controls pass the header allow-lists.
        "SLUICE_FORWARD_HEADERS": "x-mock-*",
        "SLUICE_RETURN_HEADERS": "x-mock-*",
    }
    stack = sluice.Stack(run_dir, mock_port=mock_port, env=env, concurrency=1, max_seconds=600, quiet=True,
                         mock_args=["--azure-key", "az-secret-123", "--anthropic-key", "an-secret-456"])
    stack.start()
    yield stack, env
    stack.stop()


def post(stack, body, headers=None):
    return request(stack, "POST", "/v1/chat/completions", body, headers)


def test_keys_only_in_0600_secret_files(keyed):
    stack, env = keyed
    rendered = (stack.run_dir / "gateway.yaml").read_text()
    for k in ("az-secret-123", "an-secret-456", "wrong-key"):
        assert k not in rendered
    for name in ("openai", "anthropic", "gemini"):
        path = stack.run_dir / "secrets" / f"{name}.yaml"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert env[f"{name.upper()}_API_KEY"] in path.read_text()


def test_models_now_include_the_provider_families(keyed):
    stack, _ = keyed
    ids = [m["id"] for m in request(stack, "GET", "/v1/models").json()["data"]]
    # Concrete names only (a glob is no model): the exact ones, then the priced models a glob serves.
    assert ids == LISTED + ["claude-sonnet-4-5",
                            # a chain target of the mock's Vertex backend that claude-* (Anthropic) also serves
                            "claude-sonnet-4-5@20250929", "gemini-2.5-pro", "gpt-4o", "gpt-4o-mini",
                            # the mock's Gemini and Vertex embedding models, which text-embedding-* also serves
                            "text-embedding-004", "text-embedding-005",
                            "text-embedding-3-large", "text-embedding-3-small"]


def test_azure_deployment_path_version_and_key(keyed):
    stack, _ = keyed
    tag = {"x-mock-tag": "azure-1"}
    r = post(stack, {"model": "gpt-4o", "messages": MSGS}, tag)
    assert r.status == 200, r.body
    assert r.headers["x-sluice-provider"] == "azure"
    got = request(stack, "GET", "/_mock/requests/azure-1", port=stack.mock_port).json()
    assert got["path"] == "/openai/deployments/gpt-4o/chat/completions"
    assert got["query"] == "api-version=2024-06-01"
    assert got["headers"]["api-key"] == "az-secret-123" and "authorization" not in got["headers"]
    assert got["headers"]["host"] == f"127.0.0.1:{stack.mock_port}"


def test_anthropic_family_goes_to_the_configured_base_url(keyed):
    stack, _ = keyed
    r = post(stack, {"model": "claude-sonnet-4-5", "stream": True, "messages": MSGS})
    assert r.status == 200 and r.headers["x-sluice-provider"] == "anthropic"
    text = "".join((e["choices"][0]["delta"].get("content") or "") for e in r.events() if e != "[DONE]" and e["choices"])
    assert text == "echo: hi"


def test_provider_refusing_the_gateways_key_is_a_502(keyed):
    stack, _ = keyed
    r = post(stack, {"model": "gemini-2.5-flash", "messages": MSGS})
    assert r.status == 502, r.body
    e = r.json()["error"]
    assert e["code"] == "upstream_auth_error" and "credentials" in e["message"]
