# backlake: `make demo` runs the demo on the embedded (local directory) lake; `make test` lints (ruff, mypy)
# and runs the tests; `make lint` only lints.
# Both create or refresh .venv from a lock file first: the demo from requirements-runtime.lock (runtime
# dependencies only), the tests from requirements.lock (runtime + test dependencies).
# `make demo` leaves the local Prefect server it started running (state in .prefect) for the next
# commands; `make stop` (or `.venv/bin/backlake server stop`) stops it, `make s3` serves a local S3.

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
TEST_STAMP := $(VENV)/.installed-test

export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1

.PHONY: setup setup-test demo lint test test-fast lock dashboard s3 stop clean

setup: $(RUNTIME_STAMP)

setup-test: $(TEST_STAMP)

define install
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), f"backlake needs Python 3.11, found {sys.version.split()[0]}: set PYTHON=/path/to/python3.11"'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(1)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m compileall -q lib flows dashboards
endef

$(RUNTIME_STAMP): requirements-runtime.lock pyproject.toml
	$(call install,requirements-runtime.lock)
	@touch $(RUNTIME_STAMP)

$(TEST_STAMP): requirements.lock requirements-runtime.lock pyproject.toml
	$(call install,requirements.lock)
	@touch $(TEST_STAMP) $(RUNTIME_STAMP)

demo: setup
	$(BIN)/backlake demo

lint: setup-test
	$(BIN)/ruff check lib flows dashboards tests
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-fast: setup-test
	$(BIN)/python -m pytest -m "not browser and not s3 and not prefect"

dashboard: setup
	$(BIN)/backlake dashboard

# a local S3 server (moto) on 127.0.0.1:9000 with the bucket `backlake`; prints the exports to use
s3: setup
	$(BIN)/backlake s3 serve

# stop the local Prefect server that the demo (or any command running a flow) started
stop:
	@if [ -x $(BIN)/backlake ]; then $(BIN)/backlake server stop; fi

lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet -e ".[docker]"
	{ echo "# backlake runtime lock file: exact versions of the runtime dependencies (Python 3.11, linux x86_64)."; \
	  echo "# Used by 'make demo' and the Dockerfile. Regenerate with 'make lock'."; \
	  .lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^backlake'; } > requirements-runtime.lock
	.lockenv/bin/python -m pip install --quiet -c requirements-runtime.lock -e ".[docker,test]"
	{ echo "# backlake lock file: exact versions of every runtime and test dependency (Python 3.11, linux x86_64)."; \
	  echo "# Regenerate with 'make lock' after changing pyproject.toml's dependencies."; \
	  .lockenv/bin/python -m pip freeze --exclude-editable | grep -v '^backlake'; } > requirements.lock
	rm -rf .lockenv

clean: stop
	rm -rf $(VENV) .prefect .pytest_cache .mypy_cache .ruff_cache
