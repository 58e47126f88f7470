"""Generated tariffs and sessions for the differential tests (host_tests/pricing/test_differential.py).

Two kinds of case, both priced by the oracle (oracle.py) and by the firmware engine:

- live: a session as the charger meters it (whole Wh, whole seconds, power and current per
  interval, charge / park / charge), fed sample by sample into the Pricer; the same session as a
  CDR goes to price_periods and to the oracle. The CDR is what a CPO would send: the metered
  intervals split wherever a restriction of the tariff can change its verdict (local times of day,
  midnight, UTC offset changes, session durations, kWh thresholds), with energy inside an interval
  taken as linear in time, Wh rounded down at a time split, a kWh split at the first whole second
  the threshold is reached (docs/pricing.md, Live pricing). Splitting where nothing changes
  changes nothing, so the CDR may split more often than the engine does.
- cdr: charging periods straight from a CDR, with OCPI decimals: sub-Wh energies (kWh to 6
  decimals), hours to 4 decimals (OCPI numbers have 4), power and current as min/max pairs or
  absent; only price_periods and the oracle price these.

Tariffs use every dimension, step sizes, VAT absent and present, every restriction (start/end
time incl. wrapping and 00:00, date, day_of_week, min/max kWh, current, power, duration,
reservation), min/max price with and without incl_vat. Zones: UTC and IANA zones with DST
(including 30-minute DST and a change at 24:00), sessions placed around their changes.
"""
from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from functools import lru_cache
from zoneinfo import ZoneInfo

from host_tests.pricing.oracle import Period

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Europe/London",
         "America/St_Johns", "Australia/Lord_Howe", "Pacific/Chatham", "America/Santiago", "Asia/Kolkata"]
CURRENCIES = [("EUR", 2)] * 8 + [("JPY", 0), ("KWD", 3)]
DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
T0 = int(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc).timestamp())
T1 = int(dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp())


def dec(n: int, digits: int) -> Decimal:
    return Decimal(n).scaleb(-digits)


# ---------------------------------------------------------------------------- time zones

def _zone(name: str):
    return dt.timezone.utc if name == "UTC" else ZoneInfo(name)


def offset(name: str, t: int) -> int:
    return int(dt.datetime.fromtimestamp(t, _zone(name)).utcoffset().total_seconds())


@lru_cache(maxsize=None)
def transitions(name: str) -> tuple[int, ...]:
    """UTC instants in 2023..2027 at which the zone's offset changes (the first second of the new one)."""
    if name == "UTC":
        return ()
    out = []
    t = T0 - 366 * 86400
    prev = offset(name, t)
    while t < T1 + 86400:
        nxt = t + 3600
        off = offset(name, nxt)
        if off != prev:
            lo, hi = t, nxt  # offset(lo) == prev, offset(hi) == off
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(name, mid) == prev:
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
            prev = off
        t = nxt
    return tuple(out)


# ---------------------------------------------------------------------------- tariffs

def _price(rng: random.Random) -> Decimal:
    r = rng.random()
    if r < 0.1:
        return Decimal(0)
    if r < 0.2:
        return dec(rng.randint(1, 999999), 6)
    return dec(rng.randint(1, 99999), 4)


def _band(rng, lo_key, hi_key, top: int, digits: int) -> dict:
    a, b = sorted(rng.sample(range(top + 1), 2))
    kind = rng.choice(["lo", "hi", "both"])
    out = {}
    if kind != "hi":
        out[lo_key] = dec(a, digits) if digits else a
    if kind != "lo":
        out[hi_key] = dec(b, digits) if digits else b
    return out


def _hhmm(m: int) -> str:
    return f"{m // 60:02d}:{m % 60:02d}"


