"""Every supported model read through the firmware driver from pymodbus, with exact values.

Register facts are written out here from ../shared/reference/meters.md, not taken from the
firmware's table, so a typo in firmware/meter/models.py fails the test.
"""
from __future__ import annotations

from fractions import Fraction

import pytest

from host_tests.meter import oracle
from sim.meter_peer import MeterPeer

F32_KWH = oracle.f32_bits(1234.5625)  # 1234562.5 Wh: half-up 1234563, round() 1234562
F32_W = oracle.f32_bits(7000.5)  # 7001 W half-up, round() gives 7000
ABB_CENTI_KWH = (1 << 32) + 123456  # above 2**32 centi-kWh: the low 32 bits alone read 1234.56 kWh

# model -> (energy (fn, addr, kind), raw, Wh), (power ..., raw, W), (serial (fn, addr, kind), raw, str) or None
FACTS = {
    "sdm120": (((4, 0x0048, "f32"), F32_KWH, 1234563), ((4, 0x000C, "f32"), F32_W, 7001),
               ((3, 0xFC00, "u32"), 19040123, "19040123")),
    "sdm230": (((4, 0x0048, "f32"), F32_KWH, 1234563), ((4, 0x000C, "f32"), F32_W, 7001),
               ((3, 0xFC00, "u32"), 19040124, "19040124")),
    "sdm630": (((4, 0x0048, "f32"), oracle.f32_bits(51285.249), 51285250), ((4, 0x0034, "f32"), F32_W, 7001),
               ((3, 0xFC00, "u32"), 21050001, "21050001")),
    "sdm72": (((4, 0x0048, "f32"), oracle.f32_bits(0.0625), 63), ((4, 0x0034, "f32"), oracle.f32_bits(2.5), 3),
              ((3, 0xFC00, "u32"), 1, "1")),
    "abb-b23": (((3, 0x5000, "u64"), ABB_CENTI_KWH, ABB_CENTI_KWH * 10), ((3, 0x5B14, "i32"), 1234550, 12346),
                ((3, 0x8900, "u32"), 70012345, "70012345")),
    "abb-b24": (((3, 0x5000, "u64"), (1 << 40) + 5, ((1 << 40) + 5) * 10), ((3, 0x5B14, "i32"), 49, 0),
                ((3, 0x8900, "u32"), 70012346, "70012346")),
    "em340": (((4, 0x0034, "i32_ws"), 1234567, 123456700), ((4, 0x0028, "i32_ws"), 25, 3),
              ((3, 0x5000, "str7"), "235411W", "235411W")),
    "eem-350": (((4, 0x003E, "i32_ws"), 70000, 7000000), ((4, 0x0028, "i32_ws"), 110005, 11001), None),
    "finder-7e": (((4, 0x1106, "f32"), oracle.f32_bits(16777215.5), 16777216), ((4, 0x1026, "f32"), F32_W, 7001),
                  None),
}


def _load(peer: MeterPeer, model: str) -> dict:
    energy, power, serial = FACTS[model]
    peer.set(energy[0], energy[1])
    peer.set(power[0], power[1])
    if serial:
        peer.set(serial[0], serial[1])
    return {"energy_wh": energy[2], "power_w": power[2], "serial": serial[2] if serial else None, "model": model}


def test_expected_values_are_exact():
    assert oracle.f32_scaled(F32_KWH, 1000) == 1234563 != oracle.naive_double(F32_KWH, 1000)
    assert oracle.half_up(Fraction(1234550, 100)) == 12346
    assert ABB_CENTI_KWH > 1 << 32


@pytest.mark.parametrize("model", sorted(FACTS))
def test_model_reads_exactly(peer, firmware, model):
    want = _load(peer, model)
    firmware.open(peer.url, model)
    got = firmware.poll()
    assert "ok" in got, got
    assert {k: got["ok"][k] for k in want} == want
    # Energy and power of each model come in as few reads as planned, all answered by pymodbus.
    stats = firmware.call("stats")
    assert stats["failures"] == 0 and stats["retried"] == 0


@pytest.mark.parametrize("model", ["sdm630", "abb-b23", "em340"])
def test_model_reads_over_pty(firmware, model):
    with MeterPeer("pty") as peer:
        want = _load(peer, model)
        firmware.open(peer.url, model)
        got = firmware.poll()
        assert "ok" in got, got
        assert {k: got["ok"][k] for k in want} == want


def test_em340_energy_and_power_in_one_read(peer, firmware):
    _load(peer, "em340")
    opened = firmware.open(peer.url, "em340")
    assert opened["blocks"] == [[4, 0x28, 14]]  # 0x28..0x35: 14 registers, one transaction
    firmware.poll()
    reads = [r for r in peer.requests if r[1] == 4]
    assert reads == [(1, 4, 0x28, 14)]


def test_abb_energy_read_whole(peer, firmware):
    _load(peer, "abb-b23")
    firmware.open(peer.url, "abb-b23")
    assert firmware.poll()["ok"]["energy_wh"] == ABB_CENTI_KWH * 10
    assert (1, 3, 0x5000, 4) in peer.requests


def test_generic_model_from_config(peer, firmware):
    generic = {"energy": [3, 100, "u32", "Wh"], "power": [3, 102, "i16", "0.1W"], "serial": [3, 200, "str4"]}
    peer.set((3, 100, "u32"), 987654321)
    peer.set((3, 102, "i16"), 12345)
    peer.set((3, 200, "str4"), "GEN-01")
    opened = firmware.open(peer.url, "generic", generic=generic)
    assert opened["blocks"] == [[3, 100, 3]]
    got = firmware.poll()["ok"]
    assert (got["energy_wh"], got["power_w"], got["serial"]) == (987654321, 1235, "GEN-01")


@pytest.mark.parametrize(
    "generic",
    [
        {"energy": [5, 0, "f32", "kWh"], "power": [4, 0, "f32", "W"]},
        {"energy": [4, 0, "f33", "kWh"], "power": [4, 0, "f32", "W"]},
        {"energy": [4, 0, "f32", "W"], "power": [4, 0, "f32", "W"]},
        {"energy": [4, 70000, "f32", "kWh"], "power": [4, 0, "f32", "W"]},
        {"energy": [4, 0, "f32"], "power": [4, 0, "f32", "W"]},
        {"power": [4, 0, "f32", "W"]},
        None,
    ],
)
def test_bad_generic_model_is_refused(mpy, generic):
    out = mpy.run(
        f"""
from meter import models
try:
    models.get("generic", {generic!r})
    emit("accepted")
except models.ModelError as e:
    emit("refused: " + str(e))
"""
    ).value
    assert out.startswith("refused: ")


def test_unknown_model_names_the_known_ones(mpy):
    out = mpy.run(
        """
from meter import models
try:
    models.get("sdm999")
except models.ModelError as e:
    emit(str(e))
"""
    ).value
    assert "sdm999" in out and "sdm630" in out and "generic" in out
