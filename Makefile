# Two commands do everything on a fresh machine: `make sim` and `make test`.
# Each bootstraps .venv (pinned packages + MicroPython host libraries) when it is missing or stale.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test sim bench setup clean esp32geom

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

# The 32-bit interpreter with the ESP32's heap geometry and the firmware frozen in (sim/esp32geom.py):
#   ESP32GEOM_IDF_HEAP=40960 .venv/bin/python tools/sim.py --micropython .esp32geom/micropython --heap 56k
esp32geom: $(STAMP)
	bash ../shared/esp32geom/build.sh .esp32geom boards/host/manifest.py

clean:
	rm -rf $(VENV) .pytest_cache
