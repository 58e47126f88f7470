"""Every ESP32 board's card reader on the bus it is wired to, through the production code path:
nfc.open_driver -> boards/esp32/board.py nfc_bus -> machine.UART / I2C / SPI (the strict stand-in in
mp/machine.py, its bus attached to an emulator through the host's stream and bus bridges) -> the
driver and the tap loop, which turn a card on the emulated reader into its token."""
from __future__ import annotations

import importlib.util

import pytest

from host_tests.flash.test_esp32_board import ESP32, REPO, run_board
from host_tests.nfc.scenario import SECRET_HEX, UID7, token
from sim.mfrc522_emu import Mfrc522Emulator
from sim.pn532_emu import Pn532Emulator

_spec = importlib.util.spec_from_file_location("board_defs_for_tests", ESP32 / "board_defs.py")
board_defs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(board_defs)

# The firmware and the host's bridges on the board's filesystem, as a .mpy deploy would put them.
EXTRA = tuple(p for p in (REPO / "firmware").iterdir() if (p / "__init__.py").exists()) + tuple(
    REPO / "boards" / "host" / name for name in ("tcp_bridge.py", "spi_bridge.py", "i2c_bridge.py"))
SPI_LSB = 1


def _cases() -> list:
    cases = []
    for board, spec in sorted(board_defs.BOARDS.items()):
        for field, wiring in sorted(spec.items()):
            if not field.startswith("nfc") or not wiring:
                continue
            bus = wiring.get("bus", "uart")
            readers = ["pn532", "mfrc522"] if bus == "spi" else ["pn532"]
            for reader in readers:
                cases.append(pytest.param(board, field, field, reader, id=f"{board}:{field}:{reader}"))
            if bus == "uart":  # the same wiring named by its UART
                name = "uart%d" % wiring["uart"]
                cases.append(pytest.param(board, field, name, "pn532", id=f"{board}:{name}:pn532"))
    return cases


ATTACH = {
    "uart": "from hal.stream import TcpStream\nmachine.attach('UART', {id}, TcpStream({url!r}, 115200))\n",
    "i2c": "from i2c_bridge import I2cBridge\nmachine.attach('I2C', {id}, I2cBridge({url!r}))\n",
    "spi": "from spi_bridge import SpiBridge\nmachine.attach('SPI', {id}, SpiBridge({url!r}), cs={cs})\n",
}

TAP_LOOP = """
import asyncio
from nfc import open_driver
from nfc.reader import Reader

async def main():
    reader = Reader(open_driver({reader!r}, {name!r}), {secret!r}, poll_ms=2, absent_polls=2)
    taps = []
    task = asyncio.create_task(reader.run(lambda t: taps.append([t.token, t.uid_len]), lambda text: None))
    while reader.polls < 5:
        await asyncio.sleep_ms(2)
    task.cancel()
    emit({{"taps": taps, "made": machine.made, "faults": reader.faults}})

asyncio.run(main())
"""


def _emulator(reader: str, bus: str):
    if reader == "mfrc522":
        return Mfrc522Emulator()
    return Pn532Emulator(bus={"uart": "hsu"}.get(bus, bus))


@pytest.mark.parametrize("board,field,name,reader", _cases())
def test_the_board_reads_a_tap_on_its_reader_wiring(tmp_path, board, field, name, reader):
    wiring = board_defs.BOARDS[board][field]
    bus = wiring.get("bus", "uart")
    with _emulator(reader, bus) as emu:
        url = emu.serve_tcp()
        emu.plan([None, UID7, UID7])
        attach = ATTACH[bus].format(id=wiring.get(bus), url=url, cs=wiring.get("cs"))
        out = run_board(tmp_path, board, attach + TAP_LOOP.format(reader=reader, name=name, secret=SECRET_HEX),
                        extra=EXTRA)
    assert out["taps"] == [[token(UID7), 7]], out
    made = out["made"]
    if bus == "uart":
        kind, uart, settings = next(m for m in made if m[0] == "UART")
        assert (uart, settings["baudrate"], settings["tx"], settings["rx"]) == (
            wiring["uart"], 115200, wiring["tx"], wiring["rx"])
    elif bus == "i2c":
        assert ["I2C", wiring["i2c"], {"freq": 100000, "scl": wiring["scl"], "sda": wiring["sda"]}] in made
    else:
        firstbit = SPI_LSB if reader == "pn532" else 0  # the PN532 shifts LSB first, the MFRC522 MSB first
        assert ["SPI", wiring["spi"], {"baudrate": 1000000, "polarity": 0, "phase": 0, "bits": 8,
                                       "firstbit": firstbit, "sck": wiring["sck"], "mosi": wiring["mosi"],
                                       "miso": wiring["miso"]}] in made
        assert ["Pin", wiring["cs"], 3, None, 1] in made  # chip select: an output, released
        if wiring.get("rst") is not None:
            assert ["Pin", wiring["rst"], 3, None, 1] in made  # the reader's reset line: running


WRONG = """
from nfc import open_driver
out = []
for reader, name, bus in {cases!r}:
    try:
        open_driver(reader, name, bus)
        out.append(None)
    except ValueError as exc:
        out.append(str(exc))
emit(out)
"""


def test_a_reader_its_board_does_not_wire_is_a_clear_error(tmp_path):
    cases = [("mfrc522", "nfc", None), ("pn532", "nfc", "i2c"), ("pn532", "nfc_x", None), ("pn532", "tcp://127.0.0.1:1", "spi")]
    out = run_board(tmp_path, "esp32-devkitc", WRONG.format(cases=cases), extra=EXTRA)
    assert out[0] == "board esp32-devkitc wires reader nfc on uart, not spi: set nfc.url to nfc_spi"
    assert out[1] == "board esp32-devkitc wires reader nfc on uart, not i2c"
    assert out[2] == "board esp32-devkitc has no card reader wiring 'nfc_x': use tcp://host:port or nfc or nfc_spi"
    assert out[3] == "tcp:// carries a reader's HSU only, not spi"
    out = run_board(tmp_path, "olimex-esp32-poe", WRONG.format(cases=[("mfrc522", "nfc", None)]), extra=EXTRA)
    assert out == ["board olimex-esp32-poe wires reader nfc on i2c, not spi"]
