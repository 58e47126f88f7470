"""An independent OCPI 2.2.1 pricer, the oracle of the differential tests (CPython, exact Decimal).

Written from the specification text (mod_tariffs, mod_cdrs, with the errata) and the choices
docs/pricing.md documents where the text leaves a point open. It shares no code with
firmware/billing or evc/: it reads the OCPI Tariff object itself (numbers as Decimal or str),
evaluates local time with CPython's zoneinfo, and prices CDR charging periods. Quantities are
exact Decimals (kWh, seconds); money is summed in units of 1/3600 of the major unit so that
"price per hour x seconds" stays exact; the one rounding, half-up to minor units, happens at the end.
Every Decimal operation traps Inexact: a result that is not exact is an error, never a rounding.

Rules, each with the sentence it follows:

- "When the list of Tariff Elements contains more than one Element with the same Tariff Dimension
  (ENERGY/FLAT/TIME etc.), than the first Tariff Element with that Dimension in the list with
  matching Tariff Restrictions will be used." -> per period and per dimension, the first element
  that has a component of that dimension and whose restrictions all hold at the period's start.
- "These restrictions are not for the entire Charging Session. They only describe if and when a
  TariffElement becomes active or inactive during a Charging Session." -> FLAT too is judged per
  period: charged once, in the first period where an element with a FLAT component is active.
- "step_size SHALL only be taken into account once per session for the TariffDimensionType ENERGY
  and once for PARKING_TIME and TIME combined." / "The step_size uses the total amount of a
  certain unit used during a session ... the step_size of the last relevant PriceComponent is
  used." / "In the cases that TIME and PARKING_TIME Tariff Elements are both used, step_size is
  only taken into account for the total parking duration."
- "vat: ... If omitted, no VAT is applicable."
- min_price / max_price: "The total cost of a Charging Session excluding VAT can never be lower
  than the min_price excluding VAT. The total cost ... including VAT can never be lower than the
  min_price including VAT." (max_price alike).

Choices where the text is open (docs/pricing.md): start/end times and dates, kWh and durations
are lower bound inclusive, upper exclusive; an end_time of 00:00 is the end of the day; a
start_time after the end_time wraps past midnight; min_power/min_current are judged on the
period's lowest value and max_* on its highest, and an unknown value satisfies no restriction on
it; a period with zero volume of a dimension prices nothing there and is not the "last" period
for step_size; volume no element prices is free and does not count towards step_size; a bound
without incl_vat bounds the incl. VAT total with the same amount; reservation elements never apply
to a charging session; with the time unknown, elements with time, date or weekday restrictions do
not apply.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from fractions import Fraction
from zoneinfo import ZoneInfo

WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
PRICED = ("ENERGY", "TIME", "PARKING_TIME")
TIMED_KEYS = ("start_time", "end_time", "start_date", "end_date", "day_of_week")


@dataclass
class Period:
    """One CDR charging period: its start (UTC epoch s) and what it measured.

    energy in kWh, time (charging) and parking in seconds; power (kW) and current (A) as
    (lowest, highest) or None when the CDR gives no value."""
    start: int
    energy: Decimal = Decimal(0)
    time: Decimal = Decimal(0)
    parking: Decimal = Decimal(0)
    power: tuple | None = None
    current: tuple | None = None


def D(v) -> Decimal:
    if isinstance(v, bool):
        raise TypeError("a bool is not a number")
    if isinstance(v, float):
        v = repr(v)
    return Decimal(v)


def _minutes(s: str) -> int:
    h, m = s.split(":")
    return int(h) * 60 + int(m)


def _date(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


class _Local:
    """Local date, time of day and weekday at a UTC instant, from the IANA zone."""

    def __init__(self, zone: str | None):
        self.zone = ZoneInfo(zone) if zone and zone not in ("UTC", "Etc/UTC") else dt.timezone.utc

    def at(self, t: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(t, self.zone)


def _active(r: dict | None, when: dt.datetime, energy_before: Decimal, elapsed: int, p: Period,
            time_known: bool) -> bool:
    """Whether an element with restrictions r is active at the start of period p."""
    if not r:
        return True
    if r.get("reservation") is not None:
        return False  # reservation costs: the charger takes no reservations
    timed = any(r.get(k) not in (None, []) for k in TIMED_KEYS)
    if timed and not time_known:
        return False
    sod = when.hour * 3600 + when.minute * 60 + when.second
    if r.get("start_time") is not None or r.get("end_time") is not None:
        a = 0 if r.get("start_time") is None else _minutes(r["start_time"]) * 60
        b = 86400 if r.get("end_time") is None else _minutes(r["end_time"]) * 60
        if b == 0:
            b = 86400  # end_time 00:00: until the end of the day
        if a < b:
            if not a <= sod < b:
                return False
        elif not (sod >= a or sod < b):  # start after end: past midnight
            return False
    if r.get("start_date") is not None and when.date() < _date(r["start_date"]):
        return False
    if r.get("end_date") is not None and when.date() >= _date(r["end_date"]):
        return False
    if r.get("min_kwh") is not None and energy_before < D(r["min_kwh"]):
        return False
    if r.get("max_kwh") is not None and energy_before >= D(r["max_kwh"]):
        return False
    if r.get("min_duration") is not None and elapsed < int(r["min_duration"]):
        return False
    if r.get("max_duration") is not None and elapsed >= int(r["max_duration"]):
        return False
    for lo_key, hi_key, vals in (("min_power", "max_power", p.power), ("min_current", "max_current", p.current)):
        if r.get(lo_key) is not None and (vals is None or vals[0] is None or vals[0] < D(r[lo_key])):
            return False
        if r.get(hi_key) is not None and (vals is None or vals[1] is None or vals[1] >= D(r[hi_key])):
            return False
    days = r.get("day_of_week")
    if days and WEEKDAYS[when.weekday()] not in days:
        return False
    return True


def _component(tariff: dict, dim: str, active: list[bool]):
    for i, el in enumerate(tariff["elements"]):
        if not active[i]:
            continue
        for pc in el["price_components"]:
            if pc["type"] == dim:
                return i, pc
    return None


def _ceil_div(a: Decimal, b: int) -> int:
    f = Fraction(a) / b  # exact (a Decimal quotient would be inexact)
    return -(-f.numerator // f.denominator)


def _half_up(x: Fraction) -> int:
    return (2 * x.numerator + x.denominator) // (2 * x.denominator)


def price(tariff: dict, session_start: int, periods: list[Period], zone: str | None = None,
          time_known: bool = True, minor: int = 2) -> dict:
    """Price a CDR's charging periods against an OCPI Tariff object.

    Returns excl / incl in minor units (half-up), the exact totals as Fractions, bound ("min",
    "max" or None), flat (index of the element whose FLAT is charged, or None), flat_period (the
    index of the period that charged it) and per dimension
    the priced volume and the billed volume after step_size (kWh or seconds, exact)."""
    with localcontext() as ctx:
        ctx.prec = 200
        ctx.traps[Inexact] = True
        return _price(tariff, session_start, periods, _Local(zone), time_known, minor)


def _price(tariff, session_start, periods, local, time_known, minor):
    excl = Decimal(0)  # money x 3600
    incl = Decimal(0)
    priced = {d: Decimal(0) for d in PRICED}
    last = {d: None for d in PRICED}
    flat = None
    energy = Decimal(0)

    def add(pc, amount3600):
        nonlocal excl, incl
        excl += amount3600
        vat = pc.get("vat")
        incl += amount3600 if vat is None else amount3600 * (100 + D(vat)) / 100

    flat_period = None
    for n, p in enumerate(periods):
        when = local.at(p.start)
        active = [_active(el.get("restrictions"), when, energy, p.start - session_start, p, time_known)
                  for el in tariff["elements"]]
        if flat is None:
            found = _component(tariff, "FLAT", active)
            if found is not None:
                flat, flat_period = found, n
                add(found[1], D(found[1]["price"]) * 3600)
        for dim, vol in (("ENERGY", p.energy), ("TIME", p.time), ("PARKING_TIME", p.parking)):
            found = _component(tariff, dim, active)
            if found is None or vol <= 0:
                continue
            pc = found[1]
            add(pc, D(pc["price"]) * (vol * 3600 if dim == "ENERGY" else vol))
            priced[dim] += vol
            last[dim] = pc
        energy += p.energy

    billed = dict(priced)
    steps = ["ENERGY", "PARKING_TIME" if last["PARKING_TIME"] is not None else "TIME"]
    for dim in steps:
        pc = last[dim]
        if pc is None:
            continue
        step = max(int(pc.get("step_size", 1)), 1)
        unit = priced[dim] * 1000 if dim == "ENERGY" else priced[dim]  # Wh or s
        extra = _ceil_div(unit, step) * step - unit
        if extra:
            extra_vol = extra / 1000 if dim == "ENERGY" else extra
            billed[dim] = priced[dim] + extra_vol
            add(pc, D(pc["price"]) * (extra_vol * 3600 if dim == "ENERGY" else extra_vol))

    bound = None
    for key, lower in (("min_price", True), ("max_price", False)):
        b = tariff.get(key)
        if b is None:
            continue
        e = D(b["excl_vat"]) * 3600
        i = D(b["incl_vat"] if b.get("incl_vat") is not None else b["excl_vat"]) * 3600
        if lower and (excl < e or incl < i) or not lower and (excl > e or incl > i):
            bound = "min" if lower else "max"
        excl, incl = (max(excl, e), max(incl, i)) if lower else (min(excl, e), min(incl, i))

    exact_excl = Fraction(excl) / 3600
    exact_incl = Fraction(incl) / 3600
    return {
        "excl": _half_up(exact_excl * 10 ** minor),
        "incl": _half_up(exact_incl * 10 ** minor),
        "exact_excl": exact_excl,
        "exact_incl": exact_incl,
        "bound": bound,
        "flat": None if flat is None else flat[0],
        "flat_period": flat_period,
        "priced": priced,
        "billed": billed,
    }


def cdr_periods(cdr: dict) -> tuple[int, list[Period]]:
    """An OCPI CDR's charging periods as Periods (hours -> seconds exactly, kW and A as given)."""
    start = _epoch(cdr["start_date_time"])
    out = []
    for cp in cdr["charging_periods"]:
        p = Period(_epoch(cp["start_date_time"]))
        band = {"power": {}, "current": {}}
        for d in cp["dimensions"]:
            kind, vol = d["type"], D(d["volume"])
            if kind == "ENERGY":
                p.energy += vol
            elif kind == "TIME":
                p.time += vol * 3600
            elif kind == "PARKING_TIME":
                p.parking += vol * 3600
            elif kind in ("MIN_POWER", "MAX_POWER", "POWER", "MIN_CURRENT", "MAX_CURRENT", "CURRENT"):
                what = "power" if kind.endswith("POWER") else "current"
                band[what][kind.split("_")[0] if "_" in kind else "AVG"] = vol
        for what, b in band.items():
            if b:
                lo = b.get("MIN", b.get("AVG", b.get("MAX")))
                hi = b.get("MAX", b.get("AVG", b.get("MIN")))
                setattr(p, what, (lo, hi))
        out.append(p)
    return start, out


def _epoch(s: str) -> int:
    t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp())
