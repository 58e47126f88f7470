from __future__ import annotations

import pytest

from host_tests.support.pn532_emu import Pn532Emulator


@pytest.fixture
def pn532():
    """An emulated PN532 on a loopback TCP port (emu.url)."""
    with Pn532Emulator() as emu:
        emu.url = emu.serve_tcp()
        yield emu
