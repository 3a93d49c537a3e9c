# gameday: `make demo` and `make test` work from a fresh clone; both start with `make install`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
PIP_QUIET := --quiet --disable-pip-version-check
AZ_VENV ?= .venv-az

.PHONY: install chromium test conformance faults demo lab lint histories clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -m pip install $(PIP_QUIET) -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import gameday.cli, temporalio, moto, google.cloud.compute_v1, azure.mgmt.network"
	touch $@

# Three pytest workers, each with its own Temporal dev server and emulators: the tests mostly wait
# on timers and I/O (two workers kept 1.2 of the 2 cores busy), so a third still shortens the
# wall time on a 2-core machine.
test: install chromium
	GAMEDAY_UI_CHECK=$$(command -v chromium >/dev/null 2>&1 && echo required) $(BIN)/pytest -n 3 --durations=25

# The browser check (tests/test_ui.py) needs Debian's chromium: installed when missing where
# apt-get can (as root); once present the check is required (it fails, never skips). Elsewhere it
# skips and says why.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	  chromium chromium-driver >/dev/null; } \
	  || echo "chromium is not installed and could not be: tests/test_ui.py will skip"

# The real Azure CLI against the lab (tests/lab/test_az_conformance.py; gcloud's run in `make test`).
# azure-cli pins azure-mgmt-* versions that conflict with ours, so it gets its own venv (~90 s and
# ~730 MB the first time), which is why it is not part of `make test`.
conformance: install $(AZ_VENV)/.installed
	GAMEDAY_AZ=$(AZ_VENV)/bin/az $(BIN)/pytest tests/lab/test_az_conformance.py tests/lab/test_gcloud_conformance.py -q

$(AZ_VENV)/.installed:
	test -x $(AZ_VENV)/bin/python || $(PYTHON) -m venv $(AZ_VENV)
	$(AZ_VENV)/bin/python -m pip install $(PIP_QUIET) "azure-cli>=2.91" 2>&1 | grep -v "^WARNING: Location" || true
	$(AZ_VENV)/bin/az version >/dev/null
	touch $@

# The orchestrator under fault, long version: 40 seeded fault runs of one multi-cloud runbook, then
# 200 generated runbooks, each interrupted at a random moment; each part prints
# "N runs, N restored exactly, 0 leaked" (the generated part also ", 0 double-counted"); then the
# week-long GameDay on the time-skipping server (drift every minute, a steady state every 15 s).
faults: install
	GAMEDAY_FAULT_RUNS=40 GAMEDAY_GENERATED_RUNS=$(or $(GENERATED_RUNS),200) $(BIN)/pytest tests/faults -q -s
	GAMEDAY_WEEK_LONG=1 $(BIN)/pytest tests/test_week_long.py -q -s

# Re-record tests/replay/histories (real runs against the lab, ~3 minutes); record from a clean
# clone of the code that is deployed, after a change no GameDay in flight can meet.
histories: install
	$(BIN)/python -m tests.replay.record

demo: install
	$(BIN)/python -m gameday.lab.demo

lab: install
	$(BIN)/python -m gameday.lab.manager foreground

# ruff; the layers of DESIGN.md's table (import-linter, contracts in pyproject.toml); the type
# checker over the product code (mypy with pydantic's plugin).
lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(AZ_VENV) .pytest_cache .ruff_cache reports
