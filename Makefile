# The two commands: `make demo` and `make test`. Everything else is a helper they call.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export VIRTUAL_ENV := $(abspath $(VENV))
RUST_SRC := $(shell find src -name '*.rs') Cargo.toml Cargo.lock

.PHONY: demo test test-rust test-py test-node node lint bench bench-peers soak soak-fuzz \
	soak-kill soak-migrate mutants clean setup build ui screenshots

# Python deps from pyproject.toml (runtime + test + bench extras), into a local venv.
$(VENV)/.deps: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 'maturin>=1.5,<2'
	$(PY) -m pip install -q $$($(PY) -c "import tomllib;p=tomllib.load(open('pyproject.toml','rb'))['project'];print(' '.join(repr(d) for d in p['dependencies']+p['optional-dependencies']['test']+p['optional-dependencies']['bench']))" | tr -d "'")
	touch $@

# Fault-injection tools the reliability tests use, the browser the dashboard tests drive and the
# Java runtime Spark needs (Debian packages), installed when missing.
$(VENV)/.tools: $(VENV)/.deps
	@missing=""; for t in strace:strace faketime:faketime eatmydata:eatmydata \
	    chromium:chromium chromedriver:chromium-driver java:openjdk-17-jre-headless; do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	fi
	touch $@

# The extension in release mode, installed editable into the venv (crates from Cargo.lock), with
# the `test-hooks` feature the tests use (a wheel built from pyproject.toml has it off).
$(VENV)/.built: $(VENV)/.deps $(RUST_SRC) pyproject.toml
	$(VENV)/bin/maturin develop --release --locked -q --features python,test-hooks
	touch $@

setup: $(VENV)/.built $(VENV)/.tools
build: setup

# The Node addon (napi-rs, workspace member node/) over the same core, release build, next to
# node/index.js; copied through a temp file so a running process keeps its mapped copy.
NODE_ADDON := node/ledgerx.linux-x64-gnu.node
$(NODE_ADDON): $(RUST_SRC) $(shell find node/src -name '*.rs') node/Cargo.toml node/build.rs
	@command -v node >/dev/null || (apt-get install -y -q nodejs || (apt-get update -q && apt-get install -y -q nodejs)) >/dev/null
	cargo build --locked --release -p ledgerx-node
	cp target/release/libledgerx_node.so $@.tmp && mv $@.tmp $@

# Node test tools from Debian, installed when missing: TypeScript (node-typescript) checks the
# typings; npm packs the tarball (installed offline: the npm registry is never used).
$(VENV)/.tsc: $(VENV)/.deps
	@missing=""; for t in tsc:node-typescript npm:npm; do \
	  command -v $${t%%:*} >/dev/null || missing="$$missing $${t##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing"; \
	  (apt-get install -y -q $$missing || (apt-get update -q && apt-get install -y -q $$missing)) >/dev/null; \
	fi
	touch $@

node: $(NODE_ADDON)

demo: setup node
	$(PY) -m ledgerx.demo

# The dashboard on the demo ledger (or $$LEDGERX_ROOT): http://127.0.0.1:8765/
ui: setup
	$(PY) -m ledgerx ui

# Refresh the dashboard screenshots in docs/ from a fresh demo ledger.
screenshots: setup
	$(PY) docs/screenshots.py

# The three suites run side by side (the Python suite waits on processes, fsync and sockets
# often enough to leave room for the Rust and Node ones); each suite's output is printed as one
# block when it ends, Rust and Node first.
test: setup node $(VENV)/.tsc
	@echo "running the Rust, Python and Node suites side by side; each prints when it ends"
	@$(MAKE) --no-print-directory -j3 --output-sync=target test-rust test-py test-node

test-rust: $(VENV)/.tools  # the strace audit among the Rust tests
	MAKEFLAGS= cargo test --locked --release -q  # cargo's own -j, not make's job slots

# pytest-xdist: one worker per core, at most TEST_WORKERS (the suite is mostly processes,
# fsync and sockets; two workers on the 2-core VM take it from ~9 to ~5.5 minutes). Tests marked
# `heavy` are handed out first.
TEST_WORKERS ?= 4
test-py: setup node
	$(PY) -m pytest -q -x -p no:cacheprovider -n auto --maxprocesses=$(TEST_WORKERS) tests

