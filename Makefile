# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real datasets live outside the repository (MovieLens may not be redistributed).
DIVREC_DATA_HOME ?= $(abspath ../shared/data)
export DIVREC_DATA_HOME
OUT ?= results/benchmark

.PHONY: demo test test-core test-adapters docs lint bench readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned exactly and installed first, so nothing pulls a multi-GB CUDA build.
# `pip install divrec` alone is the light core (no torch, faiss, implicit); the demo's models
# need the `models` and `ann` extras, the tests every extra (`all`) plus dev and docs.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[models,ann]"
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e ".[all,dev,docs]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/divrec benchmark --dataset ml-1m --protocol ncf --out $(OUT)

# ruff, then pytest with the core-only and adapters checks running beside it (each in its own
# fresh venv), then the API reference build (.ci/test_all.sh)
test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHON=$(PYTHON) BIN=$(BIN) .ci/test_all.sh

# the light core alone in a fresh venv (no torch/faiss/implicit): re-rank, metrics, /rerank
test-core:
	PYTHON=$(PYTHON) .ci/core_only.sh

# the LensKit / RecTools adapters against the real libraries, in their own venv (both pin
# pandas < 3, RecTools numpy < 2)
test-adapters:
	PYTHON=$(PYTHON) .ci/adapters_check.sh

# the API reference from the docstrings (pdoc) under build/docs/api; fails on an import error
docs: $(VENV)/.dev-installed
	$(BIN)/python docs/build_api.py --out build/docs/api

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench_rerank.py --out benchmarks/results/rerank.json

# README results blocks regenerated from the committed JSON (`--check` is run by a test)
readme: $(BIN)/python
	$(BIN)/python benchmarks/readme_tables.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache .hypothesis
