"""Consecutive sessions on one charger with the uplink connected to the reference backend, for the
heap soak test and the ESP32-geometry benchmark: the firmware on an interpreter of your choice
(usually the 32-bit one with the ESP32's heap geometry, sim/esp32geom.py) at a given IDF budget.

The device prints micropython.mem_info() with every status line (EVC_HEAP_REPORT=1): "max free
sz" (the largest free block, in 16-byte blocks on a 32-bit port) and "mem: total=" (bytes ever
allocated: the garbage a session makes is its difference)."""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from evc.tariff import compile_doc
from sim import esp32geom as geom
from sim.backend import BackendProcess, register_key
from sim.charger import DEV, Charger, authlist_doc, flat_tariff, token

CARD = bytes.fromhex("04a1b2c3d4e5f6")
_BLOCK = 16  # bytes in a GC block on a 32-bit port
_SEAL_HEAP = re.compile(r"session: record \d+: .* heap=(\d+) ")
_RECORD = re.compile(r"session: record (\d+): ")
_MAX_FREE = re.compile(r"max free sz: (\d+)")


@dataclass
class Soak:
    sessions: int
    stored: int = 0
    free_after: dict[int, int] = field(default_factory=dict)  # session -> largest free block (bytes)
    allocated_after: dict[int, int] = field(default_factory=dict)  # session -> bytes allocated since boot
    heap_after_boot: int = 0  # live heap (after a collection) at the first status line
    heap_at_seal: list[int] = field(default_factory=list)  # live heap just before each signature
    peak_idf: int | None = None  # most bytes taken from the IDF budget at once
    memory_errors: int = 0
    output: str = ""

    @property
    def free_by_session(self) -> dict[int, int]:
        """Session -> the largest free block of the idle reports between its record and the next
        session's (the best one: a report taken while another task holds a buffer shows less)."""
        out: dict[int, int] = {}
        cur = 0
        for line in self.output.splitlines():
            m = _RECORD.search(line)
            if m:
                cur = int(m.group(1))
                continue
            m = _MAX_FREE.search(line)
            if m and cur:
                out[cur] = max(out.get(cur, 0), int(m.group(1)) * _BLOCK)
        return out

    def free_window(self, first: bool, size: int = 10) -> int:
        """Median largest free block over the first (or last) `size` sessions. Where a session's
        long-lived objects land moves that block by several KB from one session to the next, with
        no trend; a window's median shows whether fragmentation creeps, one session's value does not."""
        by = self.free_by_session
        keys = sorted(by)[:size] if first else sorted(by)[-size:]
        values = sorted(by[k] for k in keys)
        return values[len(values) // 2] if values else 0

    @property
    def garbage_per_session(self) -> int:
        first, last = min(self.allocated_after), max(self.allocated_after)
        return (self.allocated_after[last] - self.allocated_after[first]) // max(1, last - first)


def _stored(db_path: str) -> int:
    from sqlalchemy import func, select

    from backend.db import open_db
    from backend.models import Session

    sessions = open_db(db_path)
    with sessions() as db:
        n = db.scalar(select(func.count()).select_from(Session))
    sessions.kw["bind"].dispose()
    return n


def _idle_report(c: Charger, seq: int, reports: int = 3) -> tuple[int, int]:
    """(largest free block, bytes allocated since boot) once record seq is acknowledged: the best
    of a few reports (each after a collection, between other tasks' steps) and the last total."""
    c.wait_for(rf"status: .* seq={seq} pending=0 ", timeout=30, start=c.mark())
    best = total = 0
    for _ in range(reports):
        at = c.mark()
        total = int(c.wait_for(r"mem: total=(\d+)", timeout=30, start=at).group(1))
        best = max(best, int(c.wait_for(r"max free sz: (\d+)", timeout=30, start=at).group(1)))
    return best * _BLOCK, total


def run(work: Path, broker_url: str, sessions: int, budget: int | None, micropython: str | None = None,
        heap: str = geom.STOCK_HEAP, sample: tuple[int, ...] = (), env: dict[str, str] | None = None) -> Soak:
    """Boot one charger, run `sessions` card sessions, report the heap after the first, the last
    and each session in `sample`. budget: ESP32GEOM_IDF_HEAP for the device (None: unlimited);
    env: more of the device's environment (e.g. EVC_GC_THRESHOLD, boards/host/board.py)."""
    result = Soak(sessions)
    saved = os.environ.get("ESP32GEOM_IDF_HEAP")
    if budget is None:
        os.environ.pop("ESP32GEOM_IDF_HEAP", None)
    else:
        os.environ["ESP32GEOM_IDF_HEAP"] = str(budget)
    try:
        with Charger(work / "dev", "soak", broker=broker_url, config={"journal": {"checkpoint_s": 60}}) as c:
            c.micropython, c.heap = micropython, heap
            c.env = {"EVC_HEAP_REPORT": "1", **(env or {})}
            c.seed(tariff=compile_doc(flat_tariff()),
                   authlist=[authlist_doc([{"token": token(CARD), "status": "accepted"}])])
            pem = c.provision()
            db = str(work / "backend.db")
            register_key(db, DEV, pem)
            backend = BackendProcess(broker_url, db, env={"EVC_BACKEND_KEYS": str(c.backend_keys.folder)}).start()
            try:
                c.boot()
                c.wait_for(r"uplink: connected to ")
                result.heap_after_boot = int(c.wait_for(r"status: .* heap=(\d+)", timeout=30).group(1))
                for i in range(1, sessions + 1):
                    c.tap(CARD, r"session: started ")
                    time.sleep(0.3)
                    line = c.tap(CARD, rf"session: record {i}: card .*")
                    seal = _SEAL_HEAP.search(line.group(0))
                    if seal:
                        result.heap_at_seal.append(int(seal.group(1)))
                    if i in (1, sessions) or i in sample:
                        result.free_after[i], result.allocated_after[i] = _idle_report(c, i)
                result.stored = _stored(db)
            finally:
                c.stop()
                backend.stop()
        result.output = c.output()
    finally:
        if saved is None:
            os.environ.pop("ESP32GEOM_IDF_HEAP", None)
        else:
            os.environ["ESP32GEOM_IDF_HEAP"] = saved
    result.memory_errors = result.output.count("MemoryError")
    found = geom.peak(result.output)
    result.peak_idf = found[0] if found else None
    return result
