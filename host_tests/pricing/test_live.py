"""Live pricing from meter samples: splits, time quality, contracts, bad input, bounded memory."""
from __future__ import annotations

import datetime as dt
import json

from host_tests.data import ocpi_case
from host_tests.pricing.conftest import doc, ocpi
from sim import mpy


def utc(s: str) -> int:
    return int(dt.datetime.fromisoformat(s).replace(tzinfo=dt.timezone.utc).timestamp())


def vector_tariff(case: str) -> dict:
    return ocpi_case(case)[0]  # the OCPI tariff of a worked example (host_tests/data/ocpi)


def ramp(t0: int, wh0: int, seconds: int, every: int, wh_per_s: int, power: int, ma=None) -> list:
    return [[t0 + k, wh0 + k * wh_per_s, power, ma] for k in range(every, seconds + 1, every)]


def test_step_size_examples_from_samples(batch):
    step = doc(vector_tariff("step_size_switch_free"))
    t = utc("2024-01-08T19:40:00")
    free = ramp(t, 0, 720, 60, 2, 7200) + [[t + 720 + k, 1440, 0, None] for k in range(60, 1201, 60)]
    t1 = utc("2024-01-08T16:55:00")
    # one sample every 7 minutes: the 17:00 boundary falls inside an interval and must split it
    switch1 = [[t1 + 420, 840, 7200, None], [t1 + 600, 1200, 7200, None], [t1 + 720, 1200, 0, None]]
    t2 = utc("2024-01-08T16:35:00")
    switch2 = [[t2 + 2100, 4000, 7000, None]]
    res = batch([
        {"doc": step, "start": t, "samples": free},
        {"doc": step, "start": t1, "samples": switch1},
        {"doc": step, "start": t2, "samples": switch2},
    ])
    assert [(r["final"]["excl"], r["final"]["incl"]) for r in res] == [(73, 73), (55, 55), (130, 130)]
    lines = {(ln["dim"], ln["el"]): (ln["qty"], ln["billed"]) for ln in res[1]["final"]["lines"]}
    assert lines == {("TIME", 0): (300, 300), ("TIME", 1): (300, 300), ("PARKING_TIME", 1): (120, 900)}


def test_complex_tariff_with_current_and_weekday(batch):
    t = vector_tariff("complex_saturday_43A")
    sat = utc("2024-01-13T13:30:00")
    samples = ramp(sat, 0, 6840, 60, 3, 30000, 43000) + ramp(sat + 6840, 20520, 4260, 60, 0, 0, 0)
    mon = utc("2024-01-15T13:30:00")
    res = batch([{"doc": doc(t), "start": sat, "samples": samples},
                 {"doc": doc(t), "start": mon, "samples": [[mon + 6840, 20520, 30000, 43000]]},
                 {"doc": doc(t), "start": mon, "samples": [[mon + 6840, 20520, 11000, 16000]]}])
    assert (res[0]["final"]["excl"], res[0]["final"]["incl"]) == (1238, 1398)  # 12.375 / 13.975 half-up
    assert res[1]["final"]["excl"] == 250 + 400  # weekday, >= 32 A: 2.00/h, 114 min -> 120 min (10 min steps)
    assert res[2]["final"]["excl"] == 250 + 200  # below 32 A: 1.00/h, 15 min steps -> 120 min


