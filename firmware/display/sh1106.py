# SH1106 132x64 OLED controller (Sino Wealth datasheet V2.3, commands 1-25) on the 1.3" modules
# that show its columns 2..129. It has page addressing only: each page is sent on its own,
# after setting the page (B0-B7) and the column (low nibble 00-0F, high nibble 10-1F).
from micropython import const

from display.oled import Oled

COLUMN_OFFSET = const(2)  # the 128-pixel panel sits in the middle of the 132 RAM columns

_INIT = bytes((
    0x00,  # control byte: commands
    0xAE,  # display off
    0xD5, 0x50,  # display clock: divide ratio 1, oscillator frequency (reset value)
    0xA8, 0x3F,  # multiplex ratio 64
    0xD3, 0x00,  # display offset 0
    0x40,  # display start line 0
    0xAD, 0x8B,  # DC-DC converter on (reset value; the module's OLED supply)
    0x32,  # pump voltage 8.0 V (reset value)
    0xA1,  # segment remap: reversed, as on the SSD1306 modules
    0xC8,  # COM scan from COM63 to COM0
    0xDA, 0x12,  # common pads: alternative (reset value)
    0x81, 0x80,  # contrast (reset value)
    0xD9, 0x22,  # discharge/pre-charge 2 + 2 clocks (reset value)
    0xDB, 0x35,  # VCOM deselect level (reset value)
    0xA4,  # show the RAM
    0xA6,  # normal
    0xAF,  # display on
))


class Sh1106(Oled):
    INIT = _INIT

    def show(self):
        for page in range(8):
            self.command(0xB0 | page, COLUMN_OFFSET & 0x0F, 0x10 | COLUMN_OFFSET >> 4)
            self._send_page(page)
