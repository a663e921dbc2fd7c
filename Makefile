# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real datasets live outside the repository (MovieLens may not be redistributed).
DIVREC_DATA_HOME ?= $(abspath ../shared/data)
export DIVREC_DATA_HOME
OUT ?= results/benchmark

.PHONY: demo test lint bench readme clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned exactly and installed first, so nothing pulls a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e .
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,serve,graph,spark]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/divrec benchmark --dataset ml-1m --protocol ncf --out $(OUT)

test: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/bench_rerank.py --out benchmarks/results/rerank.json

# README results blocks regenerated from the committed JSON (`--check` is run by a test)
readme: $(BIN)/python
	$(BIN)/python benchmarks/readme_tables.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache .hypothesis
