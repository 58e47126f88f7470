"""Meter plausibility: no NaN, no negative, no decrease, no impossible jump, no stale value,
and a swapped meter is reported and starts a new baseline."""
from __future__ import annotations

import pytest

from host_tests.meter import oracle

ENERGY = (4, 0x0048, "f32")  # sdm120
POWER = (4, 0x000C, "f32")
SERIAL = (3, 0xFC00, "u32")


def _set(peer, kwh, w, serial=1001):
    peer.set(ENERGY, oracle.f32_bits(kwh) if isinstance(kwh, float) else kwh)
    peer.set(POWER, oracle.f32_bits(w) if isinstance(w, float) else w)
    peer.set(SERIAL, serial)


def _open(firmware, peer, **meter):
    firmware.open(peer.url, "sdm120", retries=0, meter=meter)


@pytest.mark.parametrize(
    "energy,power,why",
    [
        (0x7FC00000, 100.0, "NaN"),
        (0x7F800000, 100.0, "infinity"),
        (10.0, 0xFFC00000, "NaN"),
        (-5.0, 100.0, "negative"),
        (10.0, -700.0, "negative"),
        (10.0, 30000.0, "maximum"),
    ],
)
def test_bad_values_are_rejected_and_change_nothing(peer, firmware, energy, power, why):
    _set(peer, 10.0, 100.0)
    _open(firmware, peer)
    first = firmware.poll()["ok"]
    _set(peer, energy, power)
    bad = firmware.poll()
    assert bad["err"] == "ImplausibleReading" and why in bad["msg"], bad
    assert firmware.call("fresh") == first  # the last good reading stands, with its own time


def test_energy_never_decreases(peer, firmware):
    _set(peer, 10.0, 0.0)
    _open(firmware, peer)
    firmware.poll()
    _set(peer, 9.999, 0.0)
    assert firmware.poll()["err"] == "ImplausibleReading"
    _set(peer, 10.0, 0.0)
    assert firmware.poll()["ok"]["energy_wh"] == 10000


def test_jump_beyond_max_power_is_rejected(peer, firmware):
    _set(peer, 10.0, 0.0)
    _open(firmware, peer, max_power_w=3600, margin_wh=10)  # 1 Wh per second, plus 10 Wh
    firmware.poll()
    _set(peer, 10.5, 0.0)  # +500 Wh within milliseconds
    bad = firmware.poll()
    assert bad["err"] == "ImplausibleReading" and "jumped" in bad["msg"]
    _set(peer, 10.005, 0.0)  # +5 Wh: within the margin
    assert firmware.poll()["ok"]["energy_wh"] == 10005


def test_jump_allowance_grows_with_elapsed_time(peer, firmware):
    _set(peer, 10.0, 0.0)
    _open(firmware, peer, max_power_w=360000, margin_wh=0)  # 100 Wh per second
    firmware.poll()
    _set(peer, 10.05, 0.0)  # +50 Wh
    firmware.call("sleep", ms=600)
    assert firmware.poll()["ok"]["energy_wh"] == 10050


def test_stale_reading_is_unusable(peer, firmware):
    _set(peer, 10.0, 50.0)
    _open(firmware, peer, max_age_ms=300)
    r = firmware.poll()["ok"]
    assert firmware.call("fresh") == r
    peer.fault("silence", count=5)
    assert firmware.poll()["cause"] == "Timeout"
    firmware.call("sleep", ms=350)
    assert firmware.call("fresh") is None  # a silent meter is never billed from the old value
    assert firmware.call("fresh", max_age_ms=100000)["t_ms"] == r["t_ms"]  # never re-stamped


def test_serial_change_is_an_event_and_a_new_baseline(peer, firmware):
    _set(peer, 500.0, 0.0, serial=1001)
    _open(firmware, peer, serial_every=1)
    first = firmware.poll()["ok"]
    assert first["serial"] == "1001" and first["baseline"] == 0
    _set(peer, 3.0, 0.0, serial=2002)  # the new meter counts far less: fine, it is another meter
    swapped = firmware.poll()["ok"]
    assert swapped["serial"] == "2002" and swapped["serial_changed"] and swapped["baseline"] == 1
    assert swapped["energy_wh"] == 3000
    assert firmware.call("events") == [["serial-changed", {"old": "1001", "new": "2002", "baseline": 1}]]
    again = firmware.poll()["ok"]
    assert not again["serial_changed"] and again["baseline"] == 1


def test_serial_is_reread_after_a_failed_poll(peer, firmware):
    _set(peer, 500.0, 0.0, serial=1001)
    _open(firmware, peer, serial_every=1000)
    firmware.poll()
    peer.fault("silence")
    firmware.poll()
    _set(peer, 3.0, 0.0, serial=2002)
    assert firmware.poll()["ok"]["serial_changed"]


def test_missing_serial_register_means_no_serial(peer, firmware):
    _set(peer, 500.0, 20.0)
    peer.missing.add((3, 0xFC00))
    _open(firmware, peer)
    got = firmware.poll()["ok"]
    assert got["serial"] is None and got["energy_wh"] == 500000
    assert firmware.call("events") == [["serial-unsupported", {"model": "sdm120", "code": 2}]]
    assert firmware.poll()["ok"]["energy_wh"] == 500000
    assert sum(1 for r in peer.requests if r[1] == 3) == 1  # not asked again


def test_bad_meter_parameters_are_refused(mpy):
    out = mpy.run(
        """
from meter.meter import Meter
from meter import models
res = []
for kw in ({"unit": 0}, {"unit": 248}, {"max_power_w": 0}, {"max_age_ms": -1}, {"serial_every": 0},
           {"max_power_w": "25000"}):
    try:
        Meter(None, models.get("sdm630"), **kw); res.append("accepted")
    except ValueError:
        res.append("refused")
emit(res)
"""
    ).value
    assert out == ["refused"] * 6