test-node: setup node $(VENV)/.tsc
	rm -rf node/build && tsc -p node
	LEDGERX_PYTHON=$(abspath $(PY)) node --test node/test/*.test.js

# The gates CI runs after the tests: formatting, clippy (every unsafe block needs a SAFETY
# comment), ruff, mypy on the package, and the extension's stub checked against the build.
CLIPPY_DENY := -D warnings -D clippy::undocumented_unsafe_blocks

lint: setup
	cargo fmt --check
	cargo clippy --locked --release --workspace --all-targets -- $(CLIPPY_DENY)
	cargo clippy --locked --release --features python -- $(CLIPPY_DENY)
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy python/ledgerx
	$(PY) -m mypy.stubtest ledgerx._core

bench: setup node bench-peers
	$(PY) -m pytest benches -q -p no:cacheprovider --benchmark-columns=min,median,max,mean,ops,rounds -s
	node benches/node/bench_emit.js

# The peer suite (benches/peers/): Optuna and eventsourcing in .venv-peers, MLflow in
# .venv-mlflow (its pins are its own), each from the pinned requirements files; strace counts
# what each tool syncs. PEERS_MODE=quick (default, a few minutes) or full.
PEERS_MODE ?= quick
.venv-peers/.deps: benches/peers/requirements.txt
	test -x .venv-peers/bin/python || python3 -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q -r benches/peers/requirements.txt
	touch $@
.venv-mlflow/.deps: benches/peers/requirements-mlflow.txt
	test -x .venv-mlflow/bin/python || python3 -m venv .venv-mlflow
	.venv-mlflow/bin/python -m pip install -q -r benches/peers/requirements-mlflow.txt
	touch $@
bench-peers: setup .venv-peers/.deps .venv-mlflow/.deps
	$(PY) benches/peers/run_peers.py --mode $(PEERS_MODE) --reps 3

# Long runs (`make -j3 soak` runs the three at once): the Rust fuzz targets (PROPTEST_CASES per
# target) and the Hypothesis differential for LEDGERX_FUZZ_SECONDS (default an hour); the kill
# loop for LEDGERX_SOAK_ROUNDS rounds (default 1,000); `legacy migrate` of LEDGERX_MIGRATE_ROWS
# legacy rows (default 1M) with its peak RSS. Progress lines go to stderr and LEDGERX_SOAK_LOG.
soak: soak-fuzz soak-kill soak-migrate

soak-fuzz: setup
	PROPTEST_CASES=$${PROPTEST_CASES:-200000} cargo test --locked --release -q --lib fuzz
	LEDGERX_FUZZ_SECONDS=$${LEDGERX_FUZZ_SECONDS:-3600} $(PY) -m pytest -q -p no:cacheprovider \
	  -m slow tests/test_reliability_differential.py
	LEDGERX_POWERLOSS_SEEDS=$${LEDGERX_POWERLOSS_SEEDS:-20000} \
	  LEDGERX_SCHEMA_EXAMPLES=$${LEDGERX_SCHEMA_EXAMPLES:-20000} $(PY) -m pytest -q \
	  -p no:cacheprovider tests/test_reliability_powerloss.py tests/test_schema_differential.py

soak-kill: setup node
	$(PY) -m pytest -q -p no:cacheprovider -m slow tests/test_reliability_killloop.py

soak-migrate: setup
	$(PY) benches/bench_migrate.py --rows $${LEDGERX_MIGRATE_ROWS:-1000000} --max-rss-mb 500

# Mutation testing (not part of `make test`): cargo-mutants over every mutant of the files that
# carry the append/fsync/rotation/group-commit guarantees (appender, writer, its flusher; the
# proptest fuzz targets, which test the scanner, are skipped there), then over a 1/N shard of the
# rest of src/core (MUTANTS_SHARD=k/N, 0/1 = all), and cosmic-ray over the guarantee-bearing
# Python modules, MUTANTS_PER_MODULE random mutants each. Each step is time-boxed; survivors are
# listed in docs/testing.md with the reason they stay.
MUTANTS_SHARD ?= 0/12
MUTANTS_PER_MODULE ?= 6
MUTANTS_SECONDS ?= 1800
MUTANTS_GUARANTEES := src/core/appender.rs src/core/writer.rs src/core/writer/flusher.rs \
  src/core/writer/unsynced.rs src/core/writer/line.rs
mutants: setup
	command -v cargo-mutants >/dev/null || cargo install --locked cargo-mutants
	-RUST_BACKTRACE=0 timeout $(MUTANTS_SECONDS) cargo mutants --no-times -j 2 -p ledgerx \
	  $(addprefix -f ,$(MUTANTS_GUARANTEES)) --timeout 120 -o target/mutants-guarantees -- -- --skip fuzz
	-RUST_BACKTRACE=0 timeout $(MUTANTS_SECONDS) cargo mutants --no-times -p ledgerx -f 'src/core/**/*.rs' \
	  -e src/core/fuzz.rs $(addprefix -e ,$(MUTANTS_GUARANTEES)) --shard $(MUTANTS_SHARD) --timeout 300 -o target
	$(VENV)/bin/pip install -q cosmic-ray
	$(PY) tests/mutants_py.py --per-module $(MUTANTS_PER_MODULE) --seconds $(MUTANTS_SECONDS)

clean:
	rm -rf $(VENV) .venv-peers .venv-mlflow target data node/build $(NODE_ADDON)
