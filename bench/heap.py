"""The smallest MicroPython heap in which a complete session still succeeds, found by bisection."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Row
from evc.tariff import compile_doc
from sim.charger import Charger, authlist_doc, flat_tariff, token
from sim.device import ESP32_HEAP

TITLE = "Heap: smallest -X heapsize for a complete session (tap, charge, price, sign, journal, stop)"

CARD = bytes.fromhex("04a1b2c3d4e5f6")
LO_KB, HI_KB, STEP_KB = 128, 1024, 8


def session_succeeds(heap_kb: int) -> bool:
    """Boot at this heap, run one session, and check its signed record is in the journal."""
    with tempfile.TemporaryDirectory() as tmp, Charger(Path(tmp) / "dev", "heap-bench") as c:
        c.heap = f"{heap_kb}k"
        c.seed(tariff=compile_doc(flat_tariff(), ver=1),
               authlist=[authlist_doc([{"token": token(CARD), "status": "accepted"}])])
        try:
            c.boot()
            c.tap(CARD, r"session: started ")
            time.sleep(1.5)
            c.tap(CARD, r"session: record 1: card ")
            c.stop()
            return len(c.records()) == 1
        except Exception:  # out of memory shows as a crash or a missing line
            return False


def run() -> list[Row]:
    lo, hi = LO_KB, HI_KB  # invariant: fails at lo, works at hi
    if session_succeeds(lo) or not session_succeeds(hi):
        raise RuntimeError(f"bisection bounds wrong: {lo}k must fail and {hi}k must work")
    tries = 2
    while hi - lo > STEP_KB:
        mid = (lo + hi) // 2
        tries += 1
        if session_succeeds(mid):
            hi = mid
        else:
            lo = mid
    budget = int(ESP32_HEAP.rstrip("k"))
    return [
        Row("smallest heap", "complete session succeeds at", hi, "KiB",
            f"fails at {lo} KiB; {tries} trials; no broker (uplink buffers not allocated); 64-bit unix port, .mpy"),
        Row("smallest heap", "simulated board budget (sim/device.py)", budget, "KiB",
            f"headroom {budget - hi} KiB over the smallest working heap"),
    ]
