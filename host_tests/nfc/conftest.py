from __future__ import annotations

import pytest

from sim.pn532_emu import Pn532Emulator


@pytest.fixture
def pn532():
    """An emulated PN532 on a loopback TCP port (emu.url)."""
    with Pn532Emulator() as emu:
        emu.url = emu.serve_tcp()
        yield emu


@pytest.fixture
def mfrc522():
    """An emulated MFRC522 behind the host SPI bridge on a loopback TCP port (emu.url)."""
    from sim.mfrc522_emu import Mfrc522Emulator

    with Mfrc522Emulator() as emu:
        emu.url = emu.serve_tcp()
        yield emu
