"""The firmware frozen into the 32-bit interpreter with the ESP32's heap geometry: what is frozen,
what the modules keep in RAM, and the scripted short day at ESP32 heap budgets."""
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


def short_day(tmp_path: Path, binary: Path, budget: int, monkeypatch, display: bool = False) -> tuple[bool, list[str], list]:
    from sim import day as simday
    from sim.world import World

    monkeypatch.setenv("ESP32GEOM_IDF_HEAP", str(budget))
    world = World(tmp_path, echo=False, micropython=str(binary), heap=geom.STOCK_HEAP, display=display)
    chargers = []
    try:
        simday._play_short(world)
        ok, lines = simday.report(world, quiet=True)
    except Exception as exc:  # noqa: BLE001 - out of memory shows as a stuck or crashed charger
        ok, lines = False, [repr(exc)[:2000]]
    finally:
        chargers = list(world.chargers.values())
        world.stop()
    peaks = [geom.peak(c.dev.output()) for c in chargers if c.dev is not None]
    return ok, lines, peaks


# A stock ESP32-WROOM-32 without PSRAM grows its 56k first area once from the IDF heap, which must
# keep ~40 KB for WiFi + one TLS connection: the acceptance geometry of issue 16 is a 40,960 B
# budget (bench/esp32geom.py bisects the least budget the short day needs: docs/benchmarks.md).
BUDGET = geom.STOCK_IDF_BUDGET
# With the display (issue 21: its modules, panel and 1 KiB frame buffer) and the payment QR code
# on the idle screen: the heaviest configuration (a charger without a display needs less), so the
# one run here; bench/esp32geom.py bisects its least budget (37,888 B when last measured).


def test_short_day_with_a_display_and_ad_hoc_payment_at_a_stock_esp32_budget(esp32geom, tmp_path, monkeypatch):
    ok, lines, peaks = short_day(tmp_path, esp32geom, BUDGET, monkeypatch, display=True)
    assert ok, "\n".join(lines)
    assert peaks and all(p is not None and p[0] <= BUDGET for p in peaks), peaks


@pytest.mark.parametrize("manifest", ["boards/esp32/manifest.py", "boards/host/manifest.py"])
def test_manifests_freeze_every_firmware_package(manifest):
    """Runs without the interpreter: a package missing from a manifest would be imported from the
    filesystem on a board (or not at all), costing its bytecode in RAM."""
    import re

    text = (geom.REPO / manifest).read_text()
    frozen = set(re.findall(r'"(\w+)"', text.split("for _pkg in", 1)[1].split(":", 1)[0]))
    packages = {p.name for p in FIRMWARE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= frozen, f"{manifest} leaves out {sorted(packages - frozen)}"
