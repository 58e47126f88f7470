"""Property tests: generated on CPython with hypothesis, evaluated in batches under MicroPython.

- results are identical whichever sampling boundaries the meter produced (and so splitting a
  period where no restriction changes leaves the total unchanged);
- cost never decreases as energy and time grow, from the first metered interval on (with
  step_size 1: OCPI's step rule can make the total fall when a session moves on to a cheaper
  element; and before the first interval the FLAT is the one of a session stopped at once, with
  power unknown, which the first interval's power can replace: see docs/pricing.md);
- min_price / max_price bounds hold for the running cost and the final cost.
"""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evc.tariff import compile_doc

BATCH = 25
TZS = ["UTC0", "CET-1CEST,M3.5.0,M10.5.0/3", "EST5EDT,M3.2.0,M11.1.0", "AEST-10AEDT,M10.1.0,M4.1.0/3"]
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]


def dec(n: int, digits: int) -> Decimal:
    return Decimal(n).scaleb(-digits)


@st.composite
def band(draw, lo_key, hi_key, top, digits):
    a, b = sorted(draw(st.lists(st.integers(0, top), min_size=2, max_size=2, unique=True)))
    kind = draw(st.sampled_from(["lo", "hi", "both"]))
    out = {}
    if kind != "hi":
        out[lo_key] = dec(a, digits)
    if kind != "lo":
        out[hi_key] = dec(b, digits)
    return out


@st.composite
def restrictions(draw, timed: bool):
    r = {}
    if timed and draw(st.booleans()):
        a, b = draw(st.lists(st.integers(0, 47), min_size=2, max_size=2, unique=True))
        r["start_time"] = f"{a // 2:02d}:{a % 2 * 30:02d}"
        r["end_time"] = f"{b // 2:02d}:{b % 2 * 30:02d}"
    if timed and draw(st.integers(0, 4)) == 0:
        r["day_of_week"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=6, unique=True))
    if timed and draw(st.integers(0, 5)) == 0:
        r["start_date"] = draw(st.sampled_from(["2024-06-01", "2025-01-01", None]))
        r["end_date"] = draw(st.sampled_from(["2025-06-01", "2026-06-01", None]))
        if r["start_date"] is None and r["end_date"] is None:
            r.pop("start_date"), r.pop("end_date")
    if timed and draw(st.integers(0, 2)) == 0:
        r.update(draw(band("min_kwh", "max_kwh", 30000, 3)))
    if timed and draw(st.integers(0, 3)) == 0:
        r.update(draw(band("min_duration", "max_duration", 20000, 0)))
    if draw(st.integers(0, 2)) == 0:
        r.update(draw(band("min_power", "max_power", 44, 0)))
    if draw(st.integers(0, 3)) == 0:
        r.update(draw(band("min_current", "max_current", 64, 0)))
    return r


@st.composite
def tariffs(draw, step1: bool, timed: bool = True):
    elements = []
    for _ in range(draw(st.integers(1, 5))):
        dims = draw(st.lists(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]), min_size=1, max_size=4, unique=True))
        comps = []
        for d in dims:
            step = 1 if step1 else draw(st.sampled_from([1, 1, 60, 300, 900, 1800] if d != "ENERGY" else [1, 1, 100, 1000]))
            c = {"type": d, "price": dec(draw(st.integers(0, 50000)), 4), "step_size": step}
            vat = draw(st.sampled_from([None, 0, Decimal("5.2"), 20]))
            if vat is not None:
                c["vat"] = vat
            comps.append(c)
        el = {"price_components": comps}
        r = draw(restrictions(timed))
        if r:
            el["restrictions"] = r
        elements.append(el)
    t = {"id": "P", "currency": "EUR", "elements": elements}
    if draw(st.booleans()):
        lo = draw(st.integers(0, 2000))
        t["min_price"] = {"excl_vat": dec(lo, 2), "incl_vat": dec(lo + draw(st.integers(0, 400)), 2)}
    if draw(st.booleans()):
        hi = draw(st.integers(2500, 8000))
        t["max_price"] = {"excl_vat": dec(hi, 2), "incl_vat": dec(hi + draw(st.integers(0, 2000)), 2)}
    return t


@st.composite
def sessions(draw, step1: bool = False, timed: bool = True):
    tariff = draw(tariffs(step1, timed))
    tz = draw(st.sampled_from(TZS))
    start = draw(st.integers(1704067200, 1798761600))
    segs = draw(st.lists(st.tuples(st.integers(1, 14400), st.integers(0, 12)), min_size=1, max_size=6))
    total = sum(s for s, _ in segs)
    cuts = draw(st.lists(st.integers(1, total), max_size=12))
    tq = draw(st.sampled_from(["S", "S", "I", "U"]))
    return {"doc": compile_doc(tariff, None, 1, tz), "start": start, "segs": segs, "cuts": cuts, "tq": tq,
            "tariff": tariff}


