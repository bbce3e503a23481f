# LLM Lab: the two commands of the README's quick start, and the everyday ones.
#   make demo            install, then run every lesson demo in quick mode -> outputs/index.html
#   make demo LESSON=01  one lesson, full run
#   make test            install (with the dev extras), lint, run the whole test suite
PY ?= python3
LESSON ?=

.PHONY: install demo test lint bench clean

install:
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch
	$(PY) -m pip install -e ".[dev]"

demo: install
ifeq ($(LESSON),)
	llm-lab run --quick
else
	llm-lab run $(LESSON)
endif

lint:
	$(PY) -m ruff check .

test: install lint
	$(PY) -m pytest -q

bench: install
	cd 01_tokenization && $(PY) benchmark.py

clean:
	rm -rf outputs */outputs .pytest_cache .ruff_cache
