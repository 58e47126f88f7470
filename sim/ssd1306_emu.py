"""An I2C peer that behaves as an SSD1306 or an SH1106 128x64 OLED controller: it parses the
control bytes and commands the datasheets define, keeps the display RAM, and shows the picture
the glass would show.

From the datasheets (SSD1306 rev 1.1, Solomon Systech; SH1106 V2.3, Sino Wealth):
- I2C: after the address, a control byte: Co (bit 7) 0 means only data bytes follow, 1 means one
  byte then another control byte; D/C# (bit 6) 0 = command, 1 = display RAM data.
- RAM: 8 pages x 128 columns (SH1106: 132); a data byte fills one column of a page, bit 0 on
  the top row.
- SSD1306 addressing (20h): horizontal (00), vertical (01) or page (10, the reset mode). In
  horizontal and vertical mode the pointer runs inside the window of 21h (columns) and 22h
  (pages) and wraps to its start; in page mode the column runs up to 127 and wraps to the
  column start set by 00h-0Fh/10h-1Fh, the page (B0h-B7h) stays.
- SH1106: page addressing only (no 20h/21h/22h); the column pointer stops at 131.
- Segment remap A0/A1 and COM scan direction C0/C8 flip the picture; this emulator's glass is a
  module mounted the usual way, on which A1 + C8 show RAM column 0 (SH1106: column 2) top left.
Unknown commands, a wrong argument count or data while the display is asleep are recorded in
`errors` (the tests require none).
"""
from __future__ import annotations

# command -> number of argument bytes that follow it
_SSD1306_ARGS = {0x81: 1, 0x20: 1, 0x21: 2, 0x22: 2, 0xA8: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1,
                 0x8D: 1, 0x26: 6, 0x27: 6, 0x29: 5, 0x2A: 5, 0xA3: 2}
_SSD1306_SINGLE = {0xA4, 0xA5, 0xA6, 0xA7, 0xAE, 0xAF, 0xA0, 0xA1, 0xC0, 0xC8, 0x2E, 0x2F, 0xE3}
_SH1106_ARGS = {0x81: 1, 0xA8: 1, 0xAD: 1, 0xD3: 1, 0xD5: 1, 0xD9: 1, 0xDA: 1, 0xDB: 1}
_SH1106_SINGLE = {0xA4, 0xA5, 0xA6, 0xA7, 0xAE, 0xAF, 0xA0, 0xA1, 0xC0, 0xC8, 0xE0, 0xEE, 0xE3}

HORIZONTAL, VERTICAL, PAGE = 0, 1, 2


