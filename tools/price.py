"""Price an OCPI 2.2.1 CDR with the firmware's own tariff engine (run under the MicroPython port).

    python tools/price.py --tariff TARIFF.json --cdr CDR.json [--tz ZONE] [--decimals N]

Compiles the OCPI tariff to the device document (evc.tariff), turns the CDR's charging periods
into integer quantities (kWh -> mWh and hours -> ms, rounded half-up; kW -> W; A -> mA), runs
billing.pricing.price_periods under MicroPython and prints JSON: total_cost {excl_vat,
incl_vat} in major units, total_energy (kWh), total_time / total_parking_time (hours), and the
cost per dimension.

Restrictions are judged in the local time of the charging location, from the zone's full IANA
history (evc.localtime): --tz, else cdr_location.time_zone, else the zone of cdr_location.country
when that country keeps one time. Bad input: `price: error: <field>: <why>` on stderr, exit 2.
docs/pricing.md has the rules.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from evc.localtime import ZoneError, country_zone, offsets, zone  # noqa: E402
from evc.tariff import TariffCompileError, brief, compile_doc, decimal, parse_datetime  # noqa: E402
from sim import mpy  # noqa: E402

PRICED = {"ENERGY": 0, "TIME": 1, "PARKING_TIME": 2}
# Power and current, judged by power/current restrictions: (unit, slot); kW -> W, A -> mA
BANDS = {"MIN_POWER": ("w", "lo"), "MAX_POWER": ("w", "hi"), "POWER": ("w", "avg"),
         "MIN_CURRENT": ("ma", "lo"), "MAX_CURRENT": ("ma", "hi"), "CURRENT": ("ma", "avg")}
IGNORED = {"ENERGY_EXPORT", "ENERGY_IMPORT", "RESERVATION_TIME", "STATE_OF_CHARGE"}
MAX_DEPTH = 64  # JSON nesting: an OCPI CDR or tariff needs about 6 levels
MAX_INT_DIGITS = 4300  # CPython's int() limit for decimal strings; longer JSON integers are refused
# CDR instants the engine can take: the device counts UTC seconds from 1970.
FIRST = 0
LAST = int(dt.datetime(9000, 1, 1, tzinfo=dt.timezone.utc).timestamp())

# Runs under MicroPython. The job comes from a file (a CDR of thousands of periods does not fit on
# a command line). Offsets stands in for the POSIX rule: the UTC offsets the host worked out from
# the zone's IANA history for this session; the engine reads local time through its offset().
_ENGINE = """
import json
from billing.tariff import TariffSet
from billing.pricing import price_periods
from billing.tz import TzRule


class Offsets(TzRule):
    def __init__(self, table):
        super().__init__("UTC0")
        self.at = [r[0] for r in table]
        self.off = [r[1] for r in table]

    def _find(self, t):
        lo, hi = 0, len(self.at)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.at[mid] <= t:
                lo = mid
            else:
                hi = mid
        return lo

    def offset(self, t):
        return self.off[self._find(t)]

    def next_change(self, t):
        i = self._find(t) + 1
        return self.at[i] if i < len(self.at) else None


with open(JOB) as f:
    job = json.load(f)
try:
    s = TariffSet.from_doc(job["doc"])
    tz = Offsets(job["offsets"])
    # volumes in mWh and ms, summed exactly by the engine and rounded once (docs/pricing.md)
    emit(price_periods(s.select(None), tz, job["start"], job["periods"], "S", milli=True))
except ValueError as e:
    emit({"error": str(e)})
except MemoryError:
    emit({"error": "out of memory"})
