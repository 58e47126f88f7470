# A 20x4 HD44780 character LCD behind a PCF8574 I2C expander (the common "backpack"): the
# expander's port P0..P7 drives RS, R/W, E, the backlight and D4..D7, so the LCD runs in 4-bit
# mode and every byte goes over as two nibbles, each latched on E's falling edge.
# Hitachi HD44780U datasheet: instruction table 6, 4-bit initialisation by instruction (figure 24),
# DDRAM addresses of a 4-line display (rows at 0x00, 0x40, 0x14, 0x54).
import time

from micropython import const

ADDR = const(0x27)  # PCF8574 with A0..A2 high (PCF8574A backpacks: 0x3F)
_RS = const(0x01)  # P0: 1 = data, 0 = instruction
_E = const(0x04)  # P2: enable, latched on the falling edge (P1, R/W, stays 0: write only)
_BACKLIGHT = const(0x08)  # P3
_ROWS = b"\x00\x40\x14\x54"


class Hd44780:
    """Text only: `text(lines)` writes the lines that changed since the last call."""

    def __init__(self, i2c, addr=ADDR, cols=20, rows=4):
        self.i2c = i2c
        self.addr = addr
        self.cols = cols
        self.rows = rows
        self.light = _BACKLIGHT
        self._out = bytearray(4 * (cols + 1))  # a row's address instruction and its characters, as port writes
        self._shown = [None] * rows
        time.sleep_ms(50)  # > 40 ms after VCC rises to 2.7 V
        # initialisation by instruction: three times "8-bit interface" (waits of > 4.1 ms and
        # > 100 us), then "4-bit interface", each a single nibble
        for nibble, wait_us in ((0x3, 4500), (0x3, 150), (0x3, 150), (0x2, 150)):
            self._nibble(nibble, 0)
            time.sleep_us(wait_us)
        for cmd in (0x28, 0x08, 0x01, 0x06, 0x0C):  # 4-bit 2-line 5x8; off; clear; increment; on, no cursor
            self.instruction(cmd)
            if cmd == 0x01:
                time.sleep_ms(2)  # clear display takes 1.52 ms

    def _nibble(self, nibble, rs):
        b = nibble << 4 | rs | self.light
        self.i2c.writeto(self.addr, bytes((b | _E, b)))

    def _put(self, at, byte, rs):
        hi = byte & 0xF0 | rs | self.light
        lo = (byte & 0x0F) << 4 | rs | self.light
        o = self._out
        o[at] = hi | _E
        o[at + 1] = hi
        o[at + 2] = lo | _E
        o[at + 3] = lo
        return at + 4

    def instruction(self, cmd):
        n = self._put(0, cmd, 0)
        self.i2c.writeto(self.addr, memoryview(self._out)[:n])  # each byte > 37 us on the bus: no wait needed

    def backlight(self, on):
        self.light = _BACKLIGHT if on else 0
        self.i2c.writeto(self.addr, bytes((self.light,)))

    def text(self, lines):
        for r in range(self.rows):
            line = lines[r] if r < len(lines) else ""
            if line == self._shown[r]:
                continue
            at = self._put(0, 0x80 | _ROWS[r], 0)  # set DDRAM address
            for c in range(self.cols):
                ch = ord(line[c]) if c < len(line) else 0x20
                at = self._put(at, ch if 0x20 <= ch < 0x7E else 0x3F, _RS)  # ROM A00: ASCII 0x20..0x7D; else "?"
            self.i2c.writeto(self.addr, self._out)
            self._shown[r] = line
