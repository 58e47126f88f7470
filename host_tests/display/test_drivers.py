"""The display drivers (firmware/display/ssd1306.py, sh1106.py, hd44780.py) under MicroPython,
on the I2C bridge to the emulators: initialisation, a frame's every pixel, text updates."""
from __future__ import annotations

import random

import pytest

from host_tests.display.conftest import run_mp
from sim.hd44780_emu import LcdEmulator
from sim.ssd1306_emu import HORIZONTAL, OledEmulator

PATTERN = """
from i2c_bridge import I2cBridge
from display.panel import open_driver
d = open_driver({chip!r}, I2cBridge({url!r}))
d.buf[:] = bytes.fromhex({frame!r})
d.show()
d.fb.fill(0)
d.fb.pixel(0, 0, 1)
d.fb.pixel(127, 63, 1)
emit(bytes(d.buf).hex())
"""


@pytest.mark.parametrize("chip", ["ssd1306", "sh1106"])
def test_oled_init_and_a_random_frame_reach_the_glass_pixel_for_pixel(serve, chip):
    emu = OledEmulator(chip)
    frame = random.Random(chip).randbytes(1024)
    run_mp(PATTERN.format(chip=chip, url=serve(emu), frame=frame.hex()))
    assert emu.errors == []
    assert emu.on and emu.charge_pump and emu.seg_remap and emu.com_remap and emu.mux == 64
    assert emu.start_line == 0 and emu.offset_rows == 0 and not emu.invert and not emu.all_on
    if chip == "ssd1306":
        assert emu.mode == HORIZONTAL
    want = [[frame[(y >> 3) * 128 + x] >> (y & 7) & 1 for x in range(128)] for y in range(64)]
    assert emu.glass() == want
    assert emu.commands[0] == (0xAE,)  # off while it is set up, on at the end of the init
    assert (0xAF,) in emu.commands


def test_oled_that_does_not_answer_raises_enodev(serve):
    emu = OledEmulator(addr=0x3D)  # strapped to the other address
    out = run_mp(f"""
import errno
from i2c_bridge import I2cBridge
from display.panel import open_driver
try:
    open_driver("ssd1306", I2cBridge({serve(emu)!r}))
except OSError as exc:
    emit(exc.args[0] == errno.ENODEV)
""").value
    assert out is True


LCD = """
from i2c_bridge import I2cBridge
from display.panel import open_driver
bus = I2cBridge({url!r})
writes = []
real = bus.writeto
def counting(addr, buf, stop=True):
    writes.append(len(buf))
    return real(addr, buf)
bus.writeto = counting
d = open_driver("hd44780", bus)
n0 = len(writes)
d.text(["Charging", "1.000 kWh", "0:00:01", "0.50 EUR"])
n1 = len(writes)
d.text(["Charging", "1.001 kWh", "0:00:02", "0.50 EUR"])
n2 = len(writes)
d.text(["Preis: 0,36 \u20ac/kWh"])
emit([n1 - n0, n2 - n1])
"""


def test_lcd_init_text_and_only_changed_rows_rewritten(serve):
    lcd = LcdEmulator()
    rewrites = run_mp(LCD.format(url=serve(lcd))).value
    assert lcd.errors == []
    assert lcd.init_steps == ["3", "3", "3", "2"] and lcd.four_bit and lcd.two_line and lcd.display_on
    assert lcd.backlight
    assert rewrites == [4, 2]  # a write per row; then only the two rows that changed
    assert lcd.text() == [f"{'Preis: 0,36 ?/kWh':<20}"] + [" " * 20] * 3  # € is not in the ROM: "?"
