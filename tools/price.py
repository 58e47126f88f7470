"""Price an OCPI 2.2.1 CDR with the firmware's own tariff engine (run under the MicroPython port).

    python tools/price.py --tariff TARIFF.json --cdr CDR.json [--tz ZONE] [--decimals N]

Compiles the OCPI tariff to the device document (evc.tariff), turns the CDR's charging periods
into integer quantities (kWh -> Wh and hours -> s, rounded half-up; kW -> W; A -> mA), runs
billing.pricing.price_periods under MicroPython and prints JSON: total_cost {excl_vat,
incl_vat} in major units, total_energy (kWh), total_time / total_parking_time (hours), and the
cost per dimension. Restrictions are judged at each period's start in cdr_location.time_zone
(UTC when absent). Bad input: a message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evc.tariff import TariffCompileError, compile_doc, decimal, load_json, parse_datetime, posix_tz  # noqa: E402
from sim import mpy  # noqa: E402

PRICED = {"ENERGY": 0, "TIME": 1, "PARKING_TIME": 2}
# Used to judge power/current restrictions: (unit scale to W or mA, slot of lo, slot of hi)
BANDS = {"MIN_POWER": ("w", "lo"), "MAX_POWER": ("w", "hi"), "POWER": ("w", "avg"),
         "MIN_CURRENT": ("ma", "lo"), "MAX_CURRENT": ("ma", "hi"), "CURRENT": ("ma", "avg")}
IGNORED = {"ENERGY_EXPORT", "ENERGY_IMPORT", "RESERVATION_TIME", "STATE_OF_CHARGE"}

_ENGINE = """
import json
from billing.tariff import TariffSet
from billing.pricing import price_periods
args = json.loads(ARGS)
try:
    s = TariffSet.from_doc(args["doc"])
    emit(price_periods(s.select(None), s.tz, args["start"], args["periods"]))
except ValueError as e:
    emit({"error": str(e)})
"""


class InputError(ValueError):
    pass


def _half_up(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_HALF_UP))


def cdr_periods(cdr: dict) -> tuple[int, int, list[list]]:
    """(start, end, periods) in the engine's integer form, every field checked."""
    if not isinstance(cdr, dict):
        raise InputError("cdr: JSON object expected")
    for key in ("start_date_time", "end_date_time", "charging_periods"):
        if key not in cdr:
            raise InputError(f"cdr.{key}: missing")
    start = parse_datetime(cdr["start_date_time"], "cdr.start_date_time")
    end = parse_datetime(cdr["end_date_time"], "cdr.end_date_time")
    if end < start:
        raise InputError("cdr: end_date_time before start_date_time")
    raw = cdr["charging_periods"]
    if not isinstance(raw, list) or not raw:
        raise InputError("cdr.charging_periods: non-empty list expected")
    periods = []
    prev = start
    for i, p in enumerate(raw):
        where = f"cdr.charging_periods[{i}]"
        if not isinstance(p, dict) or "start_date_time" not in p or "dimensions" not in p:
            raise InputError(f"{where}: object with start_date_time and dimensions expected")
        t = parse_datetime(p["start_date_time"], f"{where}.start_date_time")
        if not prev <= t <= end:
            raise InputError(f"{where}.start_date_time: outside the session or before the previous period")
        prev = t
        qty = [0, 0, 0]
        band: dict[str, dict[str, int]] = {"w": {}, "ma": {}}
        dims = p["dimensions"]
        if not isinstance(dims, list):
            raise InputError(f"{where}.dimensions: list expected")
        for j, d in enumerate(dims):
            dw = f"{where}.dimensions[{j}]"
            if not isinstance(d, dict) or "type" not in d or "volume" not in d:
                raise InputError(f"{dw}: object with type and volume expected")
            kind = d["type"]
            vol = decimal(d["volume"], f"{dw}.volume")
            if vol < 0:
                raise InputError(f"{dw}.volume: negative volume {vol} for {kind}")
            if kind == "ENERGY":
                qty[0] += _half_up(vol * 1000)
            elif kind in ("TIME", "PARKING_TIME"):
                qty[PRICED[kind]] += _half_up(vol * 3600)
            elif kind in BANDS:
                unit, slot = BANDS[kind]
                band[unit][slot] = _half_up(vol * 1000)  # kW -> W, A -> mA
            elif kind not in IGNORED:
                raise InputError(f"{dw}.type: unknown dimension {kind!r}")
        lims = []
        for unit in ("w", "ma"):
            b = band[unit]
            lims += [b.get("lo", b.get("avg", b.get("hi"))), b.get("hi", b.get("avg", b.get("lo")))]
        periods.append([t, qty[0], qty[1], qty[2], *lims])
    return start, end, periods


