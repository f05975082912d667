# make install: the requirements (CPU torch wheel first where there is no NVIDIA GPU)
# make test:    the test suite (CPU, hermetic, a few minutes on 2 cores)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# the CPU build installed where no GPU is found; add e.g. TORCH_PIP_ARGS="--index-url <PyTorch CPU index>"
# on a machine whose default torch wheel is a CUDA build
CPU_TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install install-dev test lint demo

# make demo: the whole pipeline on CPU with config/demo/*.py. Finished stages are skipped; FORCE=1 redoes all.
DEMO := out/demo
FORCE ?=

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

demo: install
ifeq ($(FORCE),1)
	rm -rf data/pystdlib/meta.json $(DEMO)
endif
	@if [ -f data/pystdlib/meta.json ]; then echo "[demo] data/pystdlib is prepared: skipping (FORCE=1 redoes it)"; \
	else $(PYTHON) data/pystdlib/prepare.py; fi
	@if $(PYTHON) -c "import sys, torch; sys.exit(0 if torch.load('$(DEMO)/transformer/last.pt', weights_only=True).get('complete') else 1)" 2>/dev/null; \
	then echo "[demo] $(DEMO)/transformer is trained: skipping"; \
	else $(PYTHON) train_transformer.py config/demo/transformer.py; fi
	$(PYTHON) generate_activations.py config/demo/activations.py
	@if [ -f $(DEMO)/sae/metrics.json ]; then echo "[demo] $(DEMO)/sae is trained: skipping"; \
	else $(PYTHON) train_sae.py config/demo/sae.py; fi
	@if [ -f $(DEMO)/interface/index.html ]; then echo "[demo] $(DEMO)/interface is built: skipping"; \
	else $(PYTHON) build_interface.py config/demo/interface.py; fi
	@$(PYTHON) build_interface.py config/demo/interface.py --results_only=True
