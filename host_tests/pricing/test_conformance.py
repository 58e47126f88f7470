"""The rules issue #19 found the engine breaking, one small session each, through both engine paths.

1. FLAT is judged per period, like every dimension: an element with a power restriction can
   charge its FLAT once the power is known, and a FLAT that becomes active later (min_duration,
   a later time of day) is charged then; once per session, the first period where an element with
   a FLAT component is active.
2. With TIME and PARKING_TIME both priced, step_size rounds only the parking total, whatever
   was priced last (charge -> park -> charge).
3. step_size applies to the exact session total: sub-Wh CDR volumes are summed, then rounded once.

Each case is priced by the live path (meter samples), the CDR path (price_periods) and the oracle.
"""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import pytest

from evc.tariff import compile_doc
from host_tests.pricing import oracle
from host_tests.pricing.conftest import ocpi
from sim import mpy

MP = Path(__file__).resolve().parent / "mp"
T = int(dt.datetime(2024, 1, 8, 10, 0, tzinfo=dt.timezone.utc).timestamp())  # a Monday, 10:00 UTC


def comp(dim, price, step=1, vat=None):
    c = {"type": dim, "price": Decimal(price), "step_size": step}
    if vat is not None:
        c["vat"] = Decimal(vat)
    return c


def el(*comps, **restrictions):
    e = {"price_components": list(comps)}
    if restrictions:
        e["restrictions"] = {k: (Decimal(v) if isinstance(v, str) and k.endswith(("kwh", "power", "current")) else v)
                             for k, v in restrictions.items()}
    return e


def live(samples):
    """samples: [[seconds after T, Wh so far, W, mA|None], ...] -> (meter samples, CDR periods in mWh / ms).

    One CDR period per sample interval: a case puts a sample wherever a restriction changes, as a
    CPO must start a period there (the live path splits by itself)."""
    out, periods, prev = [], [], (0, 0)
    for s, wh, w, ma in samples:
        out.append([T + s, wh, w, ma])
        charging = w > 0
        periods.append([T + prev[0], (wh - prev[1]) * 1000, (s - prev[0]) * 1000 if charging else 0,
                        0 if charging else (s - prev[0]) * 1000, w, w, ma, ma])
        prev = (s, wh)
    return out, periods


def price_all(tmp: Path, tariff, samples=None, periods=None):
    """(live, cdr, oracle) summaries [excl, incl, bound, flat element, {dim: [qty, billed]} in mWh / ms]."""
    if samples is not None:
        samples, periods = live(samples)
    job = {"doc": compile_doc(tariff), "start": T, "tq": "S", "periods": periods}
    if samples is not None:
        job.update(start_wh=0, parking_w=0, samples=samples)
    path = tmp / "job.jsonl"
    path.write_text(json.dumps(job) + "\n")
    got = mpy.run(f"import diffdrive\ndiffdrive.run({str(path)!r})", extra_path=[MP]).value
    ops = [oracle.Period(p[0], Decimal(p[1]).scaleb(-6), Decimal(p[2]).scaleb(-3), Decimal(p[3]).scaleb(-3),
                         None if p[4] is None else (Decimal(p[4]).scaleb(-3), Decimal(p[5]).scaleb(-3)),
                         None if p[6] is None else (Decimal(p[6]).scaleb(-3), Decimal(p[7]).scaleb(-3)))
           for p in periods]
    o = oracle.price(tariff, T, ops)
    dims = {d: [int(o["priced"][d] * k), int(o["billed"][d] * k)]
            for d, k in (("ENERGY", 1000000), ("TIME", 1000), ("PARKING_TIME", 1000)) if o["priced"][d]}
    return got.get("live"), got["cdr"], [o["excl"], o["incl"], o["bound"], o["flat"], dims]


@pytest.fixture
def agree(tmp_path):
    def check(tariff, **kw):
        lv, cdr, want = price_all(tmp_path, tariff, **kw)
        assert cdr == want
        if lv is not None:
            assert lv == want
        return want
    return check


