# What the SSD1306 and the SH1106 share: a 128x64 monochrome OLED on I2C whose display RAM is 8
# pages of 128 (SH1106: 132) columns, one byte a column of 8 pixels, bit 0 on top. That is
# framebuf's MONO_VLSB layout, so the 1 KiB framebuffer goes to the chip as it is.
#
# I2C (SSD1306 datasheet 8.1.5; SH1106 the same): after the address, a control byte: Co (bit 7)
# 0 = only data bytes follow, D/C# (bit 6) 0 = commands, 1 = display RAM data.
import framebuf
from micropython import const

WIDTH = const(128)
HEIGHT = const(64)
ADDR = const(0x3C)  # SA0 low; 0x3D with SA0 high
_CMDS = const(0x00)  # Co = 0, D/C# = 0: a stream of command bytes
_DATA = const(0x40)  # Co = 0, D/C# = 1: a stream of RAM data


class Oled:
    """The frame (`fb`, a framebuf.FrameBuffer) and the bus; subclasses say how a frame is sent."""

    INIT = b""  # the chip's initialisation commands, control byte first

    def __init__(self, i2c, addr=ADDR):
        self.i2c = i2c
        self.addr = addr
        self.width = WIDTH
        self.height = HEIGHT
        self.buf = bytearray(WIDTH * HEIGHT // 8)
        self.fb = framebuf.FrameBuffer(self.buf, WIDTH, HEIGHT, framebuf.MONO_VLSB)
        self._page = bytearray(WIDTH + 1)  # one page with its control byte
        self._page[0] = _DATA
        self._mv = memoryview(self.buf)
        self.i2c.writeto(self.addr, self.INIT)  # OSError(ENODEV) when no chip answers

    def command(self, *cmds):
        self.i2c.writeto(self.addr, bytes((_CMDS,) + cmds))

    def _send_page(self, page):
        self._page[1:] = self._mv[page * WIDTH:(page + 1) * WIDTH]
        self.i2c.writeto(self.addr, self._page)

    def power(self, on):
        self.command(0xAF if on else 0xAE)

    def contrast(self, level):
        self.command(0x81, level & 0xFF)