"""


class InputError(ValueError):
    pass


class _LongNumber(Decimal):
    """A JSON integer too long for int(): kept as a Decimal (refused where it is used), shown short."""

    def __repr__(self) -> str:
        return f"<a number of {len(self.as_tuple().digits)} digits>"

    __str__ = __repr__


def _json_int(s: str) -> int | Decimal:
    return int(s) if len(s) <= MAX_INT_DIGITS else _LongNumber(s)


def _json_constant(name: str) -> Any:
    raise InputError(f"{name} is not a JSON number")


def load_json(path: Path, what: str) -> Any:
    """A JSON file with exact Decimals for fractions; every way it can be unreadable is an InputError."""
    where = f"{what} {path}"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{where}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                         "JSON must be UTF-8 (RFC 8259 section 8.1)") from None
    text = text.removeprefix("\ufeff")  # RFC 8259: a parser MAY ignore a byte order mark
    try:
        doc = json.loads(text, parse_float=Decimal, parse_int=_json_int, parse_constant=_json_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply (at most {MAX_DEPTH} levels)") from None
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    _check_depth(doc, where)
    return doc


def _check_depth(doc: Any, where: str) -> None:
    stack = [(doc, 1)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"{where}: JSON nested too deeply (at most {MAX_DEPTH} levels)")
        if isinstance(v, dict):
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            stack.extend((x, depth + 1) for x in v)


def _half_up(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_HALF_UP))


def _instant(v: Any, where: str) -> int:
    t = parse_datetime(v, where)
    if not FIRST <= t < LAST:
        raise InputError(f"{where}: {brief(v)} is out of range (1970 to 8999)")
    return t


def cdr_periods(cdr: Any) -> tuple[int, int, list[list], list[str]]:
    """(start, end, periods, warnings): the periods in the engine's integer form (mWh, ms, W, mA)."""
    if not isinstance(cdr, dict):
        raise InputError(f"cdr: JSON object expected, got {brief(cdr)}")
    for key in ("start_date_time", "end_date_time", "charging_periods"):
        if key not in cdr:
            raise InputError(f"cdr.{key}: missing")
    start = _instant(cdr["start_date_time"], "cdr.start_date_time")
    end = _instant(cdr["end_date_time"], "cdr.end_date_time")
    if end < start:
        raise InputError("cdr.end_date_time: before cdr.start_date_time")
    raw = cdr["charging_periods"]
    if not isinstance(raw, list) or not raw:
        raise InputError(f"cdr.charging_periods: non-empty list expected, got {brief(raw)}")
    periods: list[list] = []
    warnings: list[str] = []
    prev = None
    for i, p in enumerate(raw):
        where = f"cdr.charging_periods[{i}]"
        if not isinstance(p, dict) or "start_date_time" not in p or "dimensions" not in p:
            raise InputError(f"{where}: object with start_date_time and dimensions expected")
        t = _instant(p["start_date_time"], f"{where}.start_date_time")
        if prev is not None and t < prev:
            raise InputError(f"{where}.start_date_time: before the previous period's")
        if t > end:
            raise InputError(f"{where}.start_date_time: after cdr.end_date_time (outside the session)")
        prev = t
        if t < start:
            # Hour-aligned periods: the session began inside this period. Judged at the session start.
            warnings.append(f"{where}.start_date_time: before cdr.start_date_time; "
                            "priced as starting at the session start")
            t = start
        qty = [0, 0, 0]
        band: dict[str, dict[str, int]] = {"w": {}, "ma": {}}
        dims = p["dimensions"]
        if not isinstance(dims, list):
            raise InputError(f"{where}.dimensions: list expected, got {brief(dims)}")
        for j, d in enumerate(dims):
            dw = f"{where}.dimensions[{j}]"
            if not isinstance(d, dict) or "type" not in d or "volume" not in d:
                raise InputError(f"{dw}: object with type and volume expected")
            kind = d["type"]
            if not isinstance(kind, str):
                raise InputError(f"{dw}.type: CdrDimensionType string expected, got {brief(kind)}")
            vol = decimal(d["volume"], f"{dw}.volume")
            if kind in PRICED:
                if vol < 0:
                    raise InputError(f"{dw}.volume: negative volume {vol} for {kind}")
                qty[PRICED[kind]] += _half_up(vol * (1000000 if kind == "ENERGY" else 3600000))  # mWh, ms
            elif kind in BANDS:
                unit, slot = BANDS[kind]
                # Negative power or current (the EV feeding the grid) counts as none, as on the device.
                band[unit][slot] = max(0, _half_up(vol * 1000))  # kW -> W, A -> mA
            elif kind not in IGNORED:
                raise InputError(f"{dw}.type: unknown dimension {brief(kind)}")
        lims: list[int | None] = []
        for unit in ("w", "ma"):
            b = band[unit]
            lims += [b.get("lo", b.get("avg", b.get("hi"))), b.get("hi", b.get("avg", b.get("lo")))]
        periods.append([t, *qty, *lims])
    return start, end, periods, warnings


def _timed(entry: dict) -> bool:
    return any({"time", "date", "dow"} & set(el.get("r", {})) for el in entry["elements"])


def resolve_zone(cdr: dict, tz: str | None, instants: list[int], needed: bool) -> tuple[Any, str | None]:
    """(Zone or None, where it came from): --tz, cdr_location.time_zone, cdr_location.country."""
    if tz is not None:
        return zone(tz, "--tz"), "--tz"
    loc = cdr.get("cdr_location")
    if loc is not None and not isinstance(loc, dict):
        raise InputError(f"cdr.cdr_location: object expected, got {brief(loc)}")
    loc = loc or {}
    if loc.get("time_zone") is not None:  # not in OCPI 2.2.1's CdrLocation, but CPOs send it
        return zone(loc["time_zone"], "cdr.cdr_location.time_zone"), "cdr.cdr_location.time_zone"
    if not needed:
        return None, None
    if loc.get("country") is None:
        raise InputError("cdr.cdr_location.country: missing, and the tariff has time restrictions: "
                         "give the location's time zone with --tz (e.g. --tz Europe/Berlin)")
    return country_zone(loc["country"], instants, "cdr.cdr_location.country"), "cdr.cdr_location.country"


