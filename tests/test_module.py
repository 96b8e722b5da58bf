"""The sluice.wasm module: one module, the filter of each Envoy entry named by its root_id, all
entries in one VM per worker; a root_id or a configuration it cannot use stops Envoy with a
log line that says why."""
import subprocess

import pytest

import sluice


def spec(port, admin, mock):
    return {"listen": f"127.0.0.1:{port}", "admin": f"127.0.0.1:{admin}", "wasm_dir": str(sluice.WASM_DIR),
            "backends": {"o": sluice.mock_backend("openai", mock)}, "models": {"mock-gpt": {"chain": ["o"]}},
            "auth": {"keys": [{"id": "k", "sha256": "0" * 64, "team": "t"}]}, "pii": {}, "cache": {}}


def test_every_filter_is_the_one_module_in_one_vm():
    cfg = sluice.sluice_gen.generate(spec(1, 2, 3))
    configs = sluice.sluice_gen.wasm_configs(cfg)
    assert {c["root_id"] for c in configs} == {"sluice-auth", "sluice-pii", "sluice-cache", "sluice-translate-route",
                                               "sluice-translate-upstream"}
    assert {c["vm_config"]["vm_id"] for c in configs} == {"sluice"}
    assert {c["vm_config"]["code"]["local"]["filename"] for c in configs} == {f"{sluice.WASM_DIR}/sluice.wasm"}


def start_fails(tmp_path, cfg):
    path = tmp_path / "envoy.yaml"
    path.write_text(sluice.sluice_gen.dump(cfg))
    log = tmp_path / "envoy.log"
    p = subprocess.run([str(sluice.ENVOY), "-c", str(path), "--concurrency", "1", "--log-level", "info",
                        "--log-path", str(log), "--base-id", str(sluice.free_port())],
                       capture_output=True, timeout=60)
    assert p.returncode != 0, "Envoy started with a Sluice filter it cannot use"
    return log.read_text() + p.stderr.decode(errors="replace")


@pytest.mark.parametrize("change,needle", [
    (lambda c: c.update(root_id="sluice-nonsense", name="sluice-nonsense"), "root_id 'sluice-nonsense' names no Sluice filter"),
    (lambda c: c["configuration"].update(value='{"keys":[],"colour":1}') if c["root_id"] == "sluice-auth" else None,
     "sluice-auth: configuration refused: field 'colour'"),
])
def test_an_unusable_entry_stops_envoy_and_says_why(tmp_path, change, needle):
    cfg = sluice.sluice_gen.generate(spec(sluice.free_port(), sluice.free_port(), sluice.free_port()))
    configs = sluice.sluice_gen.wasm_configs(cfg)
    target = [c for c in configs if c["root_id"] == "sluice-auth"]
    for c in target:
        change(c)
    assert needle in start_fails(tmp_path, cfg)
