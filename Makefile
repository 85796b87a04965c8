# The two commands a new user needs:
#   make demo   install into .venv and normalize synthetic frame sets (mono, then colour), printing recovered vs true scale
#   make test   install into .venv (with test tools) and run the linter, the docs build and the tests
# and for developers:
#   make docs   build the documentation site into docs/_build/html (warnings are errors)
#   make lock   renew requirements.lock: the newest versions pyproject.toml allows, pinned
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Exact versions of every dependency, tested together: installs take them as constraints
LOCK := requirements.lock

.PHONY: demo test docs lock clean

$(BIN)/nsgflow: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
	touch $@

demo: $(BIN)/nsgflow
	$(BIN)/nsgflow demo --out demo --cores 2
	$(BIN)/nsgflow demo --colour --frames 3 --out demo/colour --cores 2

docs: $(BIN)/nsgflow
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

test: $(BIN)/nsgflow docs
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --doctest-modules --durations=5 src tests

lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet '.[dev,slurm]'
	{ echo "# Exact versions that make demo, make test and CI install (pip --constraint). Renew: make lock"; \
	  .lock-venv/bin/python -m pip freeze --exclude nsgflow; } > $(LOCK)
	rm -rf .lock-venv

clean:
	rm -rf demo .snakemake .pytest_cache docs/_build
