"""boards/esp32/board.py under MicroPython, on a stand-in `machine` (host_tests/flash/mp/machine.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from sim import mpy

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ESP32 = REPO / "boards" / "esp32"


def run_board(tmp_path, board: str | None, body: str, config: dict | None = None, extra: tuple = (),
              check: bool = True):
    """Run body on a root laid out as deploy leaves an ESP32 (board layer, board.txt, config at /);
    extra: more files or folders to put there (the firmware, the host's bus bridges). The value
    emitted, or with check=False the whole result (the process may end by a reset)."""
    import json
    import shutil

    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for src in [*ESP32.glob("*.py"), HERE / "mp" / "machine.py"]:
        shutil.copy(src, root / src.name)
    for src in extra:
        if src.is_dir():
            shutil.copytree(src, root / src.name, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
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
import board_defs
machine.CHIP = board_defs.BOARDS.get({board!r}, board_defs.BOARDS["esp32-devkitc"])["chip"]
import board
""" + body
    result = mpy.run(code, check=check)
    return result.value if check else result


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


def test_machine_constructors_take_the_esp32_signatures_only(tmp_path):
    out = run_board(tmp_path, "esp32-devkitc", """
def refused(make):
    try:
        make()
    except (TypeError, ValueError) as exc:
        return type(exc).__name__
    return None

P = machine.Pin
emit({
    "pin_kw": refused(lambda: P(4, P.OUT, val=1)),
    "uart_kw": refused(lambda: machine.UART(1, baudrate=9600, tx_pin=17)),
    "i2c_kw": refused(lambda: machine.I2C(0, scl=P(22), sda=P(21), frequency=100000)),
    "i2c_positional_pins": refused(lambda: machine.I2C(0, P(22), P(21))),
    "soft_i2c_kw": refused(lambda: machine.SoftI2C(P(22), P(21), freq=100000, id=0)),
    "spi_kw": refused(lambda: machine.SPI(1, baudrate=1000000, clk=P(14))),
    "wdt_kw": refused(lambda: machine.WDT(timeout_ms=5000)),
    "uart_ok": refused(lambda: machine.UART(2, 9600, 8, None, 1, tx=17, rx=16, timeout=0, timeout_char=0, rxbuf=256)),
    "spi_ok": refused(lambda: machine.SPI(2, 1000000, polarity=0, phase=0, bits=8, firstbit=machine.SPI.LSB,
                                          sck=P(18), mosi=P(23), miso=P(19))),
    "no_uart3": refused(lambda: machine.UART(3)),
    "no_gpio20": refused(lambda: P(20)),
    "input_only": refused(lambda: P(34, P.OUT)),
    "wdt_zero": refused(lambda: machine.WDT(timeout=0)),
})
""")
    assert out == {"pin_kw": "TypeError", "uart_kw": "TypeError", "i2c_kw": "TypeError",
                   "i2c_positional_pins": "TypeError", "soft_i2c_kw": "TypeError", "spi_kw": "TypeError",
                   "wdt_kw": "TypeError", "uart_ok": None, "spi_ok": None, "no_uart3": "ValueError",
                   "no_gpio20": "ValueError", "input_only": "ValueError", "wdt_zero": "ValueError"}


def test_uart_read_is_none_when_nothing_waits(tmp_path):
    out = run_board(tmp_path, "esp32-devkitc", """
u = machine.UART(1, 115200, tx=33, rx=32, timeout=0)
before = [u.read(), u.readinto(bytearray(4)), u.any()]
u.rx.extend(b"ok")
emit(before + [u.read() == b"ok", u.read()])
""")
    assert out == [None, None, 0, True, None]


def test_a_starved_watchdog_resets_the_process(tmp_path):
    result = run_board(tmp_path, "esp32-devkitc", """
import time
w = board.Watchdog(100)
w.feed()
time.sleep_ms(2000)
emit("still running")
""", check=False)
    assert result.results == [] and result.returncode != 0, result.log()
    assert "machine: WDT not fed for 100 ms: reset" in result.stderr


def test_a_fed_watchdog_lets_the_program_run_and_a_starved_one_calls_the_reset_hook(tmp_path):
    out = run_board(tmp_path, "esp32-devkitc", """
import time
resets = []
machine.on_reset = resets.append
w = board.Watchdog(150)
for _ in range(20):  # 400 ms, fed every 20 ms
    time.sleep_ms(20)
    w.feed()
fed = list(resets)
time.sleep_ms(400)
emit([fed, resets == [machine.WDT_RESET]])
""")
    assert out == [[], True]
