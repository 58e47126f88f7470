"""Numbers on the screens (firmware/display/fmt.py) and the idle screen's price components
(firmware/display/prices.py) under MicroPython: integers in, text out."""
from __future__ import annotations

import json

from host_tests.display.conftest import run_mp

FMT = """
from display import fmt
emit({
    "amount": [fmt.amount(1234, 2), fmt.amount(5, 2), fmt.amount(0, 2), fmt.amount(-150, 2), fmt.amount(1234, 0),
               fmt.amount(12345, 3)],
    # 0.395 EUR/kWh + 20 %: 0.474; 0.30 + 20 %: 0.36; 0.2999 + 19 %: 0.356881 -> 0.3569; 2.00 + 0 %: 2.00
    "unit": [fmt.unit_price(395000, 2000, 2), fmt.unit_price(300000, 2000, 2), fmt.unit_price(299900, 1900, 2),
             fmt.unit_price(2000000, None, 2), fmt.unit_price(150, 0, 2), fmt.unit_price(1000000, 0, 0)],
    "kwh": [fmt.kwh(0), fmt.kwh(12345), fmt.kwh(999)],
    "duration": [fmt.duration(0), fmt.duration(754), fmt.duration(90061)],
})
"""


def test_money_energy_and_time_text():
    out = run_mp(FMT).value
    assert out["amount"] == ["12.34", "0.05", "0.00", "-1.50", "1234", "12.345"]
    assert out["unit"] == ["0.474", "0.36", "0.3569", "2.00", "0.0002", "1"]
    assert out["kwh"] == ["0.000", "12.345", "0.999"]
    assert out["duration"] == ["0:00:00", "0:12:34", "25:01:01"]


# day 0.40 EUR/kWh from 07:00 to 22:00 (local, CET), night 0.25; a per-session fee in the day element only
TIME_OF_DAY = {"v": 1, "ver": 1, "tz": "CET-1CEST,M3.5.0,M10.5.0/3", "default": "tod", "contracts": {},
               "tariffs": {"tod": {"id": "tod", "currency": "EUR", "minor": 2, "elements": [
                   {"c": [["ENERGY", 400000, 2000, 1], ["FLAT", 1000000, 2000, 1]], "r": {"time": [420, 1320]}},
                   {"c": [["ENERGY", 250000, 2000, 1]]}]}}}

PRICES = """
import json
from billing.tariff import TariffSet
from display import prices
tset = TariffSet.from_doc(json.loads(DOC))
noon, night = 1718877600, 1718920800  # 2024-06-20 12:00 and 2024-06-21 00:00 CEST (UTC+2)
emit([prices.components(tset, noon, True), prices.components(tset, night, True), prices.components(tset, noon, False)])
"""


def test_idle_prices_are_the_components_that_apply_now():
    noon, night, unknown_time = run_mp(f"DOC = {json.dumps(json.dumps(TIME_OF_DAY))}\n" + PRICES).value
    assert noon == [[0, 400000, 2000], [3, 1000000, 2000]]  # ENERGY (day), FLAT
    # at night the day element does not apply: the night energy price; the FLAT only exists in the
    # day element, so its (first) component is shown rather than nothing
    assert night == [[0, 250000, 2000], [3, 1000000, 2000]]
    # time unknown (quality U): time-restricted elements never apply, as in the pricer
    assert unknown_time == [[0, 250000, 2000], [3, 1000000, 2000]]
