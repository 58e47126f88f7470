"""Display frames as pictures: the host board's frame files (boards/host/display_files.py) and
the OLED emulator's glass (sim/ssd1306_emu.py) to PNG with Pillow.

A frame file "<ms>-<n>.vlsb" is a 4-byte header (width, height: u16 big-endian) and the
framebuf MONO_VLSB bytes (a byte a column of 8 pixels, bit 0 on top, pages of `width` bytes);
"<ms>-<n>.txt" holds a character LCD's lines.
"""
from __future__ import annotations

import struct
from pathlib import Path

from PIL import Image, ImageDraw

RIG_DIR = Path(__file__).resolve().parent / "mp"  # display_rig.py: the firmware's panel on a recording bus

# A default tariff for the screens: every price dimension, 20 % VAT (docs/pricing.md's compiled form:
# prices in millionths of EUR excl. VAT); the display tests and bench/display.py draw with it
TARIFF = {"v": 1, "ver": 3, "tz": "UTC0", "default": "std", "contracts": {},
          "tariffs": {"std": {"id": "std", "currency": "EUR", "minor": 2, "elements": [
              {"c": [["ENERGY", 300000, 2000, 1], ["TIME", 1500000, 2000, 60], ["FLAT", 500000, 2000, 1],
                     ["PARKING_TIME", 5000000, 2000, 60]]}]}}}

LIT = 255  # a lit OLED pixel
DARK = 0


def vlsb_pixels(data: bytes, width: int, height: int) -> list[list[int]]:
    """Rows of 0/1 from MONO_VLSB bytes."""
    if len(data) != width * ((height + 7) // 8):
        raise ValueError(f"{len(data)} bytes is not a {width}x{height} MONO_VLSB frame")
    return [[data[(y >> 3) * width + x] >> (y & 7) & 1 for x in range(width)] for y in range(height)]


def read_frame(path: Path) -> list[list[int]]:
    raw = Path(path).read_bytes()
    width, height = struct.unpack(">HH", raw[:4])
    return vlsb_pixels(raw[4:], width, height)


def image(pixels: list[list[int]], scale: int = 1) -> Image.Image:
    """A greyscale picture, lit pixels white; scale > 1 for people (tests compare scale 1)."""
    h, w = len(pixels), len(pixels[0])
    im = Image.new("L", (w, h), DARK)
    im.putdata([LIT if v else DARK for row in pixels for v in row])
    if scale > 1:
        im = im.resize((w * scale, h * scale), Image.NEAREST)
    return im


def text_image(lines: list[str], scale: int = 2) -> Image.Image:
    """A character LCD's text drawn with Pillow's built-in font (for looking at, not comparing)."""
    cols = max((len(line) for line in lines), default=0)
    im = Image.new("L", ((cols * 6 + 4) * scale, (len(lines) * 10 + 4) * scale), 40)
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((2 * scale, (2 + i * 10) * scale), line, fill=230, font_size=8 * scale)
    return im


def pixels_of(png: Path) -> list[list[int]]:
    """Rows of 0/1 of a PNG made by image() at scale 1."""
    im = Image.open(png).convert("L")
    w, h = im.size
    data = im.tobytes()
    return [[1 if data[y * w + x] >= 128 else 0 for x in range(w)] for y in range(h)]


def convert(folder: Path, out: Path, prefix: str = "", scale: int = 2) -> list[Path]:
    """Every frame file in folder as a PNG in out, named prefix + the frame's name; returns them."""
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for f in sorted(Path(folder).iterdir()):
        if f.suffix == ".vlsb":
            im = image(read_frame(f), scale)
        elif f.suffix == ".txt":
            im = text_image(f.read_text().split("\n"), scale)
        else:
            continue
        target = out / f"{prefix}{f.stem}.png"
        im.save(target)
        made.append(target)
    return made