def _restrictions(rng: random.Random, local_start: dt.datetime, span: int) -> dict:
    r: dict = {}
    if rng.random() < 0.35:
        grid = rng.choice([60, 30, 15, 1])
        a, b = rng.sample(range(0, 1440, grid), 2)
        kind = rng.random()
        if kind < 0.15:
            r["start_time"] = _hhmm(a)
        elif kind < 0.3:
            r["end_time"] = _hhmm(b)
        else:
            r["start_time"], r["end_time"] = _hhmm(a), _hhmm(b)
        if rng.random() < 0.1:
            r["end_time"] = "00:00"
            if r.get("start_time") == "00:00":
                r.pop("start_time")
    if rng.random() < 0.12:
        d0 = local_start.date() + dt.timedelta(days=rng.randint(-2, 2))
        d1 = d0 + dt.timedelta(days=rng.randint(1, 3))
        kind = rng.choice(["lo", "hi", "both"])
        if kind != "hi":
            r["start_date"] = d0.isoformat()
        if kind != "lo":
            r["end_date"] = d1.isoformat()
    if rng.random() < 0.15:
        r["day_of_week"] = rng.sample(DAYS, rng.randint(1, 6))
    if rng.random() < 0.25:
        r.update(_band(rng, "min_kwh", "max_kwh", 40000, 3))
    if rng.random() < 0.2:
        r.update(_band(rng, "min_duration", "max_duration", max(span, 2), 0))
    if rng.random() < 0.2:
        r.update(_band(rng, "min_power", "max_power", 50000, 3))
    if rng.random() < 0.15:
        r.update(_band(rng, "min_current", "max_current", 80000, 3))
    return r


def gen_tariff(rng: random.Random, start: int, zone: str, span: int) -> dict:
    """An OCPI 2.2.1 Tariff object (numbers as Decimal) for a session starting at start."""
    local_start = dt.datetime.fromtimestamp(start, _zone(zone))
    currency, _ = rng.choice(CURRENCIES)
    elements = []
    for _ in range(rng.randint(1, 6)):
        dims = rng.sample(["ENERGY", "TIME", "PARKING_TIME", "FLAT"], rng.randint(1, 4))
        comps = []
        for d in dims:
            if d == "ENERGY":
                step = rng.choice([1, 1, 1, 10, 100, 250, 500, 1000])
            elif d == "FLAT":
                step = rng.choice([1, 0])
            else:
                step = rng.choice([1, 1, 1, 60, 300, 600, 900, 1800, 3600])
            c = {"type": d, "price": _price(rng), "step_size": step}
            vat = rng.choice([None, None, 0, Decimal("5.2"), 20, 21, Decimal("7.75")])
            if vat is not None:
                c["vat"] = vat
            comps.append(c)
        el: dict = {"price_components": comps}
        r = _restrictions(rng, local_start, span)
        if rng.random() < 0.03:
            r["reservation"] = rng.choice(["RESERVATION", "RESERVATION_EXPIRES"])
        if r:
            el["restrictions"] = r
        elements.append(el)
    if all(el.get("restrictions", {}).get("reservation") for el in elements):
        elements[-1]["restrictions"].pop("reservation")
    t: dict = {"country_code": "DE", "party_id": "TST", "id": "D", "currency": currency, "elements": elements}
    lo = hi = None
    if rng.random() < 0.3:
        e = rng.randint(0, 2000)
        lo = [e, e + rng.randint(0, 500) if rng.random() < 0.6 else None]
        t["min_price"] = {"excl_vat": dec(lo[0], 2)}
        if lo[1] is not None:
            t["min_price"]["incl_vat"] = dec(lo[1], 2)
    if rng.random() < 0.3:
        e = rng.randint(max(lo[0], lo[1] or 0) if lo else 0, 6000)
        hi = [e, e + rng.randint(0, 1500) if rng.random() < 0.6 else None]
        t["max_price"] = {"excl_vat": dec(hi[0], 2)}
        if hi[1] is not None:
            t["max_price"]["incl_vat"] = dec(hi[1], 2)
    return t


