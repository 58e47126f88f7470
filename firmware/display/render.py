# A screen (display/screens.py) drawn into a framebuf.FrameBuffer: text in the 8x8 font, the
# first line as a lit title bar, and on the final screen the QR code at the right edge.
from display import qr as qrcode

QUIET = 4  # modules of light margin around a QR code (ISO/IEC 18004: 4)
CHAR = 8


def qr_side(code, height):
    """(pixels per module, side in pixels with the quiet zone) of a code on a screen this high."""
    scale = max(1, height // (code.size + 2 * QUIET))
    return scale, (code.size + 2 * QUIET) * scale


def text_cols(width, height, code):
    """Text columns left of the code (all of them without one)."""
    if code is None:
        return width // CHAR
    return (width - qr_side(code, height)[1] - 2) // CHAR


def draw(fb, width, height, lines, code=None):
    fb.fill(0)
    if code is not None:
        scale, side = qr_side(code, height)
        x0 = width - side
        y0 = (height - side) // 2
        # dark modules on a lit square: the polarity scanners expect (light quiet zone)
        fb.fill_rect(x0, y0, side, side, 1)
        x0 += QUIET * scale
        y0 += QUIET * scale
        n = code.size
        for y in range(n):
            for x in range(n):
                if code.dark(x, y):
                    fb.fill_rect(x0 + x * scale, y0 + y * scale, scale, scale, 0)
    for i, line in enumerate(lines):
        if i == 0:
            fb.fill_rect(0, 0, (len(line) + 1) * CHAR, CHAR, 1)
            fb.text(line, CHAR // 2, 0, 0)
        else:
            fb.text(line, 0, i * CHAR, 1)


def encode(link):
    return qrcode.encode(link)
