"""The layout beside a QR code (firmware/display/render.py under MicroPython): the code's size is
known from the link's length without encoding it (the panel keeps no symbol), and text never
reaches into the code's quiet zone, whatever the version."""
from __future__ import annotations

from host_tests.display.conftest import run_mp

# each capacity of versions 1..9 at level M and one byte more (docs/display.md)
LENGTHS = [14, 15, 26, 27, 42, 43, 62, 63, 84, 85, 106, 107, 122, 123, 152, 153, 180]

LAYOUT = """
import framebuf
from display import qr, render

out = {"sizes": [], "none": render.text_cols(128, 64, None)}
for n in LENGTHS:
    link = "h" * n
    out["sizes"].append([n, render.qr_size(link), qr.encode(link).size, render.text_cols(128, 64, link)])
try:
    render.qr_size("h" * 181)
    out["too_long"] = None
except qr.QrError as e:
    out["too_long"] = str(e)
# the largest code with the longest title and full lines beside it
buf = bytearray(128 * 8)
fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
link = "h" * 180
cols = render.text_cols(128, 64, link)
code = qr.encode(link)
render.draw(fb, 128, 64, ["T" * 16] + ["W" * cols] * 7, code)
scale, side = render.qr_side(code.size, 64)
x0, y0 = 128 - side, (64 - side) // 2
quiet = [fb.pixel(x, y) for y in range(y0, y0 + side) for x in range(x0, x0 + side)
         if not (x0 + 4 * scale <= x < x0 + side - 4 * scale and y0 + 4 * scale <= y < y0 + side - 4 * scale)]
modules = [fb.pixel(x0 + 4 * scale + x * scale, y0 + 4 * scale + y * scale) == 1 - code.dark(x, y)
           for y in range(code.size) for x in range(code.size)]
out["quiet_all_lit"] = all(quiet)
out["modules_exact"] = all(modules)
out["cols_v9"] = cols
emit(out)
"""


def test_code_size_from_the_link_length_and_text_clear_of_the_quiet_zone():
    out = run_mp(f"LENGTHS = {LENGTHS}\n" + LAYOUT).value
    assert out["none"] == 16
    for n, predicted, encoded, cols in out["sizes"]:
        assert predicted == encoded, n
        side = encoded + 8  # one pixel a module up to version 9 (2 for version 1)
        if encoded == 21:
            side *= 2
        assert cols == (128 - side - 2) // 8, n
    assert "180" in out["too_long"]
    assert out["quiet_all_lit"] and out["modules_exact"] and out["cols_v9"] == 8


FORGOTTEN = """
import gc, sys
from display import render

def frame():
    cols = render.text_cols(128, 64, "h" * 40)
    return cols, render.encode("h" * 40).size


first = frame()  # (not frozen here: loading the module interns its names once, for good)
gc.collect()
before = gc.mem_alloc()
again = frame()
gc.collect()
emit([first, again, "display.qr" in sys.modules, gc.mem_alloc() - before])
"""


def test_the_encoder_is_not_kept_between_frames():
    """render imports display.qr for a layout or an encoding and forgets it after (it would keep
    ~1.3 KB of RAM between frames); a caller that imported it itself keeps it (test above)."""
    first, again, kept, grown = run_mp(FORGOTTEN).value
    assert first == again == [(128 - (29 + 8) - 2) // 8, 29]
    assert not kept
    assert grown < 256, f"{grown} B stayed on the heap after a layout and an encoding"
