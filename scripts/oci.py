#!/usr/bin/env python3
"""`make oci`: sluice.wasm as an OCI image, in an OCI image layout on disk (target/oci/).

The image is what Istio's WasmPlugin and Envoy Gateway's EnvoyExtensionPolicy pull: one
gzip-compressed tar layer holding `plugin.wasm` (the "compat" image variant both accept), an
OCI image config, and a manifest, tagged with the crate version. The layer is deterministic
(fixed mtime, owner and mode), so the same module always gives the same digest. Push it to any
registry with skopeo:

    skopeo copy oci:target/oci:<version> docker://REGISTRY/sluice:<version>

and refer to it as `oci://REGISTRY/sluice:<version>` (or `@sha256:<manifest digest>`).

    python3 scripts/oci.py [--wasm PATH] [--out DIR] [--tag TAG]   (prints the manifest digest)
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    m = re.search(r'^\[workspace\.package\][^\[]*?^version\s*=\s*"([^"]+)"', text, re.M | re.S)
    return m.group(1) if m else "0.0.0"


def layer_bytes(wasm: bytes) -> tuple[bytes, str]:
    """The gzip'd tar with plugin.wasm, and the sha256 of the uncompressed tar (the diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(wasm), 0o644, 0, 0, 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    tar_bytes = raw.getvalue()
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as f:
        f.write(tar_bytes)
    return gz.getvalue(), "sha256:" + hashlib.sha256(tar_bytes).hexdigest()


def build(wasm_path: Path, out: Path, tag: str) -> str:
    wasm = wasm_path.read_bytes()
    if not wasm.startswith(b"\0asm"):
        raise SystemExit(f"{wasm_path} is not a wasm module (run make build first)")
    if out.exists():
        shutil.rmtree(out)
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    layer, diff_id = layer_bytes(wasm)
    config = json.dumps({
        "architecture": "wasm", "os": "wasip1",
        "config": {"Labels": {"org.opencontainers.image.title": "sluice.wasm",
                              "org.opencontainers.image.version": tag,
                              "io.sluice.wasm.sha256": hashlib.sha256(wasm).hexdigest()}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, **blob(config)},
        "layers": [{"mediaType": LAYER, **blob(layer),
                    "annotations": {"org.opencontainers.image.title": "plugin.wasm"}}],
        "annotations": {"org.opencontainers.image.title": "sluice",
                        "org.opencontainers.image.description": "Sluice LLM gateway filters (proxy-wasm)",
                        "org.opencontainers.image.version": tag},
    }, sort_keys=True, separators=(",", ":")).encode()
    m = blob(manifest)
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (out / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, **m, "annotations": {"org.opencontainers.image.ref.name": tag}}]}))
    return m["digest"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wasm", type=Path, default=ROOT / "target/wasm32-wasip1/release/sluice.wasm")
    ap.add_argument("--out", type=Path, default=ROOT / "target/oci")
    ap.add_argument("--tag", default=version())
    a = ap.parse_args()
    digest = build(a.wasm, a.out, a.tag)
    print(f"{a.out}: sluice:{a.tag} {digest}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