def _major(minor_units: int, decimals: int) -> str:
    return str(Decimal(minor_units).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))


def price(tariff: dict, cdr: dict, tz: str | None = None, decimals: int | None = None) -> dict:
    """Price one CDR against one OCPI tariff with the firmware engine; the tool's JSON output."""
    if tz is None:
        loc = cdr.get("cdr_location") if isinstance(cdr, dict) else None
        tz = (loc or {}).get("time_zone") if isinstance(loc, dict) else None
    rule = posix_tz(tz)
    start, end, periods = cdr_periods(cdr)
    doc = compile_doc(tariff, None, 1, rule)
    entry = doc["tariffs"][doc["default"]]
    if decimals is not None:
        if not 0 <= decimals <= 4:
            raise InputError("--decimals: 0..4")
        entry["minor"] = decimals
    valid = entry.get("valid")
    if valid and not ((valid[0] is None or start >= valid[0]) and (valid[1] is None or start < valid[1])):
        raise InputError(f"tariff {entry['id']} is not valid at the session start {cdr['start_date_time']}")
    args = json.dumps({"doc": doc, "start": start, "periods": periods})
    res = mpy.run(f"ARGS = {args!r}\n" + _ENGINE, timeout=60).value
    if "error" in res:
        raise InputError(f"device engine rejected the input: {res['error']}")
    m = entry["minor"]
    dims: dict[str, dict[str, Any]] = {}
    for line in res["lines"]:
        d = dims.setdefault(line["dim"], {"excl": 0, "incl": 0, "volume": 0, "billed": 0})
        d["excl"] += line["excl"]
        d["incl"] += line["incl"]
        d["volume"] += line["qty"]
        d["billed"] += line["billed"]
    per_dim = {}
    for name, d in dims.items():
        div = {"ENERGY": 1000, "TIME": 3600, "PARKING_TIME": 3600, "FLAT": 1}[name]
        per_dim[name] = {"volume": _ratio(d["volume"], div), "billed_volume": _ratio(d["billed"], div),
                         "excl_vat": _major(d["excl"], m), "incl_vat": _major(d["incl"], m)}
    return {
        "tariff_id": entry["id"],
        "currency": res["currency"],
        "time_zone": rule,
        "total_cost": {"excl_vat": _major(res["excl"], m), "incl_vat": _major(res["incl"], m)},
        "total_energy": _ratio(res["energy_wh"], 1000),
        "total_time": _ratio(res["time_s"] + res["parking_s"], 3600),
        "total_parking_time": _ratio(res["parking_s"], 3600),
        "dimensions": per_dim,
        "price_bound": res.get("bound"),
        "lines": res["lines"],
        "flags": res["flags"],
    }


def _ratio(n: int, div: int) -> str:
    q = Decimal(n) / Decimal(div)
    return format(q.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP).normalize(), "f") if div != 1 else str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tariff", required=True, type=Path, help="OCPI 2.2.1 Tariff JSON")
    ap.add_argument("--cdr", required=True, type=Path, help="OCPI 2.2.1 CDR JSON (charging_periods are priced)")
    ap.add_argument("--tz", help="override cdr_location.time_zone (IANA name or POSIX rule)")
    ap.add_argument("--decimals", type=int, help="round totals to this many decimals (default: the currency's)")
    a = ap.parse_args(argv)
    try:
        out = price(load_json(a.tariff), load_json(a.cdr), a.tz, a.decimals)
    except (OSError, json.JSONDecodeError, TariffCompileError, InputError) as exc:
        print(f"price: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
