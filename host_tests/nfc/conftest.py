from __future__ import annotations

import pytest

from sim.pn532_emu import Pn532Emulator


@pytest.fixture
def pn532():
    """An emulated PN532 on a loopback TCP port (emu.url)."""
    with Pn532Emulator() as emu:
        emu.url = emu.serve_tcp()
        yield emu


@pytest.fixture(params=["i2c", "spi"])
def pn532_packet(request):
    """An emulated PN532 on I2C or SPI behind the host's bus bridge (emu.url, emu.bus)."""
    with Pn532Emulator(bus=request.param) as emu:
        emu.url = emu.serve_tcp()
        yield emu


@pytest.fixture
def mfrc522():
    """An emulated MFRC522 behind the host SPI bridge on a loopback TCP port (emu.url)."""
    from sim.mfrc522_emu import Mfrc522Emulator

    with Mfrc522Emulator() as emu:
        emu.url = emu.serve_tcp()
        yield emu