def _utc(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hhmm(off: int) -> str:
    sign = "-" if off < 0 else "+"
    off = abs(off)
    s = f"{sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    return s + f":{off % 60:02d}" if off % 60 else s


def price(tariff: Any, cdr: Any, tz: str | None = None, decimals: int | None = None) -> dict:
    """Price one CDR against one OCPI tariff with the firmware engine; the tool's JSON output."""
    if decimals is not None and not 0 <= decimals <= 4:
        raise InputError(f"--decimals: 0..4 expected, got {decimals}")
    start, end, periods, warnings = cdr_periods(cdr)
    doc = compile_doc(tariff, None, 1, "UTC0")
    entry = doc["tariffs"][doc["default"]]
    if decimals is not None:
        entry["minor"] = decimals
    valid = entry.get("valid")
    if valid and not ((valid[0] is None or start >= valid[0]) and (valid[1] is None or start < valid[1])):
        raise InputError(f"tariff: {entry['id']} is not valid at the session start {cdr['start_date_time']}")
    # The engine judges local time at the session start and at each period's start.
    instants = [start] + [p[0] for p in periods]
    z, source = resolve_zone(cdr, tz, instants, _timed(entry))
    table = offsets(z, instants) if z is not None else [[start, 0]]
    res = _run_engine({"doc": doc, "start": start, "periods": periods, "offsets": table})
    if "error" in res:
        raise InputError(f"engine: the device engine rejected the input: {res['error']}")
    energy, time_, parking = res["energy_mwh"], res["time_ms"], res["parking_ms"]
    k = 1000
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
        div = {"ENERGY": 1000 * k, "TIME": 3600 * k, "PARKING_TIME": 3600 * k, "FLAT": 1}[name]
        per_dim[name] = {"volume": _ratio(d["volume"], div), "billed_volume": _ratio(d["billed"], div),
                         "excl_vat": _major(d["excl"], m), "incl_vat": _major(d["incl"], m)}
    out = {
        "tariff_id": entry["id"],
        "currency": res["currency"],
        "time_zone": z.name if z is not None else None,
        "time_zone_source": source,
        "utc_offsets": [{"from": _utc(t), "offset": _hhmm(off)} for t, off in table] if z is not None else [],
        "total_cost": {"excl_vat": _major(res["excl"], m), "incl_vat": _major(res["incl"], m)},
        "total_energy": _ratio(energy, 1000 * k),
        "total_time": _ratio(time_ + parking, 3600 * k),
        "total_parking_time": _ratio(parking, 3600 * k),
        "dimensions": per_dim,
        "price_bound": res.get("bound"),
        "lines": res["lines"],
        "flags": res["flags"],
        "warnings": warnings,
    }
    return out


class EngineError(RuntimeError):
    pass


def _run_engine(job: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="evc-price-") as tmp:
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(job))
        size = path.stat().st_size
        heap = f"{4 + size // 65536}M"  # the parsed job takes a few times its JSON size
        try:
            return mpy.run(f"JOB = {json.dumps(str(path))}\n" + _ENGINE, heap=heap, timeout=600).value
        except (mpy.MicroPythonError, RuntimeError, OSError) as exc:
            last = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            raise EngineError(f"MicroPython failed: {last[0]}") from None


def _major(minor_units: int, decimals: int) -> str:
    with localcontext(prec=max(28, minor_units.bit_length() // 3 + 12)):
        return str(Decimal(minor_units).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))


def _ratio(n: int, div: int) -> str:
    if div == 1:
        return str(n)
    with localcontext(prec=max(28, n.bit_length() // 3 + 12)):
        q = Decimal(n) / Decimal(div)
        return format(q.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP).normalize(), "f")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="price", description=__doc__.splitlines()[0])
    ap.add_argument("--tariff", required=True, type=Path, help="OCPI 2.2.1 Tariff JSON")
    ap.add_argument("--cdr", required=True, type=Path, help="OCPI 2.2.1 CDR JSON (charging_periods are priced)")
    ap.add_argument("--tz", help="the charging location's time zone: IANA name (or a POSIX TZ rule); "
                                 "default cdr_location.time_zone, else the zone of cdr_location.country")
    ap.add_argument("--decimals", type=int, help="round totals to this many decimals (default: the currency's)")
    a = ap.parse_args(argv)
    try:
        out = price(load_json(a.tariff, "--tariff"), load_json(a.cdr, "--cdr"), a.tz, a.decimals)
    except (TariffCompileError, InputError, ZoneError) as exc:
        print(f"price: error: {exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print("price: error: input nested too deeply", file=sys.stderr)
        return 2
    except EngineError as exc:
        print(f"price: engine failure: {exc}", file=sys.stderr)
        return 1
    for w in out["warnings"]:
        print(f"price: warning: {w}", file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
