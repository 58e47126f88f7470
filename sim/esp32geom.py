"""The ESP32-geometry interpreter (../shared/esp32geom): a 32-bit MicroPython unix build whose GC
heap grows the way the esp32 port's does, with the firmware and the host board frozen in
(boards/host/manifest.py). `make esp32geom` builds it; tests and benchmarks build it on demand.

Runs of it print `esp32geom: peak_idf_heap=... areas_added=...` at exit (stderr); `peak()` reads it.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO.parent / "shared" / "esp32geom" / "build.sh"
OUT = REPO / ".esp32geom"
BINARY = OUT / "micropython"
MANIFEST = REPO / "boards" / "host" / "manifest.py"
STOCK_HEAP = "56k"  # the esp32 port's first GC area on an ESP32 (MICROPY_GC_INITIAL_HEAP_SIZE)
STOCK_IDF_BUDGET = 40960  # what MicroPython may take from the IDF heap and leave WiFi + one TLS link ~40 KB
_PEAK = re.compile(r"esp32geom: peak_idf_heap=(\d+) areas_added=(\d+)")


def unavailable() -> str | None:
    """Why the interpreter cannot be built here (None when it can)."""
    if not BUILD_SH.exists():
        return f"no ESP32-geometry toolkit at {BUILD_SH} (../shared/esp32geom beside the checkout)"
    if shutil.which("gcc") is None:
        return "no gcc"
    probe = subprocess.run(["gcc", "-m32", "-x", "c", "-o", "/dev/null", "-"], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return "no gcc -m32 (apt-get install gcc-multilib)"
    return None


def build() -> Path:
    """Build (or refreeze, ~1 s when nothing changed) and return the interpreter's path."""
    why = unavailable()
    if why:
        raise RuntimeError(why)
    proc = subprocess.run(["bash", str(BUILD_SH), str(OUT), str(MANIFEST)], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"esp32geom build failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return BINARY


def peak(output: str) -> tuple[int, int] | None:
    """(peak_idf_heap bytes, areas added) from an esp32geom run's output, or None."""
    found = _PEAK.findall(output)
    return (int(found[-1][0]), int(found[-1][1])) if found else None
