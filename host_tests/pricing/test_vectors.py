"""The OCPI 2.2.1 worked examples (host_tests/data/ocpi) through tools/price.py, and its errors.

Each case is written as OCPI tariff/CDR JSON files and priced by the tool, so the real OCPI input
path is exercised. The facts come from the spec's examples (each case names its source)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_tests.data import ocpi_case, ocpi_cases, write_ocpi_case

REPO = Path(__file__).resolve().parents[2]
CASES = ocpi_cases()
SIMPLE = "simple_025kwh_20kwh"


def price_cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "price.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_all_worked_examples_are_here():
    assert len(CASES) == 19 and len({c["id"] for c in CASES}) == 19
    assert all(c["source"]["example"] and c["source"]["published_as"] for c in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_vector_case(case, tmp_path):
    want = case["expected"]
    decimals = len(want["excl_vat"].split(".")[1])  # compare at the precision the spec prints
    tariff, cdr_path = write_ocpi_case(case["id"], tmp_path)
    proc = price_cli("--tariff", tariff, "--cdr", cdr_path, "--decimals", decimals)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["total_cost"] == {"excl_vat": want["excl_vat"], "incl_vat": want["incl_vat"]}, case["note"]
    cdr = json.loads(cdr_path.read_text())
    energy = sum(_dec(d["volume"]) for p in cdr["charging_periods"] for d in p["dimensions"] if d["type"] == "ENERGY")
    assert out["total_energy"] == format(_dec(energy), "f")  # kWh priced = the periods' ENERGY volumes


def _dec(v):
    from decimal import Decimal

    return Decimal(str(v)).normalize()


def test_output_shape(tmp_path):
    tariff, cdr = write_ocpi_case(SIMPLE, tmp_path)
    proc = price_cli("--tariff", tariff, "--cdr", cdr)
    out = json.loads(proc.stdout)
    assert out["total_cost"] == {"excl_vat": "5.00", "incl_vat": "5.50"}
    assert out["total_energy"] == "20" and out["total_time"] == "1" and out["total_parking_time"] == "0"
    assert out["dimensions"]["ENERGY"] == {"volume": "20", "billed_volume": "20", "excl_vat": "5.00", "incl_vat": "5.50"}


def _bad(tmp_path, tariff=None, cdr=None):
    t, c, _ = ocpi_case(SIMPLE)
    if tariff:
        tariff(t)
    if cdr:
        cdr(c)
    (tmp_path / "t.json").write_text(json.dumps(t))
    (tmp_path / "c.json").write_text(json.dumps(c))
    return price_cli("--tariff", tmp_path / "t.json", "--cdr", tmp_path / "c.json")


def _restrict(r):
    def f(t):
        t["elements"][0]["restrictions"] = r
    return f


@pytest.mark.parametrize("name,tariff,cdr,message", [
    ("unknown dimension", None, lambda c: c["charging_periods"][0]["dimensions"].append({"type": "FOO", "volume": 1}),
     "unknown dimension 'FOO'"),
    ("negative volume", None, lambda c: c["charging_periods"][0]["dimensions"][0].update(volume=-1), "negative volume"),
    ("string volume", None, lambda c: c["charging_periods"][0]["dimensions"][0].update(volume="x"), "number expected"),
    ("missing periods", None, lambda c: c.pop("charging_periods"), "charging_periods: missing"),
    ("missing start", None, lambda c: c.pop("start_date_time"), "start_date_time: missing"),
    ("period after end", None, lambda c: c["charging_periods"][0].update(start_date_time="2099-01-01T00:00:00Z"),
     "outside the session"),
    ("end 24:00", _restrict({"start_time": "10:00", "end_time": "24:00"}), None, "'24:00'"),
    ("bad time", _restrict({"start_time": "7:00"}), None, "HH:MM"),
    ("start equals end", _restrict({"start_time": "07:00", "end_time": "07:00"}), None, "equals end_time"),
    ("bad weekday", _restrict({"day_of_week": ["FUNDAY"]}), None, "day_of_week"),
    ("unknown restriction", _restrict({"max_speed": 3}), None, "unknown restriction"),
    ("empty kwh range", _restrict({"min_kwh": 5, "max_kwh": 5}), None, "empty range"),
    ("too precise price", lambda t: t["elements"][0]["price_components"][0].update(price=0.1234567), None, "decimals"),
    ("unknown component", lambda t: t["elements"][0]["price_components"][0].update(type="SPEED"), None, "type"),
    ("missing price", lambda t: t["elements"][0]["price_components"][0].pop("price"), None, "price: missing"),
    ("missing elements", lambda t: t.pop("elements"), None, "elements"),
    ("expired tariff", lambda t: t.update(end_date_time="2020-01-01T00:00:00Z"), None, "not valid"),
    ("unknown zone", None, lambda c: c["cdr_location"].update(time_zone="Mars/Olympus"), "unknown IANA zone"),
])
def test_bad_input_is_a_clear_error(tmp_path, name, tariff, cdr, message):
    proc = _bad(tmp_path, tariff, cdr)
    assert proc.returncode == 2, proc.stdout
    assert proc.stdout == ""
    assert proc.stderr.startswith("price: error:") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_zone_name_is_evaluated_in_local_time(tmp_path):
    # 17:00-20:00 local is the dearer element: 16:30 UTC is 17:30 in Berlin (winter, UTC+1).
    tariff = write_ocpi_case("step_size_switch_2", tmp_path / "case")[0]
    c = ocpi_case("step_size_switch_2")[1]
    c["start_date_time"] = c["charging_periods"][0]["start_date_time"] = "2024-01-08T16:30:00Z"
    c["end_date_time"] = "2024-01-08T16:45:00Z"
    c["charging_periods"] = c["charging_periods"][:1]
    c["charging_periods"][0]["dimensions"] = [{"type": "TIME", "volume": 0.25}]
    (tmp_path / "c.json").write_text(json.dumps(c))
    utc = json.loads(price_cli("--tariff", tariff, "--cdr", tmp_path / "c.json").stdout)
    berlin = json.loads(price_cli("--tariff", tariff, "--cdr", tmp_path / "c.json", "--tz", "Europe/Berlin").stdout)
    assert utc["total_cost"]["excl_vat"] == "0.60"  # 15 min at 1.20/h, rounded up to the 30 min step
    assert berlin["total_cost"]["excl_vat"] == "0.60"  # 15 min at 2.40/h
    assert berlin["time_zone"] == "Europe/Berlin"
    assert utc["lines"][0]["el"] == 0 and berlin["lines"][0]["el"] == 1
