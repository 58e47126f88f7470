"""The host board's frame files (boards/host/display_files.py, under MicroPython) and their
conversion to PNG (sim/display.py)."""
from __future__ import annotations

from PIL import Image

from sim import display, mpy


def test_frames_and_lcd_text_become_pngs(tmp_path):
    folder = tmp_path / "frames"
    mpy.run(f"""
import framebuf
from display_files import FrameFiles
f = FrameFiles({str(folder)!r})
buf = bytearray(1024)
fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
fb.pixel(3, 9, 1)
fb.pixel(127, 63, 1)
f.graphic(buf, 128, 64)
f.text(("Charging", "1.000 kWh"), 20)
""")
    vlsb, txt = sorted(folder.iterdir(), key=lambda p: p.suffix == ".txt")
    px = display.read_frame(vlsb)
    assert sum(map(sum, px)) == 2 and px[9][3] == 1 and px[63][127] == 1
    assert txt.read_text() == f"{'Charging':<20}\n{'1.000 kWh':<20}"
    made = display.convert(folder, tmp_path / "png", prefix="chg-1-", scale=2)
    assert [p.name for p in made] == sorted(f"chg-1-{p.stem}.png" for p in (vlsb, txt))
    assert Image.open(tmp_path / "png" / f"chg-1-{vlsb.stem}.png").size == (256, 128)
