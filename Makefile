# fairseq-poolingformer: `make demo` and `make test` work from a fresh clone (see README.md).
# Each creates .venv/ when missing and installs the pinned stack once (re-run when a
# requirements file or setup.py changes).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
TORCH  := $(shell grep -E "^torch==" requirements.txt)
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench clean distclean

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first, alone: with no torch installed, anything asking for it pulls a CUDA build.
$(STAMP): requirements.txt requirements-dev.txt setup.py | $(PY)
	$(PIP) install "$(TORCH)"
	$(PIP) install -r requirements-dev.txt
	$(PIP) install -e .
	touch $@

test: install
	$(PY) -m pytest -q tests

demo: install
	$(PY) benchmarks/attention.py --small

bench: install
	$(PY) benchmarks/attention.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