def test_flat_of_a_power_restricted_element_is_charged_once_power_is_known(agree):
    t = ocpi([el(comp("FLAT", "1.00"), comp("ENERGY", "0.30"), min_power="11"),
              el(comp("FLAT", "0.50"), comp("ENERGY", "0.40"))])
    fast = agree(t, samples=[[1800, 11000, 22000, None], [3600, 22000, 22000, None]])
    slow = agree(t, samples=[[3600, 3700, 3700, None]])
    assert fast[:2] == [100 + 660, 100 + 660] and fast[3] == 0  # element 0's FLAT; the old engine took 0.50
    assert slow[:2] == [50 + 148, 50 + 148] and slow[3] == 1


def test_flat_that_becomes_active_later_is_charged_then_and_only_once(agree):
    later = ocpi([el(comp("FLAT", "2.00"), min_duration=3600), el(comp("FLAT", "3.00"), start_time="11:30"),
                  el(comp("TIME", "1.00"))])
    long = agree(later, samples=[[1800, 1000, 2000, None], [5400, 3000, 2000, None], [9000, 5000, 2000, None]])
    short = agree(later, samples=[[1800, 1000, 2000, None]])
    # 90 min: the duration element becomes active at 60 min (10:30, before 11:30): its FLAT, once
    assert long[:2] == [200 + 250, 200 + 250] and long[3] == 0
    assert short[:2] == [50, 50] and short[3] is None  # never active: no FLAT (the old engine: none either)
    at_noon = ocpi([el(comp("FLAT", "3.00"), start_time="11:30"), el(comp("TIME", "1.00"))])
    # (a CDR must start a period at 11:30, where the price changes: the live path splits there itself)
    assert agree(at_noon, samples=[[5400, 3000, 2000, None], [7200, 4000, 2000, None]])[:2] == [300 + 200] * 2


def test_time_step_is_not_applied_when_parking_is_priced_charge_park_charge(agree):
    t = ocpi([el(comp("TIME", "1.20", 900), comp("PARKING_TIME", "2.40", 600))])
    # charge 10 min, park 7 min, charge 6 min: TIME is priced last, but parking was priced too: only
    # the parking total is rounded (the old engine rounded 16 min of TIME to 30 and left 7 min parking)
    got = agree(t, samples=[[600, 1000, 6000, None], [1020, 1000, 0, None], [1380, 1600, 6000, None]])
    assert got[4] == {"TIME": [960000, 960000], "PARKING_TIME": [420000, 600000]}
    assert got[:2] == [32 + 40, 32 + 40]  # 16 min at 1.20/h + 10 min at 2.40/h


def test_sub_wh_volumes_are_summed_before_the_step(agree):
    t = ocpi([el(comp("ENERGY", "0.30", 1000))])
    periods = [[T + 60 * i, 400400, 60000, 0, None, None, None, None] for i in range(5)]  # 0.4004 kWh each
    got = agree(t, periods=periods)
    assert got[4] == {"ENERGY": [2002000, 3000000]} and got[:2] == [90, 90]  # 2.002 kWh -> 3 kWh
    tiny = [[T + 60 * i, 400, 60000, 0, None, None, None, None] for i in range(5)]  # 0.4 Wh each
    assert agree(ocpi([el(comp("ENERGY", "0.30", 1))]), periods=tiny)[4] == {"ENERGY": [2000, 2000]}


@pytest.mark.parametrize("price,expected", [("5.00", [500, 100]), ("0.50", [50, 100])])
def test_the_start_fee_before_the_first_interval_is_the_one_of_an_empty_session(batch, price, expected):
    # Before any interval the FLAT is judged with power unknown (what a session stopped at once
    # pays); the first interval's power can select another element's FLAT.
    t = compile_doc(ocpi([el(comp("FLAT", "1.00"), max_power="11"), el(comp("FLAT", price))]))
    res = batch([{"doc": t, "start": T, "samples": [[T + 600, 1000, 6000, None]]},
                 {"doc": t, "start": T, "samples": []}])
    assert [r[0] for r in res[0]["running"]] == expected
    assert res[1]["final"]["excl"] == int(Decimal(price) * 100)  # stopped at once: the unrestricted FLAT
