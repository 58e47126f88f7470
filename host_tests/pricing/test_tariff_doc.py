"""The device tariff document: the compiler's output loads; malformed documents are rejected clearly."""
from __future__ import annotations

import copy
import json

import pytest

from evc.tariff import TariffCompileError, compile_tariff
from host_tests.pricing.conftest import doc, ocpi
from sim import mpy

GOOD = doc(ocpi([
    {"price_components": [{"type": "FLAT", "price": "0.50", "vat": 20, "step_size": 1}]},
    {"price_components": [{"type": "ENERGY", "price": "0.3950", "vat": "5.2", "step_size": 100}],
     "restrictions": {"start_time": "22:00", "end_time": "06:00", "min_kwh": "1.5", "max_power": "11",
                      "day_of_week": ["SATURDAY", "SUNDAY"], "start_date": "2024-01-01", "end_date": "2030-01-01",
                      "min_current": "6.5", "max_duration": 7200}},
    {"price_components": [{"type": "TIME", "price": "1.25", "step_size": 60},
                          {"type": "PARKING_TIME", "price": "6", "vat": 0, "step_size": 300}]},
], min_price={"excl_vat": "0.5", "incl_vat": "0.6"}, max_price={"excl_vat": 50},
    end_date_time="2030-01-01T00:00:00Z"), "Europe/Amsterdam", {"C-1": ocpi([{"price_components": [
        {"type": "ENERGY", "price": 0, "step_size": 1}]}], id="FREE")})


def test_compiled_document_is_exact_integers():
    t = GOOD["tariffs"]["T"]
    assert t["elements"][1] == {
        "c": [["ENERGY", 395000, 520, 100]],
        "r": {"time": [1320, 360], "date": [20240101, 20300101], "wh": [1500, None], "ma": [6500, None],
              "w": [None, 11000], "s": [None, 7200], "dow": 96}}
    assert t["min"] == [500000, 600000] and t["max"] == [50000000, 50000000]
    assert t["valid"] == [None, 1893456000] and GOOD["tz"] == "CET-1CEST,M3.5.0,M10.5.0/3"
    assert GOOD["contracts"] == {"C-1": "FREE"} and GOOD["default"] == "T"
    assert "1.5" not in json.dumps(GOOD) and "." not in json.dumps(t)  # no fractions reach the device


def test_reservation_elements_are_dropped_and_end_of_day_is_1440():
    t = compile_tariff(ocpi([
        {"price_components": [{"type": "TIME", "price": 5, "step_size": 60}], "restrictions": {"reservation": "RESERVATION"}},
        {"price_components": [{"type": "TIME", "price": 2, "step_size": 60}], "restrictions": {"start_time": "20:00", "end_time": "00:00"}},
    ]))
    assert t["elements"] == [{"c": [["TIME", 2000000, None, 60]], "r": {"time": [1200, 1440]}}]
    with pytest.raises(TariffCompileError, match="has more than 6 decimals"):
        compile_tariff(ocpi([{"price_components": [{"type": "TIME", "price": "0.0000001", "step_size": 1}]}]))


def _mut(path, value):
    def f(d):
        node = d
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return f


E1 = ["tariffs", "T", "elements", 1]
BAD = [
    ("v", _mut(["v"], 2), "v=1"),
    ("ver", _mut(["ver"], "7"), "ver"),
    ("tz", _mut(["tz"], "CET-1CEST"), "tz"),
    ("default", _mut(["default"], "X"), "default"),
    ("contract", _mut(["contracts", "C-1"], "NOPE"), "contracts"),
    ("currency", _mut(["tariffs", "T", "currency"], "eur"), "currency"),
    ("no elements", _mut(["tariffs", "T", "elements"], []), "elements"),
    ("float price", _mut(E1 + ["c", 0, 1], 0.395), "price"),
    ("bool price", _mut(E1 + ["c", 0, 1], True), "price"),
    ("negative price", _mut(E1 + ["c", 0, 1], -1), "price"),
    ("string vat", _mut(E1 + ["c", 0, 2], "5.2"), "vat"),
    ("vat > 100%", _mut(E1 + ["c", 0, 2], 10001), "vat"),
    ("step 0", _mut(E1 + ["c", 0, 3], 0), "step"),
    ("unknown dim", _mut(E1 + ["c", 0, 0], "SPEED"), "dimension"),
    ("short comp", _mut(E1 + ["c", 0], ["ENERGY", 1, None]), "dimension"),
    ("time 1440 start", _mut(E1 + ["r", "time"], [1440, 60]), "time"),
    ("time equal", _mut(E1 + ["r", "time"], [60, 60]), "start equals end"),
    ("time open", _mut(E1 + ["r", "time"], [None, None]), "both ends open"),
    ("bad date", _mut(E1 + ["r", "date"], [20241301, None]), "date"),
    ("date empty", _mut(E1 + ["r", "date"], [20250101, 20240101]), "empty range"),
    ("wh empty", _mut(E1 + ["r", "wh"], [5, 5]), "empty range"),
    ("dow 0", _mut(E1 + ["r", "dow"], 0), "dow"),
    ("dow 128", _mut(E1 + ["r", "dow"], 128), "dow"),
    ("unknown restriction", _mut(E1 + ["r", "speed"], [1, 2]), "unknown restriction"),
    ("min > max", _mut(["tariffs", "T", "min"], [60000000, 60000000]), "min price above max"),
    ("bound shape", _mut(["tariffs", "T", "max"], [1]), "max"),
    ("dup dim", _mut(["tariffs", "T", "elements", 2, "c", 1, 0], "TIME"), "twice"),
    ("no c", _mut(E1 + ["c"], KeyError), "'c'"),
    ("valid", _mut(["tariffs", "T", "valid"], [None]), "valid"),
    ("minor", _mut(["tariffs", "T", "minor"], 9), "minor"),
]


def test_malformed_documents_are_rejected_with_a_clear_error():
    docs = []
    for _, mutate, _ in BAD:
        d = copy.deepcopy(GOOD)
        mutate(d)
        docs.append(d)
    got = mpy.run(f"""
import json
from billing.tariff import TariffSet, TariffError
out = []
for d in json.loads({json.dumps([GOOD] + docs)!r}):
    try:
        s = TariffSet.from_doc(d)
        out.append(["ok", s.select("C-1").id, s.select("other").id, len(s.select().cands[0])])
    except TariffError as e:
        out.append(str(e))
emit(out)
""").value
    assert got[0] == ["ok", "FREE", "T", 1]
    for (name, _, needle), msg in zip(BAD, got[1:]):
        assert isinstance(msg, str) and needle in msg, f"{name}: {msg}"
