"""The firmware PN532 driver and tap loop on I2C and SPI: nfc.open_driver asks the host board for
the bus (boards/host/board.py nfc_bus), which reaches the emulator through the I2C or SPI bridge."""
from __future__ import annotations

import threading

import pytest

from host_tests.nfc.scenario import OTHER7, UID4, UID7, UID10, run_reader, token
from sim.pn532_emu import PACKET_FAULTS, Pn532Emulator


def _taps(*uids: bytes) -> list:
    return [[token(u), len(u)] for u in uids]


@pytest.mark.parametrize("uid", [UID4, UID7, UID10], ids=["4-byte", "7-byte", "10-byte"])
def test_a_tap_is_one_token(pn532_packet, uid):
    pn532_packet.plan([None, uid, uid, uid])
    out = run_reader(pn532_packet.url, polls=6, bus=pn532_packet.bus)
    assert out["taps"] == _taps(uid), out["log"]
    assert out["fault_count"] == 0
    assert uid.hex() not in out["log"].lower()


def test_hold_remove_retap_and_swap(pn532_packet):
    pn532_packet.plan([UID7, UID7, None, None, UID7, OTHER7, OTHER7, None, None, UID4])
    out = run_reader(pn532_packet.url, polls=12, bus=pn532_packet.bus)
    assert out["taps"] == _taps(UID7, UID7, OTHER7, UID4)


@pytest.mark.parametrize("fault", PACKET_FAULTS)
def test_fault_while_card_arrives(pn532_packet, fault):
    pn532_packet.plan([None, (UID7, fault), UID7, UID7, None])
    out = run_reader(pn532_packet.url, polls=7, bus=pn532_packet.bus)
    assert out["taps"] == _taps(UID7), out["log"]
    assert pn532_packet.pending_faults() == 0
    if fault in ("bad_lcs", "bad_dcs"):
        assert pn532_packet.stats.nacks_from_host >= 1  # asked again, got a good copy
    if fault == "no_answer":
        assert pn532_packet.stats.aborts >= 1


@pytest.mark.parametrize("fault", ["silence", "no_answer", "error_frame"])
def test_fault_while_card_held_is_not_a_new_tap(pn532_packet, fault):
    pn532_packet.plan([UID10, UID10, (UID10, fault), UID10, UID10])
    out = run_reader(pn532_packet.url, polls=7, bus=pn532_packet.bus)
    assert out["taps"] == _taps(UID10), out["log"]


def test_dead_reader_is_a_fault_then_comes_back(pn532_packet):
    pn532_packet.dead = True  # I2C: its address is not acknowledged; SPI: never ready
    timer = threading.Timer(1.0, setattr, args=(pn532_packet, "dead", False))
    timer.start()
    try:
        pn532_packet.plan([None, UID4, UID4])
        out = run_reader(pn532_packet.url, polls=3, bus=pn532_packet.bus, timeout=60)
    finally:
        timer.cancel()
    assert out["taps"] == _taps(UID4)
    assert out["fault_count"] >= 1 and "reader back after" in out["log"]


SOFTWARE_REVERSAL = """
import asyncio
from nfc.pn532 import Pn532
from nfc.pn532_link import Spi
from spi_bridge import SpiBridge

async def main():
    bus = SpiBridge({url!r})  # most significant bit first: the link reverses every byte itself
    reader = Pn532(Spi(bus, bus.cs))
    await reader.init()
    uid = bytearray(10)
    n = await reader.read_uid(uid)
    emit([list(reader.firmware), n, bytes(uid[:n]).hex()])

asyncio.run(main())
"""


def test_spi_bit_reversal_in_software_matches_an_lsb_first_bus(mpy):
    with Pn532Emulator(bus="spi") as emu:
        url = emu.serve_tcp()
        emu.present(UID7)
        assert mpy.run(SOFTWARE_REVERSAL.format(url=url)).value == [[0x32, 1, 6, 7], 7, UID7.hex()]


I2C_ERRORS = """
import errno
from i2c_bridge import I2cBridge
bus = I2cBridge({url!r})
out = []
try:
    bus.writeto(0x25, b"\\x00")
except OSError as exc:
    out.append(exc.args[0] == errno.ENODEV)
out.append(bus.readfrom(0x24, 1) == b"\\x00")  # nothing waiting: not ready
emit(out)
"""


def test_i2c_bridge_reports_an_unanswered_address_as_enodev(mpy):
    with Pn532Emulator(bus="i2c") as emu:
        assert mpy.run(I2C_ERRORS.format(url=emu.serve_tcp())).value == [True, True]


BAD_BUS = """
from nfc import open_driver
out = []
for kind, url, bus in [("mfrc522", "tcp://127.0.0.1:1", "i2c"), ("pn532", "tcp://127.0.0.1:1", "can"),
                       ("pn532", "/dev/ttyS9", "i2c")]:
    try:
        open_driver(kind, url, bus)
        out.append(None)
    except ValueError as exc:
        out.append(str(exc))
emit(out)
"""


def test_a_bus_that_cannot_carry_the_reader_is_a_clear_error(mpy):
    out = mpy.run(BAD_BUS).value
    assert "SPI only" in out[0] and "uart, i2c or spi" in out[1] and "tcp:// bridge" in out[2]
