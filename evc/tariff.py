"""Compile OCPI 2.2.1 Tariff objects into the device's compact, exact tariff document.

The device never parses prices from JSON numbers: here, on CPython, every OCPI number is read
as a Decimal and turned into an integer at a fixed scale (prices in millionths of the major unit,
VAT in hundredths of a percent, kWh to Wh, kW to W, A to mA). A value that does not fit its scale
exactly is rejected rather than rounded. docs/pricing.md describes the document.
"""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ZONEINFO = Path("/usr/share/zoneinfo")

PRICE_SCALE = 6  # price_u: millionths of the major unit
VAT_SCALE = 2  # vat_bp: hundredths of a percent
MAX_DIGITS = 15  # digits before the decimal point of any number read (prices, volumes, bounds)
MAX_STEP = 10 ** 9  # step_size, in Wh or s
DIMENSIONS = ("ENERGY", "TIME", "PARKING_TIME", "FLAT")
WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
MAX_ELEMENTS = 64
# ISO 4217 currencies whose minor unit is not 2 digits (the rest use cents).
MINOR_DIGITS = {"BHD": 3, "CLP": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3,
                "LYD": 3, "OMR": 3, "PYG": 0, "TND": 3, "UGX": 0, "VND": 0, "XAF": 0, "XOF": 0}
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_UTC_NAMES = {"UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT", "UTC0"}
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class TariffCompileError(ValueError):
    pass


def load_json(path: str | Path) -> Any:
    """JSON with every fractional number as an exact Decimal."""
    return json.loads(Path(path).read_text(), parse_float=Decimal)


def brief(v: Any) -> str:
    """A JSON value for an error message: never a huge or deeply nested repr."""
    if isinstance(v, (dict, list)):
        return "an object" if isinstance(v, dict) else "a list"
    r = str(v) if isinstance(v, Decimal) else repr(v)
    return r if len(r) <= 60 else f"{r[:40]}... ({len(r)} characters)"


def decimal(v: Any, where: str) -> Decimal:
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal, str)):
        raise TariffCompileError(f"{where}: number expected, got {brief(v)}")
    try:
        d = Decimal(str(v)) if isinstance(v, (float, str)) else Decimal(v)
    except InvalidOperation:
        raise TariffCompileError(f"{where}: number expected, got {brief(v)}") from None
    if not d.is_finite():
        raise TariffCompileError(f"{where}: finite number expected, got {brief(v)}")
    if d and d.adjusted() >= MAX_DIGITS:
        raise TariffCompileError(f"{where}: {brief(v)} is out of range (at most {MAX_DIGITS} digits before the point)")
    return d


def scaled(v: Any, digits: int, where: str, lo: int = 0) -> int:
    """v x 10**digits as an int, exactly, or an error naming the field."""
    sign, ds, exp = decimal(v, where).as_tuple()  # digit by digit: Decimal arithmetic would round
    n = 0
    if any(ds):
        while ds[-1] == 0:
            ds, exp = ds[:-1], exp + 1
        if exp + digits < 0:
            raise TariffCompileError(f"{where}: {brief(v)} has more than {digits} decimals "
                                     "(not exact at the device's scale)")
        n = int("".join(map(str, ds))) * 10 ** (exp + digits) * (-1 if sign else 1)
    if n < lo:
        raise TariffCompileError(f"{where}: must be >= {Decimal(lo).scaleb(-digits)}, got {v}")
    return n


