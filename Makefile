# Two commands do everything on a fresh machine: `make sim` and `make test`.
# Each bootstraps .venv (pinned packages + MicroPython host libraries) when it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test sim bench setup clean

setup: $(STAMP)

$(STAMP): requirements-dev.txt requirements-tools.txt tools/hostlibs.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python tools/hostlibs.py --lib $(VENV)/mplib
	@touch $@

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

sim: $(STAMP)
	$(BIN)/python tools/sim.py $(SIM_ARGS)

bench: $(STAMP)
	$(BIN)/python tools/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
