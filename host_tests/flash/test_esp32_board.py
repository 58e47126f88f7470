"""boards/esp32/board.py under MicroPython, on a stand-in `machine` (host_tests/flash/mp/machine.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from sim import mpy

HERE = Path(__file__).resolve().parent
ESP32 = HERE.parents[1] / "boards" / "esp32"


def run_board(tmp_path, board: str | None, body: str, config: dict | None = None):
    """Run body on a root laid out as deploy leaves an ESP32 (board layer, board.txt, config at /)."""
    import json
    import shutil

    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for src in [*ESP32.glob("*.py"), HERE / "mp" / "machine.py"]:
        shutil.copy(src, root / src.name)
    if board:
        (root / "board.txt").write_text(board + "\n")
    if config is not None:
        (root / "config.json").write_text(json.dumps(config))
    code = f"""
import vfs, os
class _R(vfs.VfsPosix):
    def rename(self, a, b):
        return super().rename(a.lstrip("/"), b.lstrip("/"))
vfs.umount("/")
vfs.mount(_R({str(root)!r}), "/")
os.chdir("/")
import sys
sys.path.insert(0, "")
import machine
import board
""" + body
    return mpy.run(code).value


def test_roles_pins_and_overrides(tmp_path):
    out = run_board(tmp_path, "esp32-devkitc", """
relay = board.relay_pin()
plug = board.pin("plug")
emit({"name": board.NAME, "relay": board.gpio_of("relay"), "made": machine.made, "buzzer": board.gpio_of("buzzer"),
      "de": board.gpio_of("rs485_de"), "data": board.mount_flash(), "dirs": os.listdir("/")})
""", config={"pins": {"relay": "GPIO27", "led_fault": 13}})
    assert out["name"] == "esp32-devkitc" and out["relay"] == 27 and out["buzzer"] == 18 and out["de"] == 4
    assert ["Pin", 27, 3, None, 0] in out["made"]  # relay: output, driven low (open) from the start
    assert ["Pin", 35, 1, None, None] in out["made"]  # plug: input-only GPIO35, no pull
    assert out["data"] == "/data" and "data" in out["dirs"]


def test_board_without_a_buzzer_gets_a_silent_pin(tmp_path):
    out = run_board(tmp_path, "olimex-esp32-poe", """
b = board.pin("buzzer", 0)
b.on()
emit({"cls": type(b).__name__, "eth": board.SPEC["eth"]["phy"]})
""")
    assert out == {"cls": "_NoPin", "eth": "LAN8720"}


def test_uart_stream_contract(tmp_path):
    out = run_board(tmp_path, "esp32-devkitc", """
s = board.open_uart("uart2", 9600, 8, "E", 1)
buf = bytearray(8)
empty = s.readinto(buf)
s._uart.rx.extend(b"\\x01\\x03\\x02")
got = s.readinto(buf)
s.write(b"\\x01\\x04")
s.flush()
same = board.open_uart("rs485", 19200)
try:
    board.open_uart("uart0")
    err = None
except ValueError as e:
    err = str(e)
s.close()
emit({"empty": empty, "got": got, "data": list(buf[:got]), "tx": list(s._uart.tx), "uart": machine.made[0], "err": err})
""")
    assert out["empty"] == 0 and out["got"] == 3 and out["data"] == [1, 3, 2] and out["tx"] == [1, 4]
    kind, uart_id, kw = out["uart"]
    assert (kind, uart_id, kw["tx"], kw["rx"], kw["parity"], kw["timeout"]) == ("UART", 2, 17, 16, 0, 0)
    assert "no UART 'uart0'" in out["err"] and "rs485 (uart2)" in out["err"]


@pytest.mark.parametrize("flag,button,expected", [(False, 1, False), (True, 1, True), (False, 0, True)])
def test_maintenance_mode_by_flag_file_or_button(tmp_path, flag, button, expected):
    body = f"""
if {flag!r}:
    open(board.MAINTENANCE_FLAG, "w").close()
machine.levels[0] = {button}
emit(board.maintenance_mode())
"""
    assert run_board(tmp_path, "esp32-devkitc", body) is expected


def test_watchdog_is_reported_armed(tmp_path):
    out = run_board(tmp_path, "esp32-s3-devkitc-1", """
before = board.watchdog_armed()
w = board.Watchdog(8000)
w.feed()
emit([before, board.watchdog_armed(), board.rtc_quality() in ("I", "U"), board.config_path()])
""")
    assert out == [False, True, True, "/config.json"]


def test_unknown_board_name_falls_back_with_a_message(tmp_path):
    assert run_board(tmp_path, "esp32-nope", "emit(board.NAME)") == "esp32-devkitc"
