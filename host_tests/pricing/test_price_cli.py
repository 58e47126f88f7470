"""tools/price.py on real-world CDRs: local time from the IANA history, the zone from the country,
the CDR shapes CPOs send, and a clear error (exit 2, no traceback) for every kind of bad input.

Everything goes through the CLI as a subprocess, as a user runs it. Expected prices are worked out
here independently (zoneinfo for local time, Decimal arithmetic), not by the engine."""
from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from evc.localtime import COUNTRY_ZONES, COUNTRY_ZONES_TZDATA, offsets, zone
from evc.tariff import posix_tz
from sim import mpy

REPO = Path(__file__).resolve().parents[2]


def price_cli(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "price.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(s: str) -> int:
    return int(dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp())


# Peak 10:00-11:00 local at 0.50/kWh, else 0.20/kWh (no VAT): which local hour a period was judged
# in shows in the price.
PEAK = {"id": "PEAK", "currency": "EUR", "elements": [
    {"price_components": [{"type": "ENERGY", "price": 0.50, "step_size": 1}],
     "restrictions": {"start_time": "10:00", "end_time": "11:00"}},
    {"price_components": [{"type": "ENERGY", "price": 0.20, "step_size": 1}]}]}
FLAT_RATE = {"id": "FLAT", "currency": "EUR", "elements": [
    {"price_components": [{"type": "ENERGY", "price": 0.25, "vat": 10, "step_size": 1}]}]}


def one_period_cdr(start: str, kwh: float = 10, minutes: int = 15, location: dict | None = None) -> dict:
    t = epoch(start)
    cdr: dict = {"id": "C1", "start_date_time": start, "end_date_time": iso(t + 60 * minutes), "currency": "EUR",
                 "charging_periods": [{"start_date_time": start, "dimensions": [
                     {"type": "ENERGY", "volume": kwh}, {"type": "TIME", "volume": minutes / 60}]}]}
    if location is not None:
        cdr["cdr_location"] = location
    return cdr


def run(tmp: Path, tariff: dict | str | bytes, cdr: dict | str | bytes, *args: str, timeout: float = 120):
    files = []
    for name, doc in (("tariff.json", tariff), ("cdr.json", cdr)):
        p = tmp / name
        if isinstance(doc, bytes):
            p.write_bytes(doc)
        else:
            p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
        files.append(p)
    return price_cli("--tariff", files[0], "--cdr", files[1], *args, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return json.loads(proc.stdout)


def refused(proc: subprocess.CompletedProcess, *needles: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[:300], proc.stderr[-2000:])
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr, proc.stderr
    *usage, line = proc.stderr.strip().splitlines()  # argparse's own errors come after its usage
    assert line.startswith("price: error: ") and all(u.startswith(("usage:", " ")) for u in usage), proc.stderr
    for n in needles:
        assert n in line, line
    assert len(line) < 400, line
    return line


# ---------------------------------------------------------------- local time: the IANA history

@pytest.mark.parametrize("name,start,end", [
    ("Africa/Casablanca", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),  # Ramadan at +00
    ("America/Mexico_City", "2021-01-01T00:00:00Z", "2023-06-01T00:00:00Z"),  # DST until 2022
    ("America/Sao_Paulo", "2018-01-01T00:00:00Z", "2020-01-01T00:00:00Z"),  # DST abolished 2019
    ("Europe/Moscow", "2010-06-01T00:00:00Z", "2015-01-01T00:00:00Z"),  # +04 all year 2011-2014
    ("Europe/Berlin", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"),
    ("Pacific/Apia", "2011-06-01T00:00:00Z", "2012-06-01T00:00:00Z"),  # skipped 2011-12-30
])
def test_offset_table_follows_zoneinfo(name, start, end):
    z, zi = zone(name, "tz"), ZoneInfo(name)
    t0, t1 = epoch(start), epoch(end)
    table = offsets(z, [t0, t1])
    assert table[0][0] == t0 and all(a[0] < b[0] for a, b in zip(table, table[1:]))
    for (t, off), nxt in zip(table, table[1:] + [[t1 + 1, None]]):
        # each entry holds from its second to the next's, and the change is at exactly that second
        assert dt.datetime.fromtimestamp(t, zi).utcoffset().total_seconds() == off
        if t > t0:
            assert dt.datetime.fromtimestamp(t - 1, zi).utcoffset().total_seconds() != off
        for probe in range(t, nxt[0], 3571):
            assert dt.datetime.fromtimestamp(probe, zi).utcoffset().total_seconds() == off, (name, iso(probe))


@pytest.mark.parametrize("name,start,local_hour", [
    # Morocco keeps +00 during Ramadan (2024-03-10 to 04-14); its POSIX rule says +01 all year.
    ("Africa/Casablanca", "2024-03-20T10:30:00Z", 10),
    # Mexico City kept DST (UTC-5 in summer) until October 2022; its rule now is CST6 all year.
    ("America/Mexico_City", "2021-07-01T15:30:00Z", 10),
])
def test_zone_history_decides_the_local_hour(tmp_path, name, start, local_hour):
    cdr = one_period_cdr(start, location={"time_zone": name})
    out = ok(run(tmp_path, PEAK, cdr))
    assert dt.datetime.fromisoformat(start.replace("Z", "+00:00")).astimezone(ZoneInfo(name)).hour == local_hour
    assert out["total_cost"]["excl_vat"] == "5.00"  # 10 kWh in the 10:00-11:00 peak
    assert out["time_zone"] == name and out["time_zone_source"] == "cdr.cdr_location.time_zone"
    # The zone's current POSIX rule (what the device has) puts the instant in another hour.
    rule = ok(run(tmp_path, PEAK, cdr, "--tz", posix_tz(name)))
    assert rule["total_cost"]["excl_vat"] == "2.00"


def test_offsets_of_the_session_are_in_the_output(tmp_path):
    # A session across Berlin's 2024 spring change: both offsets, the change to the second.
    cdr = one_period_cdr("2024-03-31T00:30:00Z", minutes=60, location={"time_zone": "Europe/Berlin"})
    cdr["charging_periods"].append({"start_date_time": "2024-03-31T01:10:00Z",
                                    "dimensions": [{"type": "ENERGY", "volume": 1}]})
    cdr["end_date_time"] = "2024-03-31T01:30:00Z"
    out = ok(run(tmp_path, PEAK, cdr))
    assert out["utc_offsets"] == [{"from": "2024-03-31T00:30:00Z", "offset": "+01:00"},
                                  {"from": "2024-03-31T01:00:00Z", "offset": "+02:00"}]


# ---------------------------------------------------------------- the zone from cdr_location.country

def test_zone_from_a_country_with_one_zone(tmp_path):
    # 09:30 UTC in January is 10:30 in Germany (Europe/Berlin and Europe/Busingen agree).
    out = ok(run(tmp_path, PEAK, one_period_cdr("2024-01-10T09:30:00Z", location={"country": "DEU"})))
    assert out["time_zone"] == "Europe/Berlin" and out["time_zone_source"] == "cdr.cdr_location.country"
    assert out["total_cost"]["excl_vat"] == "5.00"
    # Argentina lists 12 zones that have kept one time since 2009: priced in Buenos Aires time.
    out = ok(run(tmp_path, PEAK, one_period_cdr("2024-01-10T13:30:00Z", location={"country": "ARG"})))
    assert out["time_zone"] == "America/Argentina/Buenos_Aires" and out["total_cost"]["excl_vat"] == "5.00"


def test_tz_option_wins_over_the_country_and_the_location_zone(tmp_path):
    cdr = one_period_cdr("2024-01-10T09:30:00Z", location={"country": "USA", "time_zone": "America/Chicago"})
    out = ok(run(tmp_path, PEAK, cdr, "--tz", "Europe/Berlin"))
    assert out["time_zone"] == "Europe/Berlin" and out["time_zone_source"] == "--tz"


@pytest.mark.parametrize("location,needles", [
    ({"country": "USA"}, ["cdr.cdr_location.country", "USA has 29 time zones", "--tz"]),
    ({"country": "ESP"}, ["ESP", "Atlantic/Canary", "--tz"]),  # the Canaries keep another time
    ({"country": "PRT"}, ["PRT", "--tz"]),
    ({"country": "XYZ"}, ["cdr.cdr_location.country", "XYZ", "--tz"]),
    ({"country": "de"}, ["cdr.cdr_location.country", "alpha-3", "--tz"]),
    ({"country": 276}, ["cdr.cdr_location.country", "alpha-3"]),
    ({"address": "Main St 1"}, ["cdr.cdr_location.country: missing", "--tz"]),
    (None, ["cdr.cdr_location.country: missing", "--tz"]),
])
def test_no_single_zone_is_refused_asking_for_tz(tmp_path, location, needles):
    refused(run(tmp_path, PEAK, one_period_cdr("2024-01-10T09:30:00Z", location=location)), *needles)


def test_a_tariff_without_time_restrictions_needs_no_zone(tmp_path):
    out = ok(run(tmp_path, FLAT_RATE, one_period_cdr("2024-01-10T09:30:00Z", location={"country": "USA"})))
    assert out["time_zone"] is None and out["utc_offsets"] == []
    assert out["total_cost"] == {"excl_vat": "2.50", "incl_vat": "2.75"}


def test_country_table_matches_the_tz_database():
    zone_tab, iso_json = Path("/usr/share/zoneinfo/zone.tab"), Path("/usr/share/iso-codes/json/iso_3166-1.json")
    if not zone_tab.is_file() or not iso_json.is_file():
        pytest.skip("needs the machine's zone.tab (tzdata) and ISO 3166 list (iso-codes)")
    alpha3 = {c["alpha_2"]: c["alpha_3"] for c in json.loads(iso_json.read_text())["3166-1"]}
    want: dict[str, set[str]] = {}
    for line in zone_tab.read_text().splitlines():
        if line and not line.startswith("#"):
            cc, _, name = line.split("\t")[:3]
            want.setdefault(alpha3[cc], set()).add(name)
    for names in COUNTRY_ZONES.values():
        for n in names.split():
            ZoneInfo(n)
    ours = {k: set(v.split()) for k, v in COUNTRY_ZONES.items()}
    zi = Path("/usr/share/zoneinfo/tzdata.zi")
    version = zi.read_text().split("\n", 1)[0].removeprefix("# version ").strip() if zi.is_file() else "?"
    if version != COUNTRY_ZONES_TZDATA and ours != want:
        diff = sorted(k for k in ours.keys() | want.keys() if ours.get(k) != want.get(k))
        pytest.skip(f"tz database {version} here, table from {COUNTRY_ZONES_TZDATA}: refresh "
                    f"evc/localtime.py COUNTRY_ZONES for {', '.join(diff)}")
    assert ours == want


# ---------------------------------------------------------------- CDRs as CPOs send them

def test_period_before_the_session_start_is_priced_with_a_warning(tmp_path):
    # Hour-aligned periods: the session starts 10:17 UTC, its first period says 10:00. The period
    # is judged at 10:17 (the tariff changes at 10:10 UTC here), with a warning.
    tariff = copy.deepcopy(PEAK)
    tariff["elements"][0]["restrictions"] = {"start_time": "10:10", "end_time": "11:00"}
    cdr = one_period_cdr("2024-01-10T10:17:00Z", location={"time_zone": "UTC"})
    cdr["charging_periods"][0]["start_date_time"] = "2024-01-10T10:00:00Z"
    proc = run(tmp_path, tariff, cdr)
    out = ok(proc)
    assert out["total_cost"]["excl_vat"] == "5.00"
    assert out["warnings"] == ["cdr.charging_periods[0].start_date_time: before cdr.start_date_time; "
                               "priced as starting at the session start"]
    assert proc.stderr.startswith("price: warning: cdr.charging_periods[0].start_date_time: before")


def test_fractional_seconds_are_taken(tmp_path):
    whole = one_period_cdr("2024-01-10T10:59:59Z", location={"time_zone": "UTC"})
    frac = copy.deepcopy(whole)
    frac["start_date_time"] = frac["charging_periods"][0]["start_date_time"] = "2024-01-10T10:59:59.999Z"
    frac["end_date_time"] = "2024-01-10T11:14:59.5"  # no designator: UTC
    a, b = ok(run(tmp_path, PEAK, whole)), ok(run(tmp_path, PEAK, frac))
    assert a["total_cost"] == b["total_cost"] == {"excl_vat": "5.00", "incl_vat": "5.00"}  # still before 11:00


def test_empty_day_of_week_restricts_nothing(tmp_path):
    tariff = copy.deepcopy(PEAK)
    tariff["elements"][0]["restrictions"]["day_of_week"] = []
    out = ok(run(tmp_path, tariff, one_period_cdr("2024-01-13T10:30:00Z", location={"time_zone": "UTC"})))
    assert out["total_cost"]["excl_vat"] == "5.00"


def test_negative_power_and_current_are_taken(tmp_path):
    # V2G: MIN_POWER / MIN_CURRENT / POWER below zero (the EV fed the grid) count as zero power.
    tariff = {"id": "P", "currency": "EUR", "elements": [
        {"price_components": [{"type": "ENERGY", "price": 0.40}], "restrictions": {"min_power": 7}},
        {"price_components": [{"type": "ENERGY", "price": 0.30}], "restrictions": {"max_power": 7}},
        {"price_components": [{"type": "ENERGY", "price": 0.10}]}]}
    cdr = one_period_cdr("2024-01-10T10:00:00Z", location={"time_zone": "UTC"})
    cdr["charging_periods"][0]["dimensions"] += [{"type": "MIN_POWER", "volume": -3.5},
                                                 {"type": "MAX_POWER", "volume": 5},
                                                 {"type": "MIN_CURRENT", "volume": -8}]
    out = ok(run(tmp_path, tariff, cdr))
    assert out["total_cost"]["excl_vat"] == "3.00"  # highest 5 kW < 7: the max_power element


def test_ten_thousand_periods(tmp_path):
    # Fifteen-minute periods for 104 days across the 2024 spring change in Amsterdam; the zone comes
    # from the country. Expected cost worked out here from zoneinfo, period by period.
    tariff = {"id": "TOU", "currency": "EUR", "elements": [
        {"price_components": [{"type": "ENERGY", "price": 0.30, "vat": 21}],
         "restrictions": {"start_time": "08:00", "end_time": "20:00"}},
        {"price_components": [{"type": "ENERGY", "price": 0.20, "vat": 21}, {"type": "TIME", "price": 1.2}]}]}
    start = epoch("2024-01-01T00:00:00Z")
    periods, excl = [], Decimal(0)
    ams = ZoneInfo("Europe/Amsterdam")
    for i in range(10000):
        t = start + 900 * i
        kwh = Decimal("2.5") + Decimal(i % 7) / 1000
        periods.append({"start_date_time": iso(t), "dimensions": [
            {"type": "ENERGY", "volume": float(kwh)}, {"type": "TIME", "volume": 0.25},
            {"type": "MIN_POWER", "volume": -1.5}, {"type": "MAX_POWER", "volume": 11}]})
        peak = 8 <= dt.datetime.fromtimestamp(t, ams).hour < 20
        excl += kwh * (Decimal("0.30") if peak else Decimal("0.20")) + Decimal("0.30")  # TIME: 0.25 h at 1.20
    cdr = {"id": "BIG", "start_date_time": iso(start), "end_date_time": iso(start + 900 * 10000),
           "cdr_location": {"country": "NLD"}, "charging_periods": periods}
    t0 = time.monotonic()
    out = ok(run(tmp_path, tariff, cdr, timeout=300))
    took = time.monotonic() - t0
    assert out["time_zone"] == "Europe/Amsterdam"
    assert [o["offset"] for o in out["utc_offsets"]] == ["+01:00", "+02:00"]
    assert out["total_cost"]["excl_vat"] == str(excl.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    assert out["total_energy"] == "25029.994"  # 10,000 x 2.5 + 1428 x 0.021 + 0.006
    print(f"10,000 periods priced in {took:.2f} s")
    assert took < 60


# ---------------------------------------------------------------- bad input: exit 2, one clear line

def _cdr() -> dict:
    return one_period_cdr("2024-01-10T09:30:00Z", location={"time_zone": "Europe/Berlin"})


def _with(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


def _raw(doc: dict, path: str, literal: str) -> str:
    """doc as JSON text with the value at path replaced by a literal (numbers JSON can carry)."""
    return json.dumps(_with(doc, path, "@@")).replace('"@@"', literal)


VOLUME = "charging_periods.0.dimensions.0.volume"
PRICE = "elements.0.price_components.0.price"
BAD = [
    # name, tariff, cdr, needles
    ("time_zone list", PEAK, _with(_cdr(), "cdr_location.time_zone", ["Europe/Berlin"]),
     ["cdr.cdr_location.time_zone: time zone name", "got a list"]),
    ("time_zone object", PEAK, _with(_cdr(), "cdr_location.time_zone", {"name": "Europe/Berlin"}),
     ["cdr.cdr_location.time_zone", "got an object"]),
    ("time_zone number", PEAK, _with(_cdr(), "cdr_location.time_zone", 1), ["cdr.cdr_location.time_zone"]),
    ("unknown zone", PEAK, _with(_cdr(), "cdr_location.time_zone", "Mars/Olympus"),
     ["cdr.cdr_location.time_zone", "unknown IANA zone"]),
    ("cdr_location list", PEAK, _with(_cdr(), "cdr_location", []), ["cdr.cdr_location: object expected"]),
    ("cdr not UTF-8", PEAK, json.dumps(_cdr()).replace("C1", "C\u00e9").encode("latin-1"),
     ["--cdr", "not UTF-8", "0xe9"]),
    ("tariff not UTF-8", json.dumps(PEAK).replace("PEAK", "P\u00e9AK").encode("latin-1"), _cdr(),
     ["--tariff", "not UTF-8"]),
    ("nested 100,000 deep", PEAK, '{"x": ' + "[" * 100000 + "]" * 100000 + "}", ["--cdr", "nested too deeply"]),
    ("nested 100 deep", PEAK, json.dumps(_with(_cdr(), "remark", json.loads("[" * 99 + "]" * 99))),
     ["--cdr", "nested too deeply"]),
    ("volume of 5,000 digits", PEAK, _raw(_cdr(), VOLUME, "9" * 5000),
     ["cdr.charging_periods[0].dimensions[0].volume", "5000 digits", "out of range"]),
    ("price of 5,000 digits", _raw(PEAK, PRICE, "1" * 5000), _cdr(),
     ["tariff.elements[0].price_components[0].price", "out of range"]),
    ("step_size of 5,000 digits", _raw(PEAK, "elements.0.price_components.0.step_size", "1" * 5000), _cdr(),
     ["tariff.elements[0].price_components[0].step_size"]),
    ("price 1e999999", _raw(PEAK, PRICE, "1e999999"), _cdr(), ["price_components[0].price", "out of range"]),
    ("volume 1e999999", PEAK, _raw(_cdr(), VOLUME, "1e999999"), ["dimensions[0].volume", "out of range"]),
    ("volume -1e999999", PEAK, _raw(_cdr(), VOLUME, "-1e999999"), ["dimensions[0].volume", "out of range"]),
    ("energy 1e22", PEAK, _raw(_cdr(), VOLUME, "1e22"), ["dimensions[0].volume", "out of range"]),
    ("time 1e22", PEAK, _raw(_cdr(), "charging_periods.0.dimensions.1.volume", "1E+23"),
     ["dimensions[1].volume", "out of range"]),
    ("power 1e22", PEAK, _with(_cdr(), "charging_periods.0.dimensions.1", {"type": "MAX_POWER", "volume": 1e22}),
     ["dimensions[1].volume", "out of range"]),
    ("price 1e22", _raw(PEAK, PRICE, "1e22"), _cdr(), ["price_components[0].price", "out of range"]),
    ("min_price 1e30", _with(PEAK, "min_price", {"excl_vat": 1e30}), _cdr(), ["tariff.min_price.excl_vat"]),
    ("NaN volume", PEAK, _raw(_cdr(), VOLUME, "NaN"), ["--cdr", "NaN"]),
    ("Infinity price", _raw(PEAK, PRICE, "Infinity"), _cdr(), ["--tariff", "Infinity"]),
    ("not JSON", PEAK, '{"start_date_time": ', ["--cdr", "not valid JSON", "line 1"]),
    ("CDR a list", PEAK, [], ["cdr: JSON object expected"]),
    ("dimension type a list", PEAK, _with(_cdr(), "charging_periods.0.dimensions.0.type", ["ENERGY"]),
     ["cdr.charging_periods[0].dimensions[0].type"]),
    ("dimension type an object", PEAK, _with(_cdr(), "charging_periods.0.dimensions.0.type", {}),
     ["dimensions[0].type"]),
    ("negative energy", PEAK, _with(_cdr(), VOLUME, -1), ["dimensions[0].volume", "negative"]),
    ("date a number", PEAK, _with(_cdr(), "start_date_time", 1704879000), ["cdr.start_date_time"]),
    ("year 1900", PEAK, _with(_cdr(), "charging_periods.0.start_date_time", "1900-01-01T00:00:00Z"),
     ["cdr.charging_periods[0].start_date_time", "out of range"]),
    ("periods out of order", PEAK,
     _with(_cdr(), "charging_periods", [{"start_date_time": "2024-01-10T09:40:00Z", "dimensions": []},
                                        {"start_date_time": "2024-01-10T09:35:00Z", "dimensions": []}]),
     ["cdr.charging_periods[1].start_date_time", "before the previous"]),
    ("day_of_week a string", _with(PEAK, "elements.0.restrictions.day_of_week", "MONDAY"), _cdr(),
     ["day_of_week"]),
    ("day_of_week of lists", _with(PEAK, "elements.0.restrictions.day_of_week", [["MONDAY"]]), _cdr(),
     ["day_of_week", "got a list"]),
]


@pytest.mark.parametrize("name,tariff,cdr,needles", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_one_clear_line(tmp_path, name, tariff, cdr, needles):
    refused(run(tmp_path, tariff, cdr), *needles)


@pytest.mark.parametrize("args,needles", [
    (["--tz", ""], ["--tz: time zone name"]),
    (["--tz", "Mars/Olympus"], ["--tz: unknown IANA zone"]),
    (["--tz", "CET-1CEST"], ["--tz", "neither a known IANA zone nor a valid POSIX TZ rule"]),
    (["--decimals", "9"], ["--decimals: 0..4"]),
    (["--decimals", "two"], ["--decimals"]),
])
def test_bad_options_are_one_clear_line(tmp_path, args, needles):
    refused(run(tmp_path, PEAK, _cdr(), *args), *needles)


def test_missing_files_are_one_clear_line(tmp_path):
    refused(price_cli("--tariff", tmp_path / "none.json", "--cdr", tmp_path / "none.json"),
            "--tariff", "cannot read")


def test_the_job_goes_to_the_interpreter_in_a_file_not_argv(tmp_path, monkeypatch):
    # A CDR of thousands of periods used to fail with "Argument list too long": only the short
    # program goes on the command line now.
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import price as tool  # noqa: PLC0415
    finally:
        sys.path.remove(str(REPO / "tools"))
    seen = []
    real = mpy.run

    def spy(code, **kw):
        seen.append(code)
        return real(code, **kw)

    monkeypatch.setattr(tool.mpy, "run", spy)
    cdr = one_period_cdr("2024-01-10T09:30:00Z", location={"time_zone": "UTC"})
    cdr["charging_periods"] = [copy.deepcopy(cdr["charging_periods"][0]) for _ in range(3000)]
    out = tool.price(PEAK, cdr)
    assert out["total_energy"] == "30000"
    assert len(seen) == 1 and len(seen[0]) < 4000


def test_compiler_checks_exactness_digit_by_digit():
    # Decimal arithmetic rounds to 28 digits: 0.25000000000000000000000000001 x 10^6 looked whole.
    from evc.tariff import TariffCompileError, compile_tariff  # noqa: PLC0415

    def price_u(v):
        t = {"id": "X", "currency": "EUR", "elements": [{"price_components": [{"type": "ENERGY", "price": v}]}]}
        return compile_tariff(t)["elements"][0]["c"][0][1]

    assert price_u(Decimal("0.250000")) == 250000 and price_u(Decimal("1E+2")) == 100000000
    assert price_u(Decimal("0E-12")) == 0 and price_u(3) == 3000000
    for bad in (Decimal("0.25000000000000000000000000001"), Decimal("1E-7"), Decimal("1E+15")):
        with pytest.raises(TariffCompileError):
            price_u(bad)