def parse_time(s: Any, where: str) -> int:
    """'HH:MM' -> minutes of the day; '24:00' and other malformed times are errors."""
    m = _TIME.match(s) if isinstance(s, str) else None
    if not m:
        raise TariffCompileError(f"{where}: time 'HH:MM' (00:00..23:59) expected, got {s!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


def parse_date(s: Any, where: str) -> int:
    try:
        if not isinstance(s, str) or len(s) != 10:
            raise ValueError
        d = dt.date.fromisoformat(s)
    except ValueError:
        raise TariffCompileError(f"{where}: date 'YYYY-MM-DD' expected, got {s!r}") from None
    return d.year * 10000 + d.month * 100 + d.day


def parse_datetime(s: Any, where: str) -> int:
    """RFC 3339 / OCPI DateTime -> UTC epoch seconds (no zone given: UTC, as OCPI says)."""
    try:
        if not isinstance(s, str):
            raise ValueError
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TariffCompileError(f"{where}: date-time expected, got {brief(s)}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    # OCPI: "Fractional seconds MAY be used." The device counts whole seconds: the fraction is dropped
    # (rounded down), so an instant before a whole second stays before it.
    return (t - _EPOCH) // dt.timedelta(seconds=1)


def _pair(r: Mapping[str, Any], lo_key: str, hi_key: str, convert) -> list | None:
    if r.get(lo_key) is None and r.get(hi_key) is None:
        return None
    lo = None if r.get(lo_key) is None else convert(r[lo_key], lo_key)
    hi = None if r.get(hi_key) is None else convert(r[hi_key], hi_key)
    if lo is not None and hi is not None and lo >= hi:
        raise TariffCompileError(f"{lo_key}/{hi_key}: empty range {r[lo_key]}..{r[hi_key]}")
    return [lo, hi]


_KNOWN_RESTRICTIONS = {"start_time", "end_time", "start_date", "end_date", "min_kwh", "max_kwh", "min_current",
                       "max_current", "min_power", "max_power", "min_duration", "max_duration", "day_of_week",
                       "reservation"}


def compile_restrictions(r: Mapping[str, Any], where: str) -> dict | None:
    """OCPI TariffRestrictions -> device restriction object; None if it can never apply to charging."""
    if not isinstance(r, Mapping):
        raise TariffCompileError(f"{where}: object expected")
    unknown = set(r) - _KNOWN_RESTRICTIONS
    if unknown:
        raise TariffCompileError(f"{where}: unknown restriction(s) {sorted(unknown)}")
    if r.get("reservation") is not None:
        if r["reservation"] not in ("RESERVATION", "RESERVATION_EXPIRES"):
            raise TariffCompileError(f"{where}.reservation: {r['reservation']!r}")
        return None  # the charger takes no reservations: such elements never apply to a session
    out: dict[str, Any] = {}
    if r.get("start_time") is not None or r.get("end_time") is not None:
        t0 = None if r.get("start_time") is None else parse_time(r["start_time"], f"{where}.start_time")
        t1 = None if r.get("end_time") is None else parse_time(r["end_time"], f"{where}.end_time")
        if t1 == 0:
            t1 = 1440  # end_time "00:00": until the end of the day
        if t0 is not None and t0 == t1:
            raise TariffCompileError(f"{where}: start_time equals end_time ({r['start_time']})")
        out["time"] = [t0, t1]
    if r.get("start_date") is not None or r.get("end_date") is not None:
        d0 = None if r.get("start_date") is None else parse_date(r["start_date"], f"{where}.start_date")
        d1 = None if r.get("end_date") is None else parse_date(r["end_date"], f"{where}.end_date")
        if d0 is not None and d1 is not None and d0 >= d1:
            raise TariffCompileError(f"{where}: end_date not after start_date")
        out["date"] = [d0, d1]
    bands = (("wh", "min_kwh", "max_kwh", 3), ("ma", "min_current", "max_current", 3),
             ("w", "min_power", "max_power", 3), ("s", "min_duration", "max_duration", 0))
    for key, lo, hi, digits in bands:
        try:
            pair = _pair(r, lo, hi, lambda v, k, d=digits: scaled(v, d, f"{where}.{k}"))
        except TariffCompileError as exc:
            raise TariffCompileError(f"{where}: {exc}") from None
        if pair is not None:
            out[key] = pair
    days = r.get("day_of_week")
    if days is not None and days != []:  # an empty list (OCPI cardinality *) restricts nothing, like none
        if not isinstance(days, list) or any(not isinstance(d, str) or d not in WEEKDAYS for d in days):
            raise TariffCompileError(f"{where}.day_of_week: list of {', '.join(WEEKDAYS)} expected, got {brief(days)}")
        out["dow"] = sum(1 << WEEKDAYS.index(d) for d in set(days))
    return out


def compile_tariff(ocpi: Mapping[str, Any]) -> dict:
    """One OCPI 2.2.1 Tariff -> one device tariff (an entry of the document's "tariffs")."""
    if not isinstance(ocpi, Mapping):
        raise TariffCompileError("tariff: object expected")
    tid = ocpi.get("id")
    if not isinstance(tid, str) or not 0 < len(tid) <= 36:
        raise TariffCompileError(f"tariff.id: string of 1..36 characters expected, got {tid!r}")
    currency = ocpi.get("currency")
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        raise TariffCompileError(f"tariff.currency: ISO 4217 code expected, got {currency!r}")
    elements = ocpi.get("elements")
    if not isinstance(elements, list) or not elements:
        raise TariffCompileError("tariff.elements: non-empty list expected")
    out_elements = []
    for i, el in enumerate(elements):
        where = f"tariff.elements[{i}]"
        if not isinstance(el, Mapping):
            raise TariffCompileError(f"{where}: object expected")
        restr = compile_restrictions(el.get("restrictions") or {}, f"{where}.restrictions")
        comps = el.get("price_components")
        if not isinstance(comps, list) or not comps:
            raise TariffCompileError(f"{where}.price_components: non-empty list expected")
        c_out = []
        seen = set()
        for j, pc in enumerate(comps):
            cw = f"{where}.price_components[{j}]"
            if not isinstance(pc, Mapping):
                raise TariffCompileError(f"{cw}: object expected")
            dim = pc.get("type")
            if dim not in DIMENSIONS:
                raise TariffCompileError(f"{cw}.type: one of {', '.join(DIMENSIONS)} expected, got {dim!r}")
            if dim in seen:
                raise TariffCompileError(f"{cw}: {dim} twice in one element")
            seen.add(dim)
            if "price" not in pc:
                raise TariffCompileError(f"{cw}.price: missing")
            price = scaled(pc["price"], PRICE_SCALE, f"{cw}.price")
            vat = None if pc.get("vat") is None else scaled(pc["vat"], VAT_SCALE, f"{cw}.vat")
            if vat is not None and vat > 10000:
                raise TariffCompileError(f"{cw}.vat: {pc['vat']} % is above 100 %")
            step = pc.get("step_size", 1)
            if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
                raise TariffCompileError(f"{cw}.step_size: integer 0..{MAX_STEP} expected, got {brief(step)}")
            c_out.append([dim, price, vat, max(step, 1)])  # step 0: whole Wh / s (docs/pricing.md)
        if restr is None:
            continue
        out_elements.append({"c": c_out, "r": restr} if restr else {"c": c_out})
    if not out_elements:
        raise TariffCompileError("tariff: no element applies to charging (only reservation elements)")
    if len(out_elements) > MAX_ELEMENTS:
        raise TariffCompileError(f"tariff: {len(out_elements)} elements, the device takes at most {MAX_ELEMENTS}")
    out: dict[str, Any] = {"id": tid, "currency": currency, "minor": MINOR_DIGITS.get(currency, 2),
                           "elements": out_elements}
    for key in ("min_price", "max_price"):
        p = ocpi.get(key)
        if p is None:
            continue
        if not isinstance(p, Mapping) or p.get("excl_vat") is None:
            raise TariffCompileError(f"tariff.{key}: object with excl_vat expected")
        excl = scaled(p["excl_vat"], PRICE_SCALE, f"tariff.{key}.excl_vat")
        # incl_vat absent: no VAT applies to the bound, so it is the same amount.
        incl = excl if p.get("incl_vat") is None else scaled(p["incl_vat"], PRICE_SCALE, f"tariff.{key}.incl_vat")
        out[key[:3]] = [excl, incl]
    if "min" in out and "max" in out and (out["min"][0] > out["max"][0] or out["min"][1] > out["max"][1]):
        raise TariffCompileError("tariff: min_price above max_price")
    start = ocpi.get("start_date_time")
    end = ocpi.get("end_date_time")
    if start is not None or end is not None:
        out["valid"] = [None if start is None else parse_datetime(start, "tariff.start_date_time"),
                        None if end is None else parse_datetime(end, "tariff.end_date_time")]
    return out


def posix_tz(zone: str | None) -> str:
    """An IANA zone name (or UTC, or a POSIX rule) -> the POSIX TZ rule the device evaluates."""
    if zone is None or isinstance(zone, str) and zone in _UTC_NAMES:
        return "UTC0"
    if not isinstance(zone, str) or not zone:
        raise TariffCompileError(f"time zone: name expected, got {brief(zone)}")
    if re.fullmatch(r"[A-Za-z_+\-]+(/[A-Za-z0-9_+\-]+)*", zone) and ".." not in zone:
        path = ZONEINFO / zone
        if path.is_file():
            return _tzif_footer(path, zone)
        if "/" in zone:
            raise TariffCompileError(f"time zone {zone!r}: unknown IANA zone (not in {ZONEINFO})")
    try:
        _firmware_tz().TzRule(zone)  # a POSIX rule given directly: the device's own parser must accept it
    except ValueError as exc:
        raise TariffCompileError(f"time zone {zone!r}: neither a known IANA zone nor a valid POSIX rule ({exc})") from None
    return zone


def _tzif_footer(path: Path, zone: str) -> str:
    # RFC 8536: version 2+ files end with "\n<POSIX TZ string>\n", the rule after the last transition.
    data = path.read_bytes()
    if data[:4] != b"TZif" or data[4:5] not in (b"2", b"3", b"4") or not data.endswith(b"\n"):
        raise TariffCompileError(f"time zone {zone!r}: {path} has no TZif v2+ footer")
    footer = data[data.rindex(b"\n", 0, len(data) - 1) + 1:-1].decode("ascii")
    if not footer:
        raise TariffCompileError(f"time zone {zone!r}: no POSIX rule for times after its last transition")
    try:
        _firmware_tz().TzRule(footer)
    except ValueError as exc:
        raise TariffCompileError(f"time zone {zone!r}: rule {footer!r} not supported: {exc}") from None
    return footer


def _firmware_tz():
    # firmware/billing/tz.py is plain Python: the host validates rules with the device's own parser.
    spec = importlib.util.spec_from_file_location("_evc_device_tz", REPO / "firmware" / "billing" / "tz.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compile_doc(default: Mapping[str, Any], contracts: Mapping[str, Mapping[str, Any]] | None = None,
                ver: int = 1, tz: str | None = "UTC0") -> dict:
    """The device tariff document: a default tariff and a tariff per contract id.

    Tariffs are keyed by their OCPI id, so contracts sharing a tariff share one entry."""
    if isinstance(ver, bool) or not isinstance(ver, int) or ver < 0:
        raise TariffCompileError(f"ver: non-negative integer expected, got {ver!r}")
    tariffs: dict[str, dict] = {}

    def add(ocpi: Mapping[str, Any]) -> str:
        compiled = compile_tariff(ocpi)
        key = compiled["id"]
        n = 1
        while key in tariffs and tariffs[key] != compiled:
            n += 1
            key = f"{compiled['id'][:32]}~{n}"
        tariffs[key] = compiled
        return key

    default_key = add(default)
    mapping = {}
    for cid, ocpi in (contracts or {}).items():
        if not isinstance(cid, str) or not 0 < len(cid) <= 64:
            raise TariffCompileError(f"contract id {cid!r}: string of 1..64 characters expected")
        mapping[cid] = add(ocpi)
    if len(tariffs) > 16:
        raise TariffCompileError(f"{len(tariffs)} distinct tariffs, the device holds at most 16")
    return {"v": 1, "ver": ver, "tz": posix_tz(tz), "default": default_key, "contracts": mapping, "tariffs": tariffs}
