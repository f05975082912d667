# make install: the requirements (CPU torch wheel first where there is no NVIDIA GPU)
# make test:    the test suite (CPU, hermetic, a few minutes on 2 cores)
#
# The Python used: PYTHON=... if given; else python3 when make runs inside an activated virtual env or conda env;
# else the project's own virtual env .venv, made with `python3 -m venv .venv` on first use, so a system Python
# that pip may not install into (PEP 668's "externally managed" one, e.g. Debian's) is never installed into.
ifeq ($(origin PYTHON),undefined)
IN_ENV := $(shell python3 -c "import os, sys; print(int(sys.prefix != sys.base_prefix or 'CONDA_PREFIX' in os.environ))" 2>/dev/null)
ifeq ($(IN_ENV),1)
PYTHON := python3
else
VENV := .venv
VENV_MAKER := $(or $(shell command -v python3),python3)
PYTHON := $(VENV)/bin/python
# as `source .venv/bin/activate` would: the env's own scripts (torchrun, ...) come first for the recipes and tests
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
endif
endif
PIP := $(PYTHON) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo 1)
# the CPU build installed where no GPU is found; add e.g. TORCH_PIP_ARGS="--index-url <PyTorch CPU index>"
# on a machine whose default torch wheel is a CUDA build
CPU_TORCH ?= torch==2.13.0
TORCH_PIP_ARGS ?=

.PHONY: venv install install-dev test lint demo sweep analysis readme

# make demo: the whole pipeline on CPU with config/demo/*.py. Finished stages are skipped; FORCE=1 redoes all.
DEMO := out/demo
FORCE ?=

# the project's .venv, when it is the Python used: made if missing, mended if unusable (e.g. a creation that was
# interrupted before pip was in it: python3 -m venv on an existing env keeps what is installed in it)
VENV_ELSE := PYTHON=... or an activated env is used instead
VENV_FAILED := python3 -m venv $(VENV) failed: install Python's venv module (Debian, Ubuntu: apt-get install \
python3-venv), or delete a $(VENV) left by a Python that is gone
venv:
ifdef VENV
	@if $(PIP) --version >/dev/null 2>&1; then echo "[make] using the project's virtual environment $(VENV) ($(VENV_ELSE))"; \
	else echo "[make] making the project's virtual environment: python3 -m venv $(VENV) ($(VENV_ELSE))"; \
	  $(VENV_MAKER) -m venv $(VENV) && $(PIP) --version >/dev/null 2>&1 || { echo "[make] error: $(VENV_FAILED)"; exit 1; }; \
	fi
endif

install: venv
ifneq ($(HAS_GPU),1)
	@$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install -q "$(CPU_TORCH)" $(TORCH_PIP_ARGS)
endif
	$(PIP) install -q -r requirements.txt

install-dev: install
	$(PIP) install -q -r requirements-dev.txt

test: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q tests

lint: venv
	@$(PYTHON) -m ruff --version >/dev/null 2>&1 || $(PIP) install -q -r requirements-dev.txt
	$(PYTHON) -m ruff check .

# each stage runs only if its output is not complete; a stage interrupted midway resumes; a stage that runs
# again discards what was computed from its old output
TRANSFORMER_DONE = $(PYTHON) -c "import sys, torch; \
	sys.exit(0 if torch.load('$(1)/transformer/last.pt', weights_only=True).get('complete') else 1)" 2>/dev/null

demo: install
ifeq ($(FORCE),1)
	rm -rf data/pystdlib/meta.json $(DEMO)
endif
	@if [ -f data/pystdlib/meta.json ]; then echo "[demo] data/pystdlib is prepared: skipping (FORCE=1 redoes it)"; \
	else $(PYTHON) data/pystdlib/prepare.py; fi
	@if $(call TRANSFORMER_DONE,$(DEMO)); then echo "[demo] $(DEMO)/transformer is trained: skipping"; \
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
	@echo; $(PYTHON) -c "from monosemanticity.common import results_table; print(results_table('$(DEMO)'))"
	@echo "feature browser: $(abspath $(DEMO))/interface/index.html"

# make sweep: after make demo, the SAEs of config/demo/sweep.py trained together on the demo store (each batch read
# once and fed to every SAE), the Pareto report $(DEMO)/sweep/pareto.json + pareto.png (with the concept axis: the
# ground-truth concept labels are made first by label_concepts.py, which skips labels up to date), the feature families
# ($(DEMO)/sweep/families.json) and one feature browser for them all ($(DEMO)/sweep/interface/index.html). SAEs already
# done are skipped, an interrupted one resumes, the site is rebuilt only if older than the report; FORCE=1 redoes all.
STORE_DONE = $(PYTHON) -c "import json, sys; \
	sys.exit(0 if json.load(open('$(DEMO)/activations/meta.json')).get('complete') else 1)" 2>/dev/null
SWEEP_SITE = $(DEMO)/sweep/interface/index.html

