"""The firmware frozen into the 32-bit interpreter with the ESP32's heap geometry: what is frozen,
what the modules keep in RAM, and the geometry itself (the scripted short day on it at a stock
budget is host_tests/sim/test_sim.py)."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from sim import esp32geom as geom

FIRMWARE = geom.REPO / "firmware"
# Module globals of every firmware module that stays imported, frozen (GC heap bytes; app.config,
# which boot forgets after validating, left out): a regression guard, not a goal.
GLOBALS_BOUND = 50 * 1024


def firmware_modules() -> list[str]:
    mods = []
    for src in sorted(FIRMWARE.rglob("*.py")):
        rel = src.relative_to(FIRMWARE).with_suffix("")
        if rel.name == "main":
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods.append(".".join(parts))
    return mods


def run_frozen(binary: Path, code: str, heap: str = geom.STOCK_HEAP, budget: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "MICROPYPATH": ".frozen"}
    env.pop("ESP32GEOM_IDF_HEAP", None)
    if budget is not None:
        env["ESP32GEOM_IDF_HEAP"] = budget
    return subprocess.run([str(binary), "-X", f"heapsize={heap}", "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, cwd="/")


def test_every_firmware_module_is_frozen_on_a_32_bit_interpreter(esp32geom):
    mods = firmware_modules()
    code = "import sys\nassert sys.maxsize == 2**31 - 1\n" + "".join(f"import {m}\n" for m in mods) + "print('ok', len(sys.modules))"
    proc = run_frozen(esp32geom, code, heap="1m")
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr


def test_module_globals_stay_under_their_bound(esp32geom):
    # app.config is left out: boot imports it to validate the config and forgets it (boot.py)
    mods = [m for m in firmware_modules() if m != "app.config"]
    code = ("import gc\ngc.collect()\na = gc.mem_alloc()\n" + "".join(f"import {m}\n" for m in mods)
            + "gc.collect()\nprint(gc.mem_alloc() - a)")
    proc = run_frozen(esp32geom, code, heap="1m")
    assert proc.returncode == 0, proc.stderr
    used = int(proc.stdout.split()[-1])
    assert used <= GLOBALS_BOUND, f"firmware module globals take {used} B of GC heap (bound {GLOBALS_BOUND})"


def test_budget_refuses_growth_like_a_stock_esp32(esp32geom):
    """The geometry itself: 56k first area, one growth from a 56k budget gives 111,936 B, no more."""
    code = "import micropython, gc\nx = [bytearray(1000) for _ in range(95)]\ngc.collect()\nprint(gc.mem_alloc() + gc.mem_free())"
    proc = run_frozen(esp32geom, code, budget="56k")
    assert proc.returncode == 0, proc.stderr
    assert geom.peak(proc.stderr) == (56 * 1024, 1)
    proc = run_frozen(esp32geom, "x = [bytearray(1000) for _ in range(120)]", budget="56k")
    assert "MemoryError" in proc.stdout + proc.stderr


# The scripted short day at a stock ESP32's budget (issue 16: 40,960 B of IDF heap for WiFi + TLS
# left after the 56k first area grows once; with the display, the heaviest configuration) is played
# by host_tests/sim/test_sim.py on this interpreter: one day for both. bench/esp32geom.py bisects the
# least budget the day needs (docs/benchmarks.md).


@pytest.mark.parametrize("manifest", ["boards/esp32/manifest.py", "boards/host/manifest.py"])
def test_manifests_freeze_every_firmware_package(manifest):
    """Runs without the interpreter: a package missing from a manifest would be imported from the
    filesystem on a board (or not at all), costing its bytecode in RAM."""
    import re

    text = (geom.REPO / manifest).read_text()
    frozen = set(re.findall(r'"(\w+)"', text.split("for _pkg in", 1)[1].split(":", 1)[0]))
    packages = {p.name for p in FIRMWARE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= frozen, f"{manifest} leaves out {sorted(packages - frozen)}"
