# One-command entry points. Each target creates/updates the virtualenv it needs.
#   make run    install the serving extra and start the API on the committed models
#   make test   install everything (dev extra) and run lint + the test suite
#   make train  retrain all three variants into models/ (new versions; ARGS=... to choose)
#   make test-deploy  build the images and run docker-compose.yml for real (Docker or podman)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Ray Serve in a virtualenv of its own, installed as a user installs it (`pip install -e '.[ray]'`)
RAY_VENV ?= .venv-ray
# LitServe, BentoML, MLServer and KServe, a virtualenv each (the framework peers benchmark)
PEER_VENVS ?= .venv-peers
# The offline MNIST copy beside the checkout, when present; override with MNIST_DATA_DIR=...
MNIST_DATA_DIR ?= $(abspath $(wildcard ../shared/data/mnist))
export MNIST_DATA_DIR

.PHONY: run test test-deploy lint train bench grpc-stubs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.serve-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[serve]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.serve-installed

run: $(VENV)/.serve-installed
	$(BIN)/python -m service

$(RAY_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(RAY_VENV)
	$(RAY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(RAY_VENV)/bin/python -m pip install --quiet -e ".[ray]"
	touch $@

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile
	@# The Kubernetes manifests as kubectl applies them: each kustomization rendered, then validated.
	@mkdir -p .lint && for kustomization in deploy/k8s deploy/k8s-models-volume; do \
		$(BIN)/kubectl kustomize $$kustomization > .lint/$$(basename $$kustomization).yaml || exit 1; \
		$(BIN)/kubernetes-validate --strict --quiet .lint/$$(basename $$kustomization).yaml || exit 1; \
	done

test: lint $(RAY_VENV)/.installed
	MNIST_RAY_VENV=$(RAY_VENV) $(BIN)/python -m pytest

# Docker where its daemon runs; else podman and docker-compose, installed here when missing (on
# Debian, as root). devtools.containers builds both images first, showing the build.
CONTAINER_TOOLS := podman catatonit debootstrap docker-compose
test-deploy: $(VENV)/.dev-installed
	@if ! docker info >/dev/null 2>&1 && ! { command -v podman && command -v docker-compose; } >/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing $(CONTAINER_TOOLS) (Debian packages)"; \
			apt-get install -y -q $(CONTAINER_TOOLS) >/dev/null || \
			{ apt-get update -q >/dev/null && apt-get install -y -q $(CONTAINER_TOOLS) >/dev/null; }; \
		else echo "make test-deploy needs Docker, or podman and docker-compose: install them"; exit 2; fi; \
	fi
	$(BIN)/python -m devtools.containers
	$(BIN)/python -m pytest -m deploy tests/deploy

# ARGS: mnist-train's options (default --variant all), e.g. make train ARGS="--variant group --epochs 5"
ARGS ?= --variant all
train: $(VENV)/.dev-installed
	$(BIN)/mnist-train $(ARGS) $(if $(MNIST_DATA_DIR),--data-dir $(MNIST_DATA_DIR)) --output-dir models

# Every benchmark runs even when an earlier one misses its target; the status says if any did.
bench: $(VENV)/.dev-installed $(RAY_VENV)/.installed $(PEER_VENVS)/.installed
	status=0; \
	$(BIN)/python -m benchmarks.layer_train_step || status=1; \
	$(BIN)/python -m benchmarks.normalization_cost || status=1; \
	$(BIN)/python -m benchmarks.batch_size || status=1; \
	$(BIN)/python -m benchmarks.http_load || status=1; \
	$(BIN)/python -m benchmarks.request_profile || status=1; \
	$(BIN)/python -m benchmarks.inference_ceiling || status=1; \
	$(BIN)/python -m benchmarks.framework_peers --venvs $(PEER_VENVS) || status=1; \
	$(BIN)/python -m benchmarks.overload || status=1; \
	$(BIN)/python -m benchmarks.soak || status=1; \
	$(BIN)/python -m benchmarks.hostile || status=1; \
	$(BIN)/python -m benchmarks.preprocessing_cost || status=1; \
	$(BIN)/python -m benchmarks.realworld_accuracy || status=1; \
	$(BIN)/python -m benchmarks.letters_and_numbers || status=1; \
	$(BIN)/python -m benchmarks.ray_scaling --ray-venv $(RAY_VENV) || status=1; \
	exit $$status

# LitServe, BentoML, MLServer and KServe, a venv each: the framework peers' benchmark.
$(PEER_VENVS)/.installed: $(VENV)/.dev-installed
	$(BIN)/python -m benchmarks.peers --install $(PEER_VENVS)
	touch $@

# The Open Inference Protocol's gRPC stubs, committed; a test checks they match the .proto.
grpc-stubs: $(VENV)/.dev-installed
	$(BIN)/python -m grpc_tools.protoc -I service/grpc --python_out=service/grpc \
		--grpc_python_out=service/grpc service/grpc/grpc_predict_v2.proto
	sed -i 's/^import grpc_predict_v2_pb2/from service.grpc import grpc_predict_v2_pb2/' \
		service/grpc/grpc_predict_v2_pb2_grpc.py

clean:
	rm -rf $(VENV) $(RAY_VENV) .pytest_cache .ruff_cache .lint