sweep: install
ifeq ($(FORCE),1)
	rm -rf $(DEMO)/sweep
endif
	@if ! $(STORE_DONE); then echo "[sweep] error: no complete demo store in $(DEMO)/activations: run make demo first"; \
	  exit 1; fi
	$(PYTHON) label_concepts.py --data_dir=data/pystdlib
	$(PYTHON) train_sae.py config/demo/sweep.py --init_from=resume
	@if [ $(SWEEP_SITE) -nt $(DEMO)/sweep/pareto.json ]; then echo "[sweep] $(DEMO)/sweep/interface is built: skipping"; \
	else $(PYTHON) build_interface.py config/demo/interface.py --sweep_dir=$(DEMO)/sweep --n_contexts=256; fi
	@echo "Pareto plot: $(abspath $(DEMO))/sweep/pareto.png"
	@echo "sweep browser (every SAE, feature families): $(abspath $(SWEEP_SITE))"

# make analysis: after make demo, the paper's findings measured on the demo run. Run B ($(RUN_B)): a second
# transformer with another seed, its activations and its SAE, with the demo's configs. Then analyze.py: the offline
# explanations of every feature and neuron with their held-out detection scores (features vs neurons), and the
# universality of features and of neurons across the two runs, and (after label_concepts.py, which skips labels
# that are up to date) each ground-truth concept's best feature and neuron, the features detecting it and its sparse
# probes: $(DEMO)/analysis/report.json, interpretability.png, universality.png, concepts.png, probing.png. Then both runs' feature browsers, showing each feature's
# explanation, score and best match in the other run. Stages done are skipped (an interrupted one resumes; a report
# made before the scoring rule of a unit with no SCORE firing, or before the concept report's per-feature concepts
# and sparse probes, is redone); FORCE=1 redoes run B and the analysis.
RUN_B := $(DEMO)/run_b
SEED_B ?= 1338
REPORT := $(DEMO)/analysis/report.json

analysis: install
ifeq ($(FORCE),1)
	rm -rf $(RUN_B) $(DEMO)/analysis
endif
	@if [ ! -f $(DEMO)/sae/metrics.json ]; then echo "[analysis] error: no demo SAE in $(DEMO)/sae: run make demo first"; \
	  exit 1; fi
	@if $(call TRANSFORMER_DONE,$(RUN_B)); then echo "[analysis] $(RUN_B)/transformer is trained: skipping"; \
	else rm -rf $(RUN_B)/activations $(RUN_B)/sae $(RUN_B)/interface; \
	  if [ -f $(RUN_B)/transformer/last.pt ]; then resume=--init_from=resume; else resume=; fi; \
	  $(PYTHON) train_transformer.py config/demo/transformer.py --out_dir=$(RUN_B) --seed=$(SEED_B) $$resume; fi
	$(PYTHON) generate_activations.py config/demo/activations.py --out_dir=$(RUN_B)
	@if [ -f $(RUN_B)/sae/metrics.json ]; then echo "[analysis] $(RUN_B)/sae is trained: skipping"; \
	else if [ -f $(RUN_B)/sae/ckpt.pt ]; then resume=--init_from=resume; else resume=; fi; \
	  $(PYTHON) train_sae.py config/demo/sae.py --out_dir=$(RUN_B) $$resume; fi
	$(PYTHON) label_concepts.py --data_dir=data/pystdlib
	@if [ $(REPORT) -nt $(DEMO)/sae/sae_weights.safetensors ] && [ $(REPORT) -nt $(RUN_B)/sae/sae_weights.safetensors ] \
	  && [ $(REPORT) -nt data/pystdlib/concepts.json ] && grep -q '"no_score_firing"' $(REPORT) \
	  && grep -q '"by_feature"' $(REPORT) && grep -q '"balanced_accuracy"' $(REPORT); \
	then echo "[analysis] $(REPORT) is up to date: skipping"; else $(PYTHON) analyze.py config/demo/analysis.py; fi
	@if [ $(DEMO)/interface/meta.json -nt $(REPORT) ]; then echo "[analysis] $(DEMO)/interface is built: skipping"; \
	else $(PYTHON) build_interface.py config/demo/interface.py; fi
	@if [ $(RUN_B)/interface/meta.json -nt $(REPORT) ]; then echo "[analysis] $(RUN_B)/interface is built: skipping"; \
	else $(PYTHON) build_interface.py config/demo/interface.py --out_dir=$(RUN_B) --analysis=$(REPORT); fi
	@echo "report: $(abspath $(REPORT)) (plots beside it)"
	@echo "feature browsers: $(abspath $(DEMO))/interface/index.html and $(abspath $(RUN_B))/interface/index.html"

# make readme: rewrite the generated blocks of README.md (results) and docs/ (sweep, analysis, guards) and the
# assets/*.png screenshots from the finished demo run
README_FEATURE ?= 4
readme: venv
	$(PYTHON) tools/readme_assets.py --out_dir=$(DEMO) --feature=$(README_FEATURE)
