# The README's commands live here. Every target is idempotent and works on a fresh clone with
# only Python 3.11 and pip.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SLIPWAY := $(VENV)/bin/slipway
WORK ?= .slipway
PER_CLASS ?= 1000
EPOCHS ?= 3
DATA := $(WORK)/data/fashion-mnist
MODEL := $(WORK)/models/demo
PYTEST_ARGS ?=

.PHONY: run test lint format venv clean tools

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

venv: $(VENV)/.installed-dev

## run: demo data -> train -> evaluate on the embedded default (no cluster needed)
run: $(VENV)/.installed-run
	@start=$$(date +%s); \
	$(SLIPWAY) data demo --out $(DATA) --per-class $(PER_CLASS) && \
	$(SLIPWAY) train --data $(DATA) --out $(MODEL) --epochs $(EPOCHS) && \
	$(SLIPWAY) evaluate --model $(MODEL) --data $(DATA) --split test && \
	echo "model folder: $(MODEL) (model.pt, model_card.json, report.md)" && \
	echo "dataset:      $(DATA)" && \
	echo "took $$(( $$(date +%s) - start )) s"

## tools: helm, kubectl and checkov for the chart and cluster tests, into tools/ (idempotent)
tools:
	PYTHON=$(PYTHON) scripts/install-tools.sh

## test: install the dev extra and the tools, and run the whole suite
test: $(VENV)/.installed-dev tools
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(WORK) build .pytest_cache .ruff_cache
