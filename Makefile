# callflow: two commands on a fresh Debian 12 (as root: missing packages are installed).
#   make run    set up what is missing, then run Asterisk + engine + API (Ctrl-C stops)
#   make test   set up what is missing (+ chromium, postgresql), then ruff and the whole pytest suite
#   make bench  every bench/bench_*.py against its peers: a table in bench/results/ (< 15 min)
# Every recipe is a thin call into callflow/pbx/bootstrap.py, the callflow CLI or pytest.

PYTHON ?= python3
VENV := .venv
BOOTSTRAP := $(PYTHON) callflow/pbx/bootstrap.py
# three workers, each its own Asterisk, SIPp and engine on its own port block (tests/portblock.py):
# the live tests mostly wait on Asterisk's timers, so three fit two cores (~23 min vs ~30)
PYTEST_ARGS ?= -ra -n 3 --dist loadfile

# the Asterisk root (a minimal Debian sid tree, ~340 MB): reuse a cached one via ASTERISK_ROOT
ASTERISK_ROOT ?= $(CURDIR)/build/asterisk-root
export ASTERISK_ROOT
export CALLFLOW_ASTERISK_ROOT ?= $(ASTERISK_ROOT)

# the package as installed (the folders are mapped into callflow.*): what mypy and
# import-linter read, so every module is checked under its real name
INSTALLED := build/installed
# mypy names files as installed (callflow/engine/x.py); shown as in the checkout (engine/x.py)
SOURCE_PATHS := sed -E 's\#^callflow/(engine|agents|runtime|ami|stream|dialplan|api|store|board|desktop|outbound|special_calls|recordings)/\#\1/\#'
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c

.PHONY: run test bench lint check installed packages-run packages-test venv asterisk-root

run: packages-run venv
	$(VENV)/bin/callflow setup
	$(VENV)/bin/callflow run

test: packages-test venv asterisk-root
	$(VENV)/bin/ruff check .
	$(MAKE) --no-print-directory check
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# the yardsticks of issue 20, each against its peers in the same run (bench/run_all.py)
bench: venv
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[bench]'
	$(VENV)/bin/python bench/run_all.py

lint: venv
	$(VENV)/bin/ruff check .

# the architecture: the import contracts in pyproject.toml and mypy --strict, over the package as installed
check: installed
	cd $(INSTALLED) && $(CURDIR)/$(VENV)/bin/lint-imports --no-logo --no-cache $(CURDIR)/pyproject.toml
	cd $(INSTALLED) && $(CURDIR)/$(VENV)/bin/mypy --config-file $(CURDIR)/pyproject.toml \
		--cache-dir $(CURDIR)/build/mypy-cache -p callflow | $(SOURCE_PATHS)

installed: venv
	rm -rf $(INSTALLED)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--no-compile --target $(INSTALLED) .

packages-run:
	$(BOOTSTRAP) packages run

packages-test:
	$(BOOTSTRAP) packages test

venv:
	$(BOOTSTRAP) venv

asterisk-root: venv
	$(VENV)/bin/python -m callflow.pbx.root "$(ASTERISK_ROOT)"
