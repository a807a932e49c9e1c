# cgmagan: `make run` and `make test` set everything up on a fresh machine.
SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

.PHONY: help install run quickstart recipe reproduce-small reproduce-paper test test-all bench gpu-check lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 | grep -v "is ignored"; test $${PIPESTATUS[0]} -eq 0
	@touch $(STAMP)

install: $(STAMP)  ## create .venv with the pinned dependencies (once)

run: install  ## run the embedded default experiment end to end (ARGS="..." for overrides)
	$(BIN)/python run.py $(ARGS)

quickstart: install  ## the same pipeline, shorter
	$(BIN)/python run.py +experiment=quickstart $(ARGS)

recipe: install  ## a sweep over 3 seeds into a table: make recipe NAME=lsft_vs_gsft ARGS="conditioning=lsft,gsft"
	PYTHON=$(BIN)/python bash experiments/recipe.sh $(NAME) $(ARGS)

reproduce-small: install  ## the six recipes' tables and plots on the embedded data, 3 seeds (51-55 min on 2 CPU cores, two sweeps at a time; see README)
	$(BIN)/python -m cgmagan.reproduce small --readme README.md $(ARGS)

reproduce-paper: install  ## the same on the paper's datasets and backbones (GPUs): ARGS="-- paths.data_dir=/data hydra/launcher=slurm"
	$(BIN)/python -m cgmagan.reproduce paper $(ARGS)

test: install  ## the test suite (slow tests excluded)
	$(BIN)/python -m pytest -q

test-all: install  ## every test, slow ones included
	$(BIN)/python -m pytest -q -m "slow or not slow"

bench: install  ## CGMA throughput, cache memory and reading, GAN step and inference speed, data memory, the paper preset's cost per stage and method, written to benchmarks/
	$(BIN)/python benchmarks/cgma_speed.py
	$(BIN)/python benchmarks/cgma_cache.py
	$(BIN)/python benchmarks/gan_speed.py
	$(BIN)/python benchmarks/data_memory.py
	$(BIN)/python benchmarks/paper_scale.py

gpu-check:  ## on a GPU machine, a few minutes: quickstart and one paper-size combination per stage, GAN steps, CGMA vs bare pass (no install: any python3 with the dependencies)
	$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) benchmarks/gpu_check.py --out benchmarks/gpu_check $(ARGS)

lint: install  ## ruff
	$(BIN)/ruff check cgmagan tests benchmarks run.py

clean:  ## remove run outputs and caches (not the venv)
	rm -rf outputs .cache
