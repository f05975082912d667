# make install: the requirements (CPU torch wheel first where there is no NVIDIA GPU)
# make test:    the test suite (CPU, hermetic, a few minutes on 2 cores)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# the CPU build installed where no GPU is found; add e.g. TORCH_PIP_ARGS="--index-url <PyTorch CPU index>"
# on a machine whose default torch wheel is a CUDA build
CPU_TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install install-dev test lint

install:
ifneq ($(HAS_GPU),1)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(CPU_TORCH)" $(TORCH_PIP_ARGS)
endif
	$(PIP) install -q -r requirements.txt

install-dev: install
	$(PIP) install -q -r requirements-dev.txt

test: install-dev
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check .
