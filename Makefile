# callflow: two commands on a fresh Debian 12 (as root: missing packages are installed).
#   make run    set up what is missing, then run Asterisk + engine + API (Ctrl-C stops)
#   make test   set up what is missing (+ chromium, postgresql), then ruff and the whole pytest suite
# Every recipe is a thin call into callflow/pbx/bootstrap.py, the callflow CLI or pytest.

PYTHON ?= python3
VENV := .venv
BOOTSTRAP := $(PYTHON) callflow/pbx/bootstrap.py
PYTEST_ARGS ?= -ra

# the Asterisk root (a minimal Debian sid tree, ~340 MB): reuse a cached one via ASTERISK_ROOT
ASTERISK_ROOT ?= $(CURDIR)/build/asterisk-root
export ASTERISK_ROOT
export CALLFLOW_ASTERISK_ROOT ?= $(ASTERISK_ROOT)

.PHONY: run test lint packages-run packages-test venv asterisk-root

run: packages-run venv
	$(VENV)/bin/callflow setup
	$(VENV)/bin/callflow run

test: packages-test venv asterisk-root
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .

packages-run:
	$(BOOTSTRAP) packages run

packages-test:
	$(BOOTSTRAP) packages test

venv:
	$(BOOTSTRAP) venv

asterisk-root: venv
	$(VENV)/bin/python -m callflow.pbx.root "$(ASTERISK_ROOT)"
