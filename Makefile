# cnnzoo: every target sets up what it needs on a fresh machine.
#   make serve         the service on http://127.0.0.1:8000 (HOST=… PORT=… to change)
#   make test          the test suite (what CI runs); make test-all adds the extended tests
#   make train-all     train the whole matrix into runs/   (FORCE=1 retrains finished runs)
#   make export-all    publish every trained run into models/ (parity gate first; FORCE=1 republishes)
#   make export MODEL=<id>  publish one run, e.g. MODEL=cnn-mnist
#   make quantize MODEL=<id>  publish models/<id>-int8 from the published fp32 model (int8 gate first)
#   make quantize-all  an int8 variant of every published fp32 *-cifar10 model (FORCE=1 redoes them)
#   make bench-engine  ONNX Runtime vs PyTorch eager on the CPU, every architecture; int8 vs fp32 ORT
#   make bench-models  the README's model table: each model's accuracy, precision, size and ONNX Runtime speed
#   make bench-stages  where one /predict spends its CPU, stage by stage, in-process
#   make bench-memory  what each model keeps resident in a worker, beside its weights (with and without prepacking)
#   make bench-digits  digit models on real-world degradations of the MNIST test set, through the service
#   make bench-v2      Triton's perf_analyzer against the v2 protocol, HTTP and gRPC (PERF_ANALYZER=path)
#   make bench-hostile issue 17's hostile uploads and requests against a real server (BENCH_HOSTILE_ARGS="--only NAME")
#   make container-test  build and run the images with podman, end to end (minutes; see README)
#   make deploy-check  validate deploy/ (Kubernetes and KServe manifests) offline, in seconds
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The project's machines are offline and hold the datasets beside the checkout.
DATA_DIR ?= $(if $(wildcard ../shared/datasets),../shared/datasets,data)
export DATA_DIR
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: help setup setup-serve serve browser test test-all train train-all export export-all quantize quantize-all bench bench-train bench-engine bench-service bench-models bench-stages bench-memory bench-digits bench-v2 bench-hostile container-test deploy-check clean

help:
	@sed -n '1,/^PYTHON/p' Makefile | grep '^#' | sed 's/^# \{0,1\}//'

# Two environments in one venv: serving needs no torch; training and tests add it.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# setup.py builds service/*.c into the checkout: an edit to one reinstalls.
C_MODULES := $(wildcard service/*.c)
$(VENV)/.serve: pyproject.toml setup.py $(C_MODULES) | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.dev: pyproject.toml setup.py $(C_MODULES) | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[train,dev]'
	touch $(VENV)/.serve $@

setup: $(VENV)/.dev
setup-serve: $(VENV)/.serve

# The browser tests need Chromium: installed here when missing (Debian, root or sudo), or make
# stops before the tests with one line saying what to run.
browser:
	@scripts/ensure_chromium.sh

# The suite runs on one worker per core, at most 4 (each worker imports torch: ~0.5 GB); modules
# stay whole on one worker (--dist loadscope), so a module's servers and fixtures start once.
# TEST_WORKERS=0 runs it in this process.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 4 ? n : 4 )))
PYTEST_PARALLEL = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)

test: $(VENV)/.dev browser
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) $(PYTEST_ARGS)

# The default suite plus the `extended` tests (architectures outside the train-all matrix).
test-all: $(VENV)/.dev browser
	$(BIN)/python -m pytest -m "extended or not extended" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

train: $(VENV)/.dev
	@test -n "$(MODEL)" -a -n "$(DATASET)" || { echo "usage: make train MODEL=<arch> DATASET=<mnist|cifar10> [EPOCHS=n]"; exit 2; }
	$(BIN)/python -m training train --arch $(MODEL) --dataset $(DATASET) $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(FORCE),--force)

train-all: $(VENV)/.dev
	$(BIN)/python -m training train-all $(if $(FORCE),--force)

export: $(VENV)/.dev
	@test -n "$(MODEL)" || { echo "usage: make export MODEL=<id>   (e.g. cnn-mnist; see runs/)"; exit 2; }
	$(BIN)/python -m export export --id $(MODEL)

export-all: $(VENV)/.dev
	$(BIN)/python -m export export-all $(if $(FORCE),--force)

quantize: $(VENV)/.dev
	@test -n "$(MODEL)" || { echo "usage: make quantize MODEL=<id>   (a published fp32 model, e.g. nin-cifar10)"; exit 2; }
	$(BIN)/python -m export quantize --id $(MODEL)

quantize-all: $(VENV)/.dev
	$(BIN)/python -m export quantize-all $(if $(FORCE),--force)

bench-train: $(VENV)/.dev
	$(BIN)/python bench/train_cnn_60s.py

bench-engine: $(VENV)/.dev
	$(BIN)/python bench/engine.py
	$(BIN)/python -m bench.int8

# The service: serving dependencies only (no torch), models/ on $(HOST):$(PORT).
serve: $(VENV)/.serve
	CNNZOO_HOST=$(HOST) CNNZOO_PORT=$(PORT) $(BIN)/python -m service

# Real servers and a load generator in another process (wrk if installed); prints the figures.
bench-service: $(VENV)/.dev
	$(BIN)/python bench/service_benchmark.py

bench-models: $(VENV)/.dev
	$(BIN)/python -m bench.models

bench-stages: $(VENV)/.dev
	$(BIN)/python bench/stages.py

bench-memory: $(VENV)/.dev
	$(BIN)/python bench/model_memory.py

# Accuracy, not timing: every digit model of models/ on the conditions of bench/digit_conditions.py,
# each image sent over HTTP to a real server. BENCH_DIGITS_ARGS="--digits 200 --markdown out.md" etc.
bench-digits: $(VENV)/.dev
	$(BIN)/python bench/digits.py $(BENCH_DIGITS_ARGS)

# perf_analyzer (pip install perf-analyzer; its wheels need glibc >= 2.38) on the same server, v2 over HTTP and gRPC.
bench-v2: $(VENV)/.dev
	$(BIN)/python bench/perf_analyzer.py $(if $(PERF_ANALYZER),--perf-analyzer $(PERF_ANALYZER))

# Every hostile file of testkit/hostile.py and the request-side attacks, one at a time, then two loads:
# status, seconds, server CPU, worst /health/live and 28x28 /predict waits, RSS growth (about 5 min).
bench-hostile: $(VENV)/.dev
	$(BIN)/python bench/hostile.py $(BENCH_HOSTILE_ARGS)

bench: bench-train bench-engine bench-service

# Both serving images and docker-compose.yml, for real. Needs podman (../shared/tools/container-sandbox.sh);
# the script itself needs only the serving dependencies (it checks answers with service/ code).
container-test: $(VENV)/.serve
	$(BIN)/python scripts/container_test.py $(CONTAINER_TEST_ARGS)

# The manifests' tests alone (also part of make test): schemas, and agreement with the service.
deploy-check: $(VENV)/.dev
	$(BIN)/python -m pytest tests/deploy $(PYTEST_ARGS)

clean:
	rm -rf .pytest_cache test-artifacts bench/out
