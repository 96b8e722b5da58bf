"""`make oci` for real: the OCI image layout is pushed to a registry on loopback (Debian's
docker-registry) with skopeo (Debian's), pulled back, and checked as Istio would read it: the
manifest's digest is the one printed, and its one layer is a tar with `plugin.wasm`, the module
that `make build` wrote."""
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import urllib.request

import pytest

import sluice

WASM = sluice.WASM_DIR / "sluice.wasm"
OCI = [sys.executable, str(sluice.ROOT / "scripts/oci.py")]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if not (shutil.which("docker-registry") and shutil.which("skopeo")):
        pytest.fail("docker-registry and skopeo are missing (make oci-tools installs them)")
    d = tmp_path_factory.mktemp("registry")
    port = sluice.free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + str(d / "data") + "\n"
        f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sluice.wait_http(f"http://127.0.0.1:{port}/v2/", 20, proc)
    yield f"127.0.0.1:{port}"
    sluice.stop_process(proc)


def skopeo(*args):
    return subprocess.run(["skopeo", "--insecure-policy", *args], check=True, capture_output=True).stdout


def test_oci_image_round_trip(registry, tmp_path):
    out = subprocess.run([*OCI, "--out", str(tmp_path / "oci"), "--tag", "9.9.9"], check=True,
                         capture_output=True, text=True).stdout
    digest = out.split()[-1]
    again = subprocess.run([*OCI, "--out", str(tmp_path / "oci2"), "--tag", "9.9.9"], check=True,
                           capture_output=True, text=True).stdout.split()[-1]
    assert digest == again and digest.startswith("sha256:"), "the same module gives the same image"
    ref = f"docker://{registry}/sluice/sluice:9.9.9"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'oci'}:9.9.9", ref)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", ref)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest, "the registry serves the manifest we built"
    req = urllib.request.Request(f"http://{registry}/v2/sluice/sluice/manifests/9.9.9",
                                 headers={"accept": "application/vnd.oci.image.manifest.v1+json"})
    with urllib.request.urlopen(req) as r:
        assert r.headers["docker-content-digest"] == digest
    # Pulled back, as Istio's agent pulls it: the layer's plugin.wasm is our module.
    skopeo("copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'pulled'}:9.9.9")
    manifest = json.loads(raw)
    assert [l["mediaType"] for l in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    layer = (tmp_path / "pulled/blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer))) as tar:
        assert tar.getnames() == ["plugin.wasm"]
        assert tar.extractfile("plugin.wasm").read() == WASM.read_bytes()
    config = json.loads((tmp_path / "pulled/blobs/sha256" / manifest["config"]["digest"].split(":")[1]).read_bytes())
    assert config["config"]["Labels"]["io.sluice.wasm.sha256"] == hashlib.sha256(WASM.read_bytes()).hexdigest()