def profile_samples(start: int, segs, points) -> list:
    """Meter samples at the given offsets of a piecewise-constant-power session (exact integer Wh)."""
    out = []
    for off in sorted(set(points)):
        t, wh = 0, 0
        for dur, rate in segs:
            if off <= t + dur:
                wh += (off - t) * rate
                out.append([start + off, wh, rate * 3600, rate * 5217])
                break
            t += dur
            wh += dur * rate
    return out


def seg_ends(segs) -> list[int]:
    ends, t = [], 0
    for dur, _ in segs:
        t += dur
        ends.append(t)
    return ends


def _cases(examples):
    cases = []
    for ex in examples:
        ends = seg_ends(ex["segs"])
        for points in (ends, ends + ex["cuts"]):
            cases.append({"doc": ex["doc"], "start": ex["start"], "tq": ex["tq"],
                          "samples": profile_samples(ex["start"], ex["segs"], points)})
    return cases


def _summary(final: dict):
    return final["excl"], final["incl"], sorted((ln["dim"], ln["el"], ln["qty"], ln["billed"]) for ln in final["lines"])


def _bounds(doc):
    t = doc["tariffs"][doc["default"]]

    def cents(u):
        return (u + 5000) // 10000  # 1e-6 major -> cents, half-up

    lo = [cents(v) for v in t.get("min", [0, 0])]
    hi = [cents(v) for v in t.get("max", [10 ** 12, 10 ** 12])]
    return lo, hi


PROFILE = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@PROFILE
@given(st.lists(sessions(), min_size=BATCH, max_size=BATCH))
def test_sampling_boundaries_do_not_change_the_price(batch, examples):
    res = batch(_cases(examples))
    for ex, a, b in zip(examples, res[::2], res[1::2]):
        assert "error" not in a and "error" not in b, (a, b)
        assert _summary(a["final"]) == _summary(b["final"]), ex
        lo, hi = _bounds(ex["doc"])
        for run in (a, b):
            for excl, incl in run["running"] + [[run["final"]["excl"], run["final"]["incl"]]]:
                assert lo[0] <= excl <= hi[0] and lo[1] <= incl <= hi[1], ex


@PROFILE
@given(st.lists(sessions(step1=True), min_size=BATCH, max_size=BATCH))
def test_cost_never_decreases_as_the_session_grows(batch, examples):
    res = batch(_cases(examples))
    for ex, run in zip(examples * 2, res[1::2] + res[::2]):
        r = run["running"][1:]  # from the first sample: before it the FLAT is provisional
        assert all(x[0] <= y[0] and x[1] <= y[1] for x, y in zip(r, r[1:])), (ex, r)


@PROFILE
@given(st.lists(sessions(timed=False), min_size=BATCH, max_size=BATCH), st.data())
def test_splitting_a_cdr_period_where_nothing_changes_keeps_the_total(batch, examples, data):
    # Without time, energy or duration restrictions nothing changes inside a constant-power period.
    cases = []
    for ex in examples:
        periods, t = [], ex["start"]
        for dur, rate in ex["segs"]:
            w, ma = rate * 3600, rate * 5217
            ts, ps = (dur, 0) if rate else (0, dur)
            periods.append([t, dur * rate, ts, ps, w, w, ma, ma])
            t += dur
        i = data.draw(st.integers(0, len(periods) - 1))
        p = periods[i]
        dur = p[2] + p[3]
        cut = data.draw(st.integers(0, dur))
        rate = p[1] // dur
        first = [p[0], cut * rate, cut if p[2] else 0, 0 if p[2] else cut, *p[4:]]
        second = [p[0] + cut, (dur - cut) * rate, dur - cut if p[2] else 0, 0 if p[2] else dur - cut, *p[4:]]
        split = periods[:i] + [first, second] + periods[i + 1:]
        for ps in (periods, split):
            cases.append({"doc": ex["doc"], "start": ex["start"], "tq": ex["tq"], "periods": ps})
    res = batch(cases)
    for ex, a, b in zip(examples, res[::2], res[1::2]):
        assert (a["excl"], a["incl"]) == (b["excl"], b["incl"]), ex


@pytest.mark.exhaustive
@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(sessions(), min_size=BATCH, max_size=BATCH))
def test_sampling_boundaries_exhaustive(batch, examples):
    test_sampling_boundaries_do_not_change_the_price.hypothesis.inner_test(batch, examples)