def minor_digits(tariff: dict) -> int:
    return dict(CURRENCIES)[tariff["currency"]]


def kept_elements(tariff: dict) -> list[int]:
    """OCPI element index of each element the device document keeps (reservation ones are dropped)."""
    return [i for i, el in enumerate(tariff["elements"]) if not (el.get("restrictions") or {}).get("reservation")]


# ---------------------------------------------------------------------------- sessions

def _start(rng: random.Random, zone: str) -> int:
    tr = transitions(zone)
    if tr and rng.random() < 0.6:
        return rng.choice(tr) - rng.randint(-3 * 3600, 10 * 3600)
    return rng.randint(T0, T1 - 10 * 86400)


def gen_samples(rng: random.Random, start: int, start_wh: int) -> tuple[list, int]:
    """Meter samples [t, wh, power_w, current_ma|None] of a charge / park / charge session."""
    parking_w = rng.choice([0, 0, 0, 50, 500])
    phases = rng.choice([["c"], ["c", "p"], ["c", "p", "c"], ["p", "c"], ["c", "p", "c", "p"], ["p"], ["c", "c"]])
    long = rng.random() < 0.25
    t, wh = start, start_wh
    samples = []
    for ph in phases:
        for _ in range(rng.randint(1, 5)):
            dt_ = rng.choice([0, 1, 7, 59, 60, 301, 599, 900, 1799, 3600, 5400] + ([14400, 30000] if long else []))
            if ph == "c":
                p = rng.randint(parking_w + 1, 60000)
                dwh = p * dt_ // 3600 + rng.choice([0, 0, 1, 3])
                ma = rng.choice([None, p * 1000 // 690, rng.randint(0, 90000)])
            else:
                p = rng.randint(0, parking_w)
                dwh = rng.choice([0, 0, 0, 1])
                ma = rng.choice([None, 0])
            t += dt_
            wh += dwh
            samples.append([t, wh, p, ma])
    if rng.random() < 0.02:
        samples = []  # stopped at once: one empty period
    return samples, parking_w


def _bounds(tariff: dict) -> tuple[set, set, set]:
    tod, dur, kwh = {0}, set(), set()
    for el in tariff["elements"]:
        r = el.get("restrictions") or {}
        for k in ("start_time", "end_time"):
            if r.get(k) is not None:
                h, m = r[k].split(":")
                tod.add((int(h) * 60 + int(m)) * 60)
        for k in ("min_duration", "max_duration"):
            if r.get(k) is not None:
                dur.add(int(r[k]))
        for k in ("min_kwh", "max_kwh"):
            if r.get(k) is not None:
                kwh.add(int(Decimal(r[k]) * 1000))
    return tod, dur, kwh


def split(tariff: dict, zone: str, start: int, start_wh: int, samples: list, parking_w: int) -> list[list]:
    """The session's CDR periods [start, wh, time_s, parking_s, power_w, current_ma] (see the module doc)."""
    tod, dur, kwh = _bounds(tariff)
    trans = transitions(zone)
    periods = []
    t_a, wh_a = start, start_wh
    for t_b, wh_b, p, ma in samples:
        p = max(p, 0)
        span_t, span_wh = t_b - t_a, wh_b - wh_a
        times = {start + d for d in dur if t_a < start + d < t_b}
        cuts = [c for c in trans if t_a < c < t_b]
        times.update(cuts)
        edges = [t_a] + cuts + [t_b]
        for u, v in zip(edges, edges[1:]):
            off = offset(zone, u)
            for s in tod:
                x = u + (s - (u + off)) % 86400
                while x < v:
                    if x > t_a:
                        times.add(x)
                    x += 86400
        points = {(x, wh_a + span_wh * (x - t_a) // span_t) for x in times}
        for b in kwh:
            w = start_wh + b
            if wh_a < w < wh_b:
                x = t_a - (-(w - wh_a) * span_t // span_wh)
                points.add((x, w))
        seq = [(t_a, wh_a)] + sorted(points) + [(t_b, wh_b)]
        for (x0, w0), (x1, w1) in zip(seq, seq[1:]):
            if (x0, w0) == (x1, w1):
                continue
            charging = p > parking_w
            periods.append([x0, w1 - w0, x1 - x0 if charging else 0, 0 if charging else x1 - x0, p, ma])
        t_a, wh_a = t_b, wh_b
    return periods


def live_case(rng: random.Random) -> dict:
    zone = rng.choice(ZONES)
    start = _start(rng, zone)
    start_wh = rng.choice([0, rng.randint(0, 10 ** 8)])
    samples, parking_w = gen_samples(rng, start, start_wh)
    span = samples[-1][0] - start if samples else 0
    tariff = gen_tariff(rng, start, zone, span)
    tq = rng.choice(["S"] * 8 + ["I", "U"])
    periods = split(tariff, zone, start, start_wh, samples, parking_w)
    if not periods:
        periods = [[start, 0, 0, 0, None, None]]  # a CDR has at least one period
    return {"kind": "live", "zone": zone, "tariff": tariff, "start": start, "start_wh": start_wh,
            "samples": samples, "parking_w": parking_w, "tq": tq,
            "engine_periods": [[x, wh * 1000, ts * 1000, ps * 1000, p, p, ma, ma] for x, wh, ts, ps, p, ma in periods],
            "oracle_periods": [Period(x, dec(wh, 3), Decimal(ts), Decimal(ps),
                                      None if p is None else (dec(p, 3),) * 2,
                                      None if ma is None else (dec(ma, 3),) * 2)
                               for x, wh, ts, ps, p, ma in periods]}


def _band_value(rng, top: int):
    if rng.random() < 0.3:
        return None
    a = rng.randint(0, top)
    b = a if rng.random() < 0.5 else rng.randint(a, top)
    return a, b


def cdr_case(rng: random.Random) -> dict:
    zone = rng.choice(ZONES)
    start = _start(rng, zone)
    t = start
    eng, orc = [], []
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice(["c", "c", "p", "cp"])
        r = rng.random()
        if r < 0.4:
            mwh = rng.randint(0, 999)  # sub-Wh
        elif r < 0.8:
            mwh = rng.randint(0, 20000000)
        else:
            mwh = rng.randint(0, 2000) * 1000  # whole Wh
        if kind == "p":
            mwh = rng.choice([0, 0, mwh % 50])
        hours = [dec(rng.randint(0, 20000), 4), dec(rng.randint(0, 20000), 4)]
        if kind == "c":
            hours[1] = Decimal(0)
        elif kind == "p":
            hours[0] = Decimal(0)
        w = _band_value(rng, 60000)
        ma = _band_value(rng, 90000)
        eng.append([t, mwh, int(hours[0] * 3600000), int(hours[1] * 3600000),
                    *(w or (None, None)), *(ma or (None, None))])
        orc.append(Period(t, dec(mwh, 6), hours[0] * 3600, hours[1] * 3600,
                          None if w is None else (dec(w[0], 3), dec(w[1], 3)),
                          None if ma is None else (dec(ma[0], 3), dec(ma[1], 3))))
        t += int((hours[0] + hours[1]) * 3600) + rng.choice([0, 0, 0, 1, 120])
    tariff = gen_tariff(rng, start, zone, t - start)
    return {"kind": "cdr", "zone": zone, "tariff": tariff, "start": start, "tq": rng.choice(["S"] * 9 + ["U"]),
            "engine_periods": eng, "oracle_periods": orc}


def generate(seed: int, n: int) -> list[dict]:
    """n cases: about 70 % live sessions, 30 % CDR periods with OCPI decimals."""
    rng = random.Random(seed)
    return [live_case(rng) if rng.random() < 0.7 else cdr_case(rng) for _ in range(n)]
