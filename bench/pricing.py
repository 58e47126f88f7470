"""Pricing: a 500-sample session against a 48-element hourly tariff, under the MicroPython port."""
from __future__ import annotations

import json

from bench.common import Row, mpy
from evc.tariff import compile_doc

TITLE = "Pricing (firmware/billing/pricing.py under MicroPython)"

WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]
WEEKEND = ["SATURDAY", "SUNDAY"]


def hourly_tariff() -> dict:
    """48 elements: one per hour for weekdays and one per hour for weekends, ENERGY + TIME each."""
    elements = []
    for days, base in ((WEEKDAYS, 30), (WEEKEND, 20)):
        for h in range(24):
            elements.append({
                "price_components": [{"type": "ENERGY", "price": f"0.{base + h % 7:02d}5", "vat": 21, "step_size": 1},
                                     {"type": "TIME", "price": "0.60", "vat": 21, "step_size": 60}],
                "restrictions": {"start_time": f"{h:02d}:00", "end_time": f"{(h + 1) % 24:02d}:00", "day_of_week": days},
            })
    return {"id": "HOURLY48", "currency": "EUR", "elements": elements}


CODE = """
import gc, json, time
from billing.tariff import TariffSet
from billing.pricing import Pricer
DOC = json.loads(DOC_JSON)
gc.collect()
m0 = gc.mem_alloc()
s = TariffSet.from_doc(DOC)
gc.collect()
tariff_bytes = gc.mem_alloc() - m0
del DOC
gc.collect()
start = 1704462000  # Friday 2024-01-05 14:40 CET: runs into the night and the weekend
gc.collect()
base = gc.mem_alloc()
gc.disable()
t0 = time.ticks_us()
p = Pricer(s.select(), s.tz, start, 0)
for k in range(1, 501):  # one reading a minute, 11 kW
    p.add_sample(start + 60 * k, 183 * k, 11000, 16000)
    p.running_cost()
r = p.finish(start + 60 * 500, 183 * 500)
t1 = time.ticks_us()
churn = gc.mem_alloc() - base
gc.enable()
del p, r
gc.collect()
m1 = gc.mem_alloc()
t2 = time.ticks_us()
q = Pricer(s.select(), s.tz, start, 0)
for k in range(1, 501):
    q.add_sample(start + 60 * k, 183 * k, 11000, 16000)
t3 = time.ticks_us()
r = q.finish(start + 60 * 500, 183 * 500)
gc.collect()
retained = gc.mem_alloc() - m1
emit({"total_us": time.ticks_diff(t1, t0), "adds_only_us": time.ticks_diff(t3, t2), "churn": churn,
      "retained": retained, "tariff_bytes": tariff_bytes, "lines": len(r["lines"]), "excl": r["excl"]})
"""


SMALL = """
import gc, json
from billing.tariff import TariffSet
from billing.pricing import Pricer
s = TariffSet.from_doc(json.loads(DOC_JSON))
del DOC_JSON
start = 1704462000
p = Pricer(s.select(), s.tz, start, 0)
for k in range(1, 501):
    p.add_sample(start + 60 * k, 183 * k, 11000, 16000)
    p.running_cost()
r = p.finish(start + 60 * 500, 183 * 500)
emit(r["excl"])
"""


def _smallest_heap(code: str) -> int:
    lo, hi = 8 * 1024, 256 * 1024  # fails at lo, works at hi
    while hi - lo > 1024:
        mid = (lo + hi) // 2
        ok = mpy.run(code, heap=mid, check=False).returncode == 0
        lo, hi = (lo, mid) if ok else (mid, hi)
    return hi


def run() -> list[Row]:
    doc = compile_doc(hourly_tariff(), None, 1, "CET-1CEST,M3.5.0,M10.5.0/3")
    b = "pricing"
    code = f"DOC_JSON = {json.dumps(json.dumps(doc))}\n" + CODE
    res = mpy.run(code, heap="4m").value
    best = min([res["total_us"]] + [mpy.run(code, heap="4m").value["total_us"] for _ in range(2)])
    smallest = _smallest_heap(f"DOC_JSON = {json.dumps(json.dumps(doc))}\n" + SMALL)
    return [
        Row(b, "500 samples, add_sample + running_cost each, finish", round(best / 1000, 2), "ms",
            f"48-element hourly tariff, CET/CEST rule; best of 3; {res['lines']} lines"),
        Row(b, "per sample (add_sample + running_cost)", round(best / 500), "µs", "unix port on this PC, not an ESP32"),
        Row(b, "500 samples, add_sample only, finish", round(res["adds_only_us"] / 1000, 2), "ms", "running_cost not called"),
        Row(b, "smallest heap that runs it", smallest, "bytes",
            "-X heapsize bisection; includes the modules compiled from source (frozen .mpy on an ESP32)"),
        Row(b, "heap allocated per sample (GC off)", round(res["churn"] / 500), "bytes", "garbage the collector reclaims"),
        Row(b, "heap retained by the finished session", res["retained"], "bytes", "Pricer state + finish() result after 500 samples"),
        Row(b, "heap of the parsed 48-element tariff", res["tariff_bytes"], "bytes", "TariffSet.from_doc"),
    ]
