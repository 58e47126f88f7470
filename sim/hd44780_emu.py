"""An I2C peer that behaves as a PCF8574 expander wired to an HD44780 character LCD (the common
"backpack": P0 RS, P1 R/W, P2 E, P3 backlight, P4..P7 D4..D7), and reconstructs the text.

From the datasheets (NXP PCF8574: every byte written sets the 8 port pins, in order; Hitachi
HD44780U: instruction table 6, figure 24 "4-bit interface" initialisation, DDRAM addresses):
- the controller latches D4..D7 (and RS) on E's falling edge;
- after power-up it is in 8-bit mode: each latch is a whole instruction (D0..D3 are not wired:
  read as 0). "Function set" with DL = 0 (0x2_) switches to 4-bit mode; from then on two
  latches, high nibble first, make one byte;
- instructions: clear (01), home (02), entry mode (04 | I/D << 1 | S), display control
  (08 | D << 2 | C << 1 | B), shift (1x), function set (20 | DL << 4 | N << 3 | F << 2),
  CGRAM address (40 | a), DDRAM address (80 | a); RS = 1 writes data at the address counter;
- a 2-line controller (N = 1) has DDRAM 00..27 and 40..67; a 20x4 display shows rows at 00, 40,
  14 and 54.
Writes with R/W high, a byte in 4-bit mode whose halves straddle an RS change, or text written
before the initialisation are recorded in `errors`.
"""
from __future__ import annotations

_RS, _RW, _E, _BL = 0x01, 0x02, 0x04, 0x08
ROW_ADDR = (0x00, 0x40, 0x14, 0x54)


class LcdEmulator:
    def __init__(self, addr: int = 0x27, cols: int = 20, rows: int = 4):
        self.addr = addr
        self.cols = cols
        self.rows = rows
        self.port = 0xFF  # PCF8574 power-on: quasi-bidirectional pins high
        self.ddram = bytearray(b" " * 0x80)
        self.four_bit = False
        self.two_line = False
        self.display_on = False
        self.increment = True
        self.ac = 0
        self.backlight = False
        self.init_steps: list[str] = []  # the 8-bit-mode instructions before 4-bit mode, in order
        self.instructions: list[int] = []
        self.errors: list[str] = []
        self._half: tuple[int, int] | None = None  # (high nibble, rs) waiting for its low nibble

    # ---- I2C peer ---------------------------------------------------------------------
    def i2c_write(self, addr: int, data: bytes) -> bool:
        if addr != self.addr:
            return False
        for b in data:
            prev, self.port = self.port, b
            self.backlight = bool(b & _BL)
            if prev & _E and not b & _E:
                self._latch(prev)
        return True

    def i2c_read(self, addr: int, n: int) -> bytes | None:
        return None if addr != self.addr else bytes([self.port]) * n

    # ---- the controller ---------------------------------------------------------------
    def _latch(self, port: int) -> None:
        if port & _RW:
            self.errors.append("a latch with R/W high (a read): the driver only writes")
            return
        rs = port & _RS
        nibble = port >> 4
        if not self.four_bit:
            if rs:
                self.errors.append("data written before the interface was set up")
                return
            self.init_steps.append(f"{nibble:x}")
            self._instruction(nibble << 4)
            return
        if self._half is None:
            self._half = (nibble, rs)
            return
        hi, hi_rs = self._half
        self._half = None
        if hi_rs != rs:
            self.errors.append("the two nibbles of a byte disagree on RS")
        byte = hi << 4 | nibble
        if rs:
            self._write_data(byte)
        else:
            self._instruction(byte)

    def _instruction(self, b: int) -> None:
        self.instructions.append(b)
        if b & 0x80:
            self.ac = b & 0x7F
        elif b & 0x40:
            pass  # CGRAM address: custom characters are not emulated
        elif b & 0x20:
            if self.four_bit or not b & 0x10:
                self.four_bit = not b & 0x10
                self.two_line = bool(b & 0x08)
        elif b & 0x10:
            pass  # cursor/display shift
        elif b & 0x08:
            self.display_on = bool(b & 0x04)
        elif b & 0x04:
            self.increment = bool(b & 0x02)
            if b & 0x01:
                self.errors.append("entry mode with display shift: the text would move")
        elif b & 0x02:
            self.ac = 0
        elif b & 0x01:
            self.ddram[:] = b" " * 0x80
            self.ac = 0
            self.increment = True

    def _write_data(self, byte: int) -> None:
        if not self.two_line:
            self.errors.append("text written in 1-line mode: rows 2 and 4 would not show")
        self.ddram[self.ac] = byte
        a = self.ac + (1 if self.increment else -1)
        if self.two_line:  # 00..27, 40..67
            a = {0x28: 0x40, 0x68: 0x00, -1: 0x67, 0x3F: 0x27}.get(a, a)
        self.ac = a & 0x7F

    def text(self) -> list[str]:
        """The rows as the display shows them (blank while the display is off)."""
        if not self.display_on:
            return [" " * self.cols] * self.rows
        return [bytes(self.ddram[a:a + self.cols]).decode("ascii", "replace") for a in ROW_ADDR[:self.rows]]