class OledEmulator:
    def __init__(self, chip: str = "ssd1306", addr: int = 0x3C):
        if chip not in ("ssd1306", "sh1106"):
            raise ValueError(chip)
        self.chip = chip
        self.addr = addr
        self.ram_cols = 128 if chip == "ssd1306" else 132
        self.offset = 0 if chip == "ssd1306" else 2  # first RAM column on the glass
        self.ram = [bytearray(self.ram_cols) for _ in range(8)]
        self.errors: list[str] = []
        self.commands: list[tuple[int, ...]] = []  # every command with its arguments, in order
        self.writes = 0
        # reset state (SSD1306 table 10-1 / SH1106 reset values)
        self.on = False
        self.mode = PAGE
        self.col_lo, self.col_hi = 0, self.ram_cols - 1
        self.page_lo, self.page_hi = 0, 7
        self.col = 0
        self.page = 0
        self.seg_remap = False
        self.com_remap = False
        self.start_line = 0
        self.offset_rows = 0
        self.invert = False
        self.all_on = False
        self.contrast = 0x7F if chip == "ssd1306" else 0x80
        self.charge_pump = False  # SSD1306 8D 14 / SH1106 AD 8B
        self.mux = 64
        self._pending: list[int] = []

    # ---- I2C peer (sim/bus_bridge.py serve_i2c) ---------------------------------------
    def i2c_write(self, addr: int, data: bytes) -> bool:
        if addr != self.addr:
            return False
        self.writes += 1
        i = 0
        while i < len(data):
            control = data[i]
            i += 1
            if control & 0x3F:
                self.errors.append(f"control byte {control:#04x}: bits 5..0 must be 0")
            co, dc = control & 0x80, control & 0x40
            chunk = data[i:i + 1] if co else data[i:]
            i += len(chunk)
            for b in chunk:
                self._data(b) if dc else self._command_byte(b)
        if self._pending:
            self.errors.append(f"command {self._pending[0]:#04x} cut short by the end of the write")
            self._pending = []
        return True

    def i2c_read(self, addr: int, n: int) -> bytes | None:
        if addr != self.addr:
            return None
        return bytes([0x00 if self.on else 0x40] + [0] * (n - 1))  # status: D6 = display off

    # ---- commands ---------------------------------------------------------------------
    def _command_byte(self, b: int) -> None:
        if self._pending:
            self._pending.append(b)
            if len(self._pending) == 1 + self._args(self._pending[0]):
                cmd = tuple(self._pending)
                self._pending = []
                self._run(cmd)
            return
        if self._args(b):
            self._pending = [b]
        else:
            self._run((b,))

    def _args(self, b: int) -> int:
        return (_SSD1306_ARGS if self.chip == "ssd1306" else _SH1106_ARGS).get(b, 0)

    def _run(self, cmd: tuple[int, ...]) -> None:
        self.commands.append(cmd)
        c = cmd[0]
        ssd = self.chip == "ssd1306"
        if c <= 0x0F:
            self.col = self.col & 0xF0 | c
        elif c <= 0x1F:
            self.col = (c & 0x0F) << 4 | self.col & 0x0F
            if self.col >= self.ram_cols:
                self.errors.append(f"column {self.col} beyond the RAM's {self.ram_cols}")
        elif 0x40 <= c <= 0x7F:
            self.start_line = c & 0x3F
        elif 0xB0 <= c <= 0xB7:
            self.page = c & 0x07
        elif c == 0x81:
            self.contrast = cmd[1]
        elif c in (0xA0, 0xA1):
            self.seg_remap = c == 0xA1
        elif c in (0xC0, 0xC8):
            self.com_remap = c == 0xC8
        elif c in (0xA4, 0xA5):
            self.all_on = c == 0xA5
        elif c in (0xA6, 0xA7):
            self.invert = c == 0xA7
        elif c in (0xAE, 0xAF):
            self.on = c == 0xAF
            if self.on and not self.charge_pump:
                self.errors.append("display on without its charge pump / DC-DC converter on")
        elif c == 0xA8:
            if not 15 <= cmd[1] <= 63:
                self.errors.append(f"multiplex ratio {cmd[1]} outside 15..63")
            self.mux = cmd[1] + 1
        elif c == 0xD3:
            self.offset_rows = cmd[1] & 0x3F
        elif ssd and c == 0x8D:
            self.charge_pump = cmd[1] == 0x14
        elif not ssd and c == 0xAD:
            self.charge_pump = cmd[1] == 0x8B
        elif not ssd and 0x30 <= c <= 0x33:
            pass  # pump voltage 6.4 / 7.4 / 8.0 / 9.0 V
        elif ssd and c == 0x20:
            if cmd[1] > 2:
                self.errors.append(f"addressing mode {cmd[1]} is invalid")
            self.mode = cmd[1] & 3
        elif ssd and c == 0x21:
            self.col_lo, self.col_hi = cmd[1] & 0x7F, cmd[2] & 0x7F
            self.col = self.col_lo
        elif ssd and c == 0x22:
            self.page_lo, self.page_hi = cmd[1] & 7, cmd[2] & 7
            self.page = self.page_lo
        elif c in (0xD5, 0xD9, 0xDA, 0xDB, 0xE3, 0x2E, 0x2F, 0x26, 0x27, 0x29, 0x2A, 0xA3, 0xE0, 0xEE):
            pass  # timing, pads, VCOM, scrolling, read-modify-write: no effect on the RAM picture
        else:
            self.errors.append(f"command {c:#04x} is not a {self.chip} command")

    # ---- display RAM --------------------------------------------------------------------
    def _data(self, b: int) -> None:
        if self.col >= self.ram_cols:
            self.errors.append(f"data beyond the last RAM column (page {self.page})")
            return
        self.ram[self.page][self.col] = b
        if self.chip == "sh1106" or self.mode == PAGE:
            if self.chip == "sh1106":
                self.col = min(self.col + 1, self.ram_cols)  # stops after the last column
            else:
                self.col = self.col + 1 if self.col < 127 else self.col_lo
        elif self.mode == HORIZONTAL:
            if self.col < self.col_hi:
                self.col += 1
            else:
                self.col = self.col_lo
                self.page = self.page + 1 if self.page < self.page_hi else self.page_lo
        else:  # vertical
            if self.page < self.page_hi:
                self.page += 1
            else:
                self.page = self.page_lo
                self.col = self.col + 1 if self.col < self.col_hi else self.col_lo

    def ram_pixel(self, col: int, row: int) -> int:
        return self.ram[row >> 3][col] >> (row & 7) & 1

    def glass(self) -> list[list[int]]:
        """The 128x64 picture as rows of 0/1 (1 = lit), as the mounted module shows it."""
        out = []
        for y in range(64):
            row = []
            ram_row = (y if self.com_remap else 63 - y)
            ram_row = (ram_row + self.start_line + self.offset_rows) % 64
            for x in range(128):
                col = self.offset + x if self.seg_remap else self.offset + 127 - x
                if not self.on:
                    v = 0
                elif self.all_on:
                    v = 1
                else:
                    v = self.ram_pixel(col, ram_row) ^ self.invert
                row.append(v)
            out.append(row)
        return out
