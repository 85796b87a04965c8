# The two commands a new user needs:
#   make demo   install into .venv and normalize synthetic frame sets (mono, then colour), printing recovered vs true scale
#   make test   install into .venv (with test tools) and run the tests and the linter
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint clean

$(BIN)/nsgflow: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/nsgflow
	$(BIN)/nsgflow demo --out demo --cores 2
	$(BIN)/nsgflow demo --colour --frames 3 --out demo/colour --cores 2

test: $(BIN)/nsgflow
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --doctest-modules --durations=5 src tests

clean:
	rm -rf demo .snakemake .pytest_cache
