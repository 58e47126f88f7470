"""The 19 OCPI 2.2.1 worked examples (host_tests/data/ocpi) through both of the engine's paths.

- CDR path: the example's charging periods as exact volumes (kWh -> mWh, hours -> ms) into
  price_periods, as tools/price.py gives them;
- live path: the same session as the charger meters it: a meter sample at the end of each charging
  period (register Wh, power and current of the period), fed into a Pricer like app/session.py does;
- and the oracle (oracle.py) on the CDR.

All three must give the total the specification prints, at the precision it prints it.
"""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from evc.tariff import compile_doc
from host_tests.data import ocpi_case, ocpi_cases
from host_tests.pricing import oracle
from sim import mpy

MP = Path(__file__).resolve().parent / "mp"
CASES = ocpi_cases()
START_WH = 1234567  # the meter register at the session start


def _half_up(d: Decimal) -> int:
    return int(d.to_integral_value(rounding=ROUND_HALF_UP))


def _band(dims: dict, what: str) -> tuple:
    lo = dims.get("MIN_" + what, dims.get(what, dims.get("MAX_" + what)))
    hi = dims.get("MAX_" + what, dims.get(what, dims.get("MIN_" + what)))
    return (None, None) if lo is None else (_half_up(lo * 1000), _half_up(hi * 1000))


def job(case_id: str) -> tuple[dict, str]:
    tariff, cdr, want = ocpi_case(case_id)
    decimals = len(want["excl_vat"].split(".")[1])
    zone = (cdr.get("cdr_location") or {}).get("time_zone") or "UTC"
    doc = compile_doc(tariff, None, 1, zone)
    doc["tariffs"][doc["default"]]["minor"] = decimals  # compare at the precision the spec prints
    start = oracle._epoch(cdr["start_date_time"])
    end = oracle._epoch(cdr["end_date_time"])
    periods, samples = [], []
    wh = START_WH
    starts = [oracle._epoch(p["start_date_time"]) for p in cdr["charging_periods"]]
    for cp, t, t_next in zip(cdr["charging_periods"], starts, starts[1:] + [end]):
        dims = {d["type"]: Decimal(str(d["volume"])) for d in cp["dimensions"]}
        for k in ("ENERGY", "TIME", "PARKING_TIME"):
            dims.setdefault(k, Decimal(0))
        w, ma = _band(dims, "POWER"), _band(dims, "CURRENT")
        periods.append([t, _half_up(dims["ENERGY"] * 1000000), _half_up(dims["TIME"] * 3600000),
                        _half_up(dims["PARKING_TIME"] * 3600000), *w, *ma])
        energy = dims["ENERGY"] * 1000
        assert energy == int(energy), "the meter counts whole Wh"
        wh += int(energy)
        charging = dims["TIME"] > 0
        power = (w[1] if w[1] is not None else 7400) if charging else 0
        samples.append([t_next, wh, power, ma[1] if charging else None])
    return {"doc": doc, "start": start, "tq": "S", "periods": periods, "start_wh": START_WH, "parking_w": 0,
            "samples": samples}, zone


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    path = tmp_path_factory.mktemp("vectors") / "vectors.jsonl"
    path.write_text("".join(json.dumps(job(c["id"])[0]) + "\n" for c in CASES))
    res = mpy.run(f"import diffdrive\ndiffdrive.run({str(path)!r})", extra_path=[MP], timeout=300).results
    return dict(zip([c["id"] for c in CASES], res))


def _major(minor: int, decimals: int) -> str:
    return str(Decimal(minor).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals)))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["id"])
def test_cdr_and_live_paths_give_the_spec_total(case, results):
    tariff, cdr, want = ocpi_case(case["id"])
    decimals = len(want["excl_vat"].split(".")[1])
    expected = (want["excl_vat"], want["incl_vat"])
    res = results[case["id"]]
    assert "error" not in res, res
    cdr_total = (_major(res["cdr"][0], decimals), _major(res["cdr"][1], decimals))
    live_total = (_major(res["live"][0], decimals), _major(res["live"][1], decimals))
    assert cdr_total == expected, case["note"]
    assert live_total == cdr_total, case["note"]
    start, periods = oracle.cdr_periods(cdr)
    zone = (cdr.get("cdr_location") or {}).get("time_zone")
    o = oracle.price(tariff, start, periods, zone, minor=decimals)
    assert (_major(o["excl"], decimals), _major(o["incl"], decimals)) == expected
    assert Decimal(case["exact"]["excl_vat"]) == o["exact_excl"]  # the spec's exact value, to the digit