def test_kwh_and_duration_thresholds_inside_one_interval(batch):
    tiers = doc(ocpi([
        {"price_components": [{"type": "ENERGY", "price": "0.20", "step_size": 1}], "restrictions": {"max_kwh": 1}},
        {"price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}]},
    ]))
    dur = doc(vector_tariff("max_duration_40min"))
    t = utc("2024-01-08T10:00:00")
    res = batch([{"doc": tiers, "start": t, "start_wh": 5000, "samples": [[t + 600, 8000, 18000, None]]},
                 {"doc": dur, "start": t, "samples": [[t + 2400, 4800, 7200, None]]}])
    e = res[0]["final"]
    assert e["excl"] == 100 and [(ln["el"], ln["qty"]) for ln in e["lines"]] == [(0, 1000), (1, 2000)]
    assert e["lines"][0]["to"] == t + 200  # energy crosses 1 kWh a third of the way in
    assert (res[1]["final"]["excl"], res[1]["final"]["incl"]) == (30, 36)


def test_local_time_across_a_dst_change(batch):
    night_day = doc(ocpi([
        {"price_components": [{"type": "TIME", "price": 1, "step_size": 1}],
         "restrictions": {"start_time": "00:00", "end_time": "06:00"}},
        {"price_components": [{"type": "TIME", "price": 2, "step_size": 1}]},
    ]), "Europe/Berlin")
    start = utc("2025-03-29T23:00:00")  # 00:00 CET; clocks go 02:00 -> 03:00; 06:00 CEST is 04:00 UTC
    autumn = utc("2025-10-25T22:00:00")  # 00:00 CEST; 03:00 -> 02:00; 06:00 CET is 05:00 UTC
    res = batch([{"doc": night_day, "start": start, "samples": [[start + 7 * 3600, 70000, 10000, None]]},
                 {"doc": night_day, "start": autumn, "samples": [[autumn + 8 * 3600, 80000, 10000, None]]}])
    assert res[0]["final"]["excl"] == 5 * 100 + 2 * 200
    assert res[1]["final"]["excl"] == 7 * 100 + 1 * 200


def test_unknown_time_prices_without_time_restrictions(batch):
    t = ocpi([
        {"price_components": [{"type": "ENERGY", "price": "0.10", "step_size": 1}],
         "restrictions": {"start_time": "00:00", "end_time": "23:59"}},
        {"price_components": [{"type": "ENERGY", "price": "0.30", "step_size": 1}],
         "restrictions": {"day_of_week": ["MONDAY"]}},
        {"price_components": [{"type": "ENERGY", "price": "0.50", "step_size": 1}], "restrictions": {"min_kwh": 0}},
    ])
    start = 1000  # the clock was never set
    res = batch([{"doc": doc(t), "start": start, "tq": "U", "samples": [[start + 3600, 10000, 10000, None]]},
                 {"doc": doc(t), "start": start, "tq": "S", "samples": [[start + 3600, 10000, 10000, None]]}])
    assert res[0]["final"]["excl"] == 500 and res[0]["final"]["flags"] == ["time-unsynced"]
    assert res[1]["final"]["excl"] == 100 and res[1]["final"]["flags"] == []


def test_contract_selects_its_tariff(batch):
    base = ocpi([{"price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}]}], id="STD")
    fleet = ocpi([{"price_components": [{"type": "ENERGY", "price": "0.25", "vat": 21, "step_size": 1}]}], id="FLEET")
    d = doc(base, contracts={"NL-ACME-C1": fleet, "NL-ACME-C2": fleet})
    assert d["contracts"] == {"NL-ACME-C1": "FLEET", "NL-ACME-C2": "FLEET"} and set(d["tariffs"]) == {"STD", "FLEET"}
    s = [[3600, 10000, 10000, None]]
    res = batch([{"doc": d, "start": 0, "samples": s, "contract": c} for c in ("NL-ACME-C1", "OTHER", None)])
    assert [(r["final"]["tariff"], r["final"]["excl"], r["final"]["incl"]) for r in res] == [
        ("FLEET", 250, 303), ("STD", 400, 400), ("STD", 400, 400)]


def test_running_cost_and_bounds(batch):
    t = vector_tariff("025kwh_min_price_1_2kwh")
    cap = vector_tariff("025kwh_start_max_price_50kwh")
    s = ramp(0, 0, 3600, 360, 5, 18000)  # 18 kWh in 10 samples
    big = ramp(1559556000, 0, 36000, 3600, 5, 18000)  # 180 kWh
    res = batch([{"doc": doc(t), "start": 0, "samples": s}, {"doc": doc(cap), "start": 1559556000, "samples": big}])
    r = res[0]["running"]
    assert r[0] == [50, 55]  # the minimum price applies from the start
    assert r == sorted(r) and r[-1] == [450, 495]
    assert r[-1] == [res[0]["final"]["excl"], res[0]["final"]["incl"]]
    assert res[1]["running"][-1] == [1000, 1100] and res[1]["final"]["bound"] == "max"


def test_bad_samples_are_rejected_and_change_nothing():
    d = doc(ocpi([{"price_components": [{"type": "ENERGY", "price": "0.40", "step_size": 1}]}]))
    got = mpy.run(f"""
import json
from billing.tariff import TariffSet
from billing.pricing import Pricer
s = TariffSet.from_doc(json.loads({json.dumps(d)!r}))
p = Pricer(s.select(), s.tz, 100, 1000)
p.add_sample(200, 2000, 5000)
out = []
for bad in ([150, 3000, 5000], [300, 1500, 5000], [300, 3000, 5000.0], [300, True, 5000], [300, 3000, None], [-1, 3000, 1]):
    try:
        p.add_sample(*bad)
        out.append("accepted")
    except ValueError as e:
        out.append(str(e))
out.append(list(p.running_cost()))
p.add_sample(300, 3000, 5000)
out.append(p.finish(300, 3000)["excl"])
try:
    p.add_sample(400, 4000, 1)
except ValueError as e:
    out.append(str(e))
for bad_tz in ("nonsense", 3):
    try:
        Pricer(s.select(), bad_tz, 0, 0)
    except ValueError as e:
        out.append(str(e))
emit(out)
""").value
    assert "accepted" not in got
    assert got[6] == [40, 40] and got[7] == 80
    assert "before previous" in got[0] and "went back" in got[1] and "finished" in got[8]
    assert len(got) == 11


def test_memory_stays_bounded_over_a_long_session():
    hourly = doc(ocpi([{"price_components": [{"type": "ENERGY", "price": f"0.{10 + h:02d}", "step_size": 1},
                                             {"type": "TIME", "price": "1", "step_size": 60}],
                        "restrictions": {"start_time": f"{h:02d}:00", "end_time": f"{(h + 1) % 24:02d}:00"}}
                       for h in range(24)]))
    got = mpy.run(f"""
import gc, json
from billing.tariff import TariffSet
from billing.pricing import Pricer
s = TariffSet.from_doc(json.loads({json.dumps(hourly)!r}))
p = Pricer(s.select(), s.tz, 1704067200, 0)
used = []
for k in range(1, 30001):
    p.add_sample(1704067200 + k * 30, k * 50, 6000)
    if k % 10000 == 0:
        p.running_cost()
        gc.collect()
        used.append(gc.mem_alloc())
r = p.finish(1704067200 + 30000 * 30, 1500000)
emit([used, len(r["lines"]), r["energy_wh"]])
""", heap="256k").value
    used, n_lines, wh = got
    assert n_lines == 48 and wh == 1500000  # 250 h: lines per (dimension, element), not per sample
    assert max(used) - min(used) < 2048, used
