# make install: the requirements (CPU torch wheel first where there is no NVIDIA GPU)
# make test:    the test suite (CPU, hermetic, a few minutes on 2 cores)
PYTHON ?= python3
PIP := $(PYTHON) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# the CPU build installed where no GPU is found; add e.g. TORCH_PIP_ARGS="--index-url <PyTorch CPU index>"
# on a machine whose default torch wheel is a CUDA build
CPU_TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: install install-dev test lint demo readme

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
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q tests

lint:
	$(PYTHON) -m ruff check .

# each stage runs only if its output is not complete; a stage interrupted midway resumes; a stage that runs
# again discards what was computed from its old output
TRANSFORMER_DONE = $(PYTHON) -c "import sys, torch; \
	sys.exit(0 if torch.load('$(DEMO)/transformer/last.pt', weights_only=True).get('complete') else 1)" 2>/dev/null

demo: install
ifeq ($(FORCE),1)
	rm -rf data/pystdlib/meta.json $(DEMO)
endif
	@if [ -f data/pystdlib/meta.json ]; then echo "[demo] data/pystdlib is prepared: skipping (FORCE=1 redoes it)"; \
	else $(PYTHON) data/pystdlib/prepare.py; fi
	@if $(TRANSFORMER_DONE); then echo "[demo] $(DEMO)/transformer is trained: skipping"; \
	else rm -rf $(DEMO)/activations $(DEMO)/sae $(DEMO)/interface; \
	  if [ -f $(DEMO)/transformer/last.pt ]; then resume=--init_from=resume; else resume=; fi; \
	  $(PYTHON) train_transformer.py config/demo/transformer.py $$resume; fi
	$(PYTHON) generate_activations.py config/demo/activations.py
	@if [ -f $(DEMO)/sae/metrics.json ]; then echo "[demo] $(DEMO)/sae is trained: skipping"; \
	else rm -rf $(DEMO)/interface; \
	  if [ -f $(DEMO)/sae/ckpt.pt ]; then resume=--init_from=resume; else resume=; fi; \
	  $(PYTHON) train_sae.py config/demo/sae.py $$resume; fi
	@if [ -f $(DEMO)/interface/index.html ]; then echo "[demo] $(DEMO)/interface is built: skipping"; \
	else $(PYTHON) build_interface.py config/demo/interface.py; fi
	@echo; $(PYTHON) -c "from common import results_table; print(results_table('$(DEMO)'))"
	@echo "feature browser: $(abspath $(DEMO))/interface/index.html"

# make readme: rewrite README.md's results table and assets/*.png screenshots from the finished demo run
README_FEATURE ?= 4
readme:
	$(PYTHON) tools/readme_assets.py --out_dir=$(DEMO) --feature=$(README_FEATURE)
