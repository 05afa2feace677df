# Every target does its own set-up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# schemathesis in a venv of its own: its hypothesis-jsonschema clashes with our pinned Hypothesis.
ST_VENV := .venv-schemathesis
ST_STAMP := $(ST_VENV)/.installed

.PHONY: setup schemathesis jsonserver demo test test-fast lint format bench soak lock docs-cli clean chromium

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

schemathesis: $(ST_STAMP)

$(ST_STAMP): requirements-schemathesis.txt
	test -x $(ST_VENV)/bin/python || $(PYTHON) -m venv $(ST_VENV)
	$(ST_VENV)/bin/pip install --quiet --require-hashes -r requirements-schemathesis.txt
	touch $(ST_STAMP)

# json-server 0.17.4 (package-lock.json), the third-party PMS of tests/integration/jsonserver.
jsonserver: node_modules/.package-lock.json

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

demo: $(STAMP)
	$(BIN)/tolken demo

test: $(STAMP) $(ST_STAMP) chromium jsonserver
	TOLKEN_REQUIRE_SCHEMATHESIS=1 TOLKEN_REQUIRE_JSONSERVER=1 $(BIN)/pytest

# The browser tests drive Debian's chromium, never a downloaded browser; install it when missing.
chromium:
	command -v /usr/bin/chromium >/dev/null 2>&1 || { apt-get update && apt-get install -y chromium; }

test-fast: $(STAMP)
	$(BIN)/pytest tests/unit tests/property -q

lint: $(STAMP)
	$(BIN)/ruff format --check src tests bench
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: $(STAMP)
	$(BIN)/python -m bench

# A few minutes of random edits, faults and SIGKILL restarts; fails on lost or divergent records.
soak: $(STAMP)
	$(BIN)/python -m bench.soak

# Regenerate the lockfile after changing dependencies in pyproject.toml.
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 \
		--generate-hashes -o requirements-lock.txt
	$(PYTHON) -m uv pip compile requirements-schemathesis.in --python-version 3.11 \
		--generate-hashes -o requirements-schemathesis.txt

# Regenerate the CLI reference in README.md (a test fails when it is stale).
docs-cli: $(STAMP)
	$(BIN)/python -m tolken._cli_reference README.md

clean:
	rm -rf $(VENV) $(ST_VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
