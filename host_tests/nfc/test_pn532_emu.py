"""The PN532 emulator checked against an independent host driver (adafruit-circuitpython-pn532)."""
from __future__ import annotations

import pytest
import serial

from host_tests.nfc.scenario import UID4, UID7, UID10
from sim.pn532_emu import Pn532Emulator, info_frame

adafruit_uart = pytest.importorskip("adafruit_pn532.uart")


@pytest.fixture
def adafruit():
    with Pn532Emulator() as emu:
        port = serial.Serial(emu.serve_pty(), baudrate=115200, timeout=0.1)
        try:
            pn532 = adafruit_uart.PN532_UART(port)  # wakes it and reads the firmware version
            yield emu, pn532
        finally:
            port.close()


def test_firmware_version_and_sam(adafruit):
    emu, pn532 = adafruit
    assert pn532.firmware_version == (0x32, 0x01, 0x06, 0x07)
    assert emu.stats.commands[0x14] >= 1  # SAMConfiguration after the 0x55 wake-up


@pytest.mark.parametrize("uid", [UID4, UID7], ids=["4-byte", "7-byte"])
def test_reads_the_same_uid(adafruit, uid):
    emu, pn532 = adafruit
    emu.present(uid)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == uid


def test_ten_byte_uid_is_framed_right(adafruit):
    emu, pn532 = adafruit
    emu.present(UID10)
    # adafruit's driver stops at 7-byte UIDs; it parses our frame far enough to see the length
    with pytest.raises(RuntimeError, match="unexpectedly long UID"):
        pn532.read_passive_target(timeout=0.5)


def test_no_card_waits_then_card_arrives(adafruit):
    emu, pn532 = adafruit
    # Power-on MaxRetries is 0xFF: the PN532 keeps listing until a card shows up.
    assert pn532.read_passive_target(timeout=0.3) is None
    assert pn532.listen_for_passive_target(timeout=0.3)
    emu.present(UID7)
    assert bytes(pn532.get_passive_target(timeout=0.5)) == UID7


def test_remove_then_other_card(adafruit):
    emu, pn532 = adafruit
    emu.present(UID4)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == UID4
    emu.remove()
    assert pn532.read_passive_target(timeout=0.2) is None
    emu.present(UID7)
    assert bytes(pn532.read_passive_target(timeout=0.5)) == UID7


def test_info_frame_layout():
    # UM0701-02 6.2.1.1: GetFirmwareVersion answer of a PN532 v1.6
    assert info_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07])) == bytes.fromhex("0000ff06fad50332010607e800")
