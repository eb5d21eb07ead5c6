# make demo   -- run the pipeline on the embedded default (creates .venv on first use)
# make test   -- lint, format and type checks, then the whole test suite (creates .venv on first use)
# make models -- retrain the shipped general models (models/README.md) from ../shared/data (or DATA=...)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip -qq
DATA   ?= ../shared/data

.PHONY: demo test lint clean models

demo: $(VENV)/.deps
	$(BIN)/jzi demo

test: lint
	$(BIN)/python -m pytest

models: $(VENV)/.deps
	for m in general-aerial general-street; do \
	    $(BIN)/jzi train --general models/$$m.yaml --data-dir $(DATA) --work build/general \
	        --out models/$$m.pt --threads 2 || exit 1; \
	done
	sha256sum models/general-aerial.pt models/general-street.pt

lint: $(VENV)/.deps-test
	$(BIN)/ruff check jzi_ros test launch setup.py
	$(BIN)/ruff format --check jzi_ros test launch setup.py
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.deps: requirements.txt setup.py | $(BIN)/python
	@echo "Installing pinned dependencies into $(VENV) (first time: a few minutes, about 6 GB) ..."
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	@touch $@

$(VENV)/.deps-test: requirements-test.txt $(VENV)/.deps
	@echo "Installing test dependencies (ROS 2 wheels, pytest, hypothesis, colcon) into $(VENV) ..."
	$(PIP) install -r requirements-test.txt
	@touch $@

clean:
	rm -rf $(VENV) build install log demo_out .pytest_cache .ruff_cache .hypothesis *.egg-info
