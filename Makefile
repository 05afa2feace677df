# Every target does its own set-up: a fresh machine needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint format bench soak lock docs-cli clean chromium

setup: $(STAMP)

$(STAMP): pyproject.toml requirements-lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes -r requirements-lock.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tolken demo

test: $(STAMP) chromium
	$(BIN)/pytest

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

# Regenerate the CLI reference in README.md (a test fails when it is stale).
docs-cli: $(STAMP)
	$(BIN)/python -m tolken._cli_reference README.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
