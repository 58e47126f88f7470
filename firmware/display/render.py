# A screen (display/screens.py) drawn into a framebuf.FrameBuffer: text in the 8x8 font, the
# first line as a lit title bar, and a QR code (the final screen's receipt link, the idle screen's
# payment link) at the right edge. The code is encoded when the frame is drawn and dropped after:
# the panel keeps only the link (the layout needs only its size, known from the link's length).
# The encoder module itself (~1.3 KB of RAM when imported, frozen) is imported for each use and
# forgotten after: between frames the heap does not hold it.
import sys


def _use_qr(name, arg):
    # forgotten after use only when nobody else had imported it (their QrError stays their class)
    kept = "display.qr" in sys.modules
    from display import qr

    try:
        return getattr(qr, name)(arg)
    finally:
        if not kept:
            sys.modules.pop("display.qr", None)
            import display

            if hasattr(display, "qr"):
                delattr(display, "qr")


QUIET = 4  # modules of light margin around a QR code (ISO/IEC 18004: 4)
CHAR = 8


def qr_side(size, height):
    """(pixels per module, side in pixels with the quiet zone) of a code of size x size modules on
    a screen this high."""
    scale = max(1, height // (size + 2 * QUIET))
    return scale, (size + 2 * QUIET) * scale


def qr_size(link):
    """Modules per side of the code for link, without encoding it (raises QrError when too long)."""
    n = len(link.encode()) if isinstance(link, str) else len(link)
    return 17 + 4 * _use_qr("version_for", n)


def text_cols(width, height, link):
    """Text columns left of the code for link (all of them without one)."""
    if link is None:
        return width // CHAR
    return (width - qr_side(qr_size(link), height)[1] - 2) // CHAR


def draw(fb, width, height, lines, code=None):
    fb.fill(0)
    x_end = None  # with a code: where its quiet zone begins (the title bar stops short of it)
    if code is not None:
        scale, side = qr_side(code.size, height)
        x0 = x_end = width - side
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
            bar = (len(line) + 1) * CHAR
            if x_end is not None:  # the title's half-character indent must not reach into the code
                line = line[:(x_end - 2 - CHAR // 2) // CHAR]
                bar = min((len(line) + 1) * CHAR, x_end - 2)
            fb.fill_rect(0, 0, bar, CHAR, 1)
            fb.text(line, CHAR // 2, 0, 0)
        else:
            fb.text(line, 0, i * CHAR, 1)


def encode(link):
    return _use_qr("encode", link)
