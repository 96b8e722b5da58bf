"""Throughput of the AWS event-stream decoder and of the ConverseStream translation, natively
and inside wasm (the same code compiled to wasm32-wasip1, run by Wasmtime from PyPI, the
runtime of the wasm unit tests; Envoy's V8 is in the same range).

    .venv/bin/python bench/eventstream.py
"""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "eventstream"], check=True)
    native = subprocess.run([str(ROOT / "target/release/examples/eventstream")], capture_output=True, text=True,
                            check=True).stdout.strip()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "sluice-core", "--example", "eventstream",
                    "--target", "wasm32-wasip1"], check=True)
    wasm = subprocess.run([sys.executable, str(ROOT / "tests/wasi_runner.py"),
                           str(ROOT / "target/wasm32-wasip1/release/examples/eventstream.wasm")],
                          capture_output=True, text=True, check=True).stdout.strip()
    print("native:\n  " + native.replace("\n", "\n  "))
    print("wasm (Wasmtime):\n  " + wasm.replace("\n", "\n  "))


if __name__ == "__main__":
    main()
