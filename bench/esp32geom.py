"""The firmware frozen on the 32-bit interpreter with the ESP32's heap geometry (56k first area,
growth from an IDF budget): the least budget the scripted short day needs, the peak GC heap, the
live heap after boot and before signing, garbage per session and fragmentation over 300 sessions."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.common import Row
from sim import esp32geom as geom
from sim import soak
from sim.broker import Broker

TITLE = "ESP32 heap geometry: the firmware frozen, 56k + an IDF budget (sim/esp32geom.py)"

RUNS_PER_STEP = 3
LO, HI, STEP = 16 * 1024, 112 * 1024, 4 * 1024
SOAK_SESSIONS = 300
SOAK_BUDGET = geom.STOCK_IDF_BUDGET  # the acceptance geometry: 56k + 40,960 B
DAY_RUNS = 5
COMPARE_SESSIONS = 30


def short_day(binary: Path, budget: int | None, scenario: str = "short") -> tuple[bool, int | None]:
    """(passed, peak IDF bytes taken) for the short scripted day at this budget (None: unlimited)."""
    from sim import day as simday
    from sim.world import World

    saved = os.environ.get("ESP32GEOM_IDF_HEAP")
    if budget is None:
        os.environ.pop("ESP32GEOM_IDF_HEAP", None)
    else:
        os.environ["ESP32GEOM_IDF_HEAP"] = str(budget)
    ok, peaks = False, []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            world = World(Path(tmp), echo=False, micropython=str(binary), heap=geom.STOCK_HEAP)
            try:
                simday.SCENARIOS[scenario](world)
                ok, _ = simday.report(world, quiet=True)
            except Exception:  # out of memory shows as a stuck or crashed charger
                ok = False
            finally:
                chargers = list(world.chargers.values())
                world.stop()
            peaks = [geom.peak(c.dev.output()) for c in chargers if c.dev is not None]
    finally:
        if saved is None:
            os.environ.pop("ESP32GEOM_IDF_HEAP", None)
        else:
            os.environ["ESP32GEOM_IDF_HEAP"] = saved
    peak = max((p[0] for p in peaks if p), default=None)
    return ok, peak


def run() -> list[Row]:
    why = geom.unavailable()
    if why:
        return [Row("esp32geom", "not measured", "-", "", why)]
    binary = geom.build()
    ok, peak = short_day(binary, None)
    if not ok:
        raise RuntimeError("the short day fails even with an unlimited budget")
    lo, hi = LO, HI  # invariant: fails at lo, passes RUNS_PER_STEP times at hi
    trials = 1
    while hi - lo > STEP:
        mid = (lo + hi) // 2 // 1024 * 1024
        passed = True
        for _ in range(RUNS_PER_STEP):
            trials += 1
            if not short_day(binary, mid)[0]:
                passed = False
                break
        lo, hi = (lo, mid) if passed else (mid, hi)
    rows = [
        Row("short day", "least IDF budget that passes 3 runs of 3", hi, "bytes",
            f"fails at {lo}; {trials} runs; goal {geom.STOCK_IDF_BUDGET} (a stock ESP32 keeping ~40 KB for WiFi + TLS)"),
        Row("short day", "peak GC heap, unlimited budget", 56 * 1024 + (peak or 0), "bytes",
            f"56 KiB first area + {peak} B taken from the IDF heap; goal 80 KiB"),
    ]
    day = [short_day(binary, geom.STOCK_IDF_BUDGET, "day") for _ in range(DAY_RUNS)]
    rows.append(Row("day (tools/sim.py)", f"runs passed at a {geom.STOCK_IDF_BUDGET} B budget",
                    f"{sum(ok for ok, _ in day)}/{DAY_RUNS}", "runs",
                    f"two chargers, broker, backend; every record verified; IDF heap taken at most "
                    f"{max((p or 0) for _, p in day)} B"))
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        r = soak.run(Path(tmp), broker.url, SOAK_SESSIONS, SOAK_BUDGET, micropython=str(binary))
    if r.memory_errors or r.stored != SOAK_SESSIONS:
        raise RuntimeError(f"soak failed: {r.memory_errors} MemoryError lines, {r.stored} records stored")
    # the same short soak with collections only when the heap is full (MicroPython's default) and
    # with the firmware's gc.threshold (app/charger.py): the largest free block between sessions
    compared = {}
    for label, threshold in (("collect when full", "0"), ("gc.threshold(8192)", "8192")):
        with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
            c = soak.run(Path(tmp), broker.url, COMPARE_SESSIONS, SOAK_BUDGET, micropython=str(binary),
                         env={"EVC_GC_THRESHOLD": threshold})
        compared[label] = sorted(c.free_by_session.values()), c.memory_errors
    n = SOAK_SESSIONS
    rows += [
        Row("soak", "live heap after boot (uplink connected)", r.heap_after_boot, "bytes", "after a collection"),
        Row("soak", "live heap just before signing (max)", max(r.heap_at_seal), "bytes",
            f"over {n} sessions, after the collection before sealing"),
        Row("soak", "garbage per session", r.garbage_per_session, "bytes",
            "bytes allocated per session (mem_info total), signing included"),
        Row("soak", "largest free block after session 1", r.free_after[1], "bytes", "best of 3 idle reports"),
        Row("soak", f"largest free block after session {n}", r.free_after[n], "bytes",
            f"{100 * r.free_after[n] // max(1, r.free_after[1])} % of the first (goal >= 80 %)"),
        Row("soak", "IDF heap taken at most", r.peak_idf or 0, "bytes", f"budget {SOAK_BUDGET}; {n} sessions, uplink on"),
    ]
    free = sorted(r.free_by_session.values())
    first, last = r.free_window(first=True), r.free_window(first=False)
    rows += [
        Row("soak", f"largest free block between sessions, {n} sessions", free[len(free) // 2], "bytes",
            f"median; min {free[0]}, max {free[-1]}"),
        Row("soak", "largest free block, last 10 sessions vs first 10", last, "bytes",
            f"medians; first 10: {first}; {100 * last // max(1, first)} % (goal >= 80 %)"),
    ]
    for label, (values, errors) in compared.items():
        rows.append(Row("fragmentation", f"largest free block between sessions, {label}", values[len(values) // 2],
                        "bytes", f"median of {len(values)} sessions; min {values[0]}, max {values[-1]}; "
                        f"{errors} MemoryError lines"))
    return rows
