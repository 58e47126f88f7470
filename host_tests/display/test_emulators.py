"""The display emulators (sim/ssd1306_emu.py, sim/hd44780_emu.py) against the datasheets' facts,
byte by byte as a driver would send them: the drivers are only as well tested as these are."""
from __future__ import annotations

from sim.hd44780_emu import LcdEmulator
from sim.ssd1306_emu import OledEmulator

CMD, DATA = 0x00, 0x40


def on(emu: OledEmulator) -> None:
    pump = [0x8D, 0x14] if emu.chip == "ssd1306" else [0xAD, 0x8B]
    assert emu.i2c_write(0x3C, bytes([CMD, *pump, 0xA1, 0xC8, 0xAF]))


def test_only_its_address_acknowledges():
    emu = OledEmulator()
    assert not emu.i2c_write(0x3D, b"\x00\xaf")
    assert emu.i2c_read(0x3D, 1) is None
    assert emu.commands == []


def test_ssd1306_resets_to_page_addressing_and_wraps_the_column_only():
    # SSD1306 10.1.3: page addressing is the reset mode; the column wraps to its start, the page stays
    emu = OledEmulator()
    on(emu)
    emu.i2c_write(0x3C, bytes([CMD, 0xB2, 0x0E, 0x17]))  # page 2, column 0x7E
    emu.i2c_write(0x3C, bytes([DATA, 0x01, 0x02, 0x03]))
    assert (emu.ram[2][126], emu.ram[2][127], emu.ram[2][0], emu.page) == (0x01, 0x02, 0x03, 2)
    assert emu.errors == []


def test_ssd1306_horizontal_mode_runs_through_the_window_then_wraps():
    # 20h 00: horizontal; 21h/22h set the window and put the pointer at its start (10.1.4, 10.1.5)
    emu = OledEmulator()
    on(emu)
    emu.i2c_write(0x3C, bytes([CMD, 0x20, 0x00, 0x21, 10, 11, 0x22, 3, 4]))
    emu.i2c_write(0x3C, bytes([DATA, 1, 2, 3, 4, 5]))
    assert (emu.ram[3][10], emu.ram[3][11], emu.ram[4][10], emu.ram[4][11], emu.ram[3][10 + 2]) == (5, 2, 3, 4, 0)


def test_ssd1306_vertical_mode_runs_down_the_pages_first():
    emu = OledEmulator()
    on(emu)
    emu.i2c_write(0x3C, bytes([CMD, 0x20, 0x01, 0x21, 0, 127, 0x22, 0, 1]))
    emu.i2c_write(0x3C, bytes([DATA, 7, 8, 9]))
    assert (emu.ram[0][0], emu.ram[1][0], emu.ram[0][1]) == (7, 8, 9)


def test_co_bit_one_byte_then_another_control_byte():
    # Co = 1: one byte, then a control byte again (8.1.5.2)
    emu = OledEmulator()
    on(emu)
    emu.i2c_write(0x3C, bytes([0x80, 0xB5, 0xC0, 0xAA, 0x40, 0x55, 0x66]))
    assert (emu.page, emu.ram[5][0], emu.ram[5][1], emu.ram[5][2]) == (5, 0xAA, 0x55, 0x66)
    assert emu.errors == []


def test_data_byte_bit0_is_the_top_row_and_remap_flips_the_glass():
    emu = OledEmulator()
    on(emu)
    emu.i2c_write(0x3C, bytes([CMD, 0xB0, 0x00, 0x10]))
    emu.i2c_write(0x3C, bytes([DATA, 0b00000011]))  # column 0, rows 0 and 1
    glass = emu.glass()
    assert (glass[0][0], glass[1][0], glass[2][0]) == (1, 1, 0)
    emu.i2c_write(0x3C, bytes([CMD, 0xA0, 0xC0]))  # no remap: the picture turns upside down and mirrored
    glass = emu.glass()
    assert (glass[63][127], glass[62][127], glass[0][0]) == (1, 1, 0)


def test_arguments_unknown_commands_and_a_dark_display_are_noticed():
    emu = OledEmulator()
    emu.i2c_write(0x3C, bytes([CMD, 0xAF]))  # on, but the charge pump is off: nothing would light
    emu.i2c_write(0x3C, bytes([CMD, 0x81]))  # contrast without its value
    emu.i2c_write(0x3C, bytes([CMD, 0xFF]))
    assert len(emu.errors) == 3
    assert OledEmulator().glass()[0][0] == 0  # off after reset


def test_sh1106_has_132_columns_page_addressing_only_and_a_centred_panel():
    emu = OledEmulator("sh1106")
    on(emu)
    emu.i2c_write(0x3C, bytes([CMD, 0xB1, 0x02, 0x10]))  # page 1, column 2: the panel's first
    emu.i2c_write(0x3C, bytes([DATA, 0x01]))
    assert emu.glass()[8][0] == 1 and emu.ram[1][2] == 1
    emu.i2c_write(0x3C, bytes([CMD, 0xB0, 0x03, 0x18]))  # column 131, the RAM's last
    emu.i2c_write(0x3C, bytes([DATA, 1, 2]))  # the pointer stops: the second byte has no column
    assert emu.ram[0][131] == 1 and len(emu.errors) == 1
    emu.i2c_write(0x3C, bytes([CMD, 0x20, 0x00]))  # horizontal addressing: an SSD1306 command
    assert "0x20 is not a sh1106 command" in emu.errors[-1]


# ---- PCF8574 + HD44780 ---------------------------------------------------------------------

RS, E, BL = 0x01, 0x04, 0x08


def nibble(n: int, rs: int = 0) -> bytes:
    b = n << 4 | rs | BL
    return bytes([b | E, b])


def byte(v: int, rs: int = 0) -> bytes:
    return nibble(v >> 4, rs) + nibble(v & 0x0F, rs)


def init_4bit() -> bytes:
    return nibble(3) + nibble(3) + nibble(3) + nibble(2) + byte(0x28) + byte(0x0C) + byte(0x01) + byte(0x06)


def test_lcd_4bit_initialisation_by_instruction():
    lcd = LcdEmulator()
    assert lcd.i2c_write(0x27, init_4bit())
    assert (lcd.four_bit, lcd.two_line, lcd.display_on, lcd.backlight) == (True, True, True, True)
    assert lcd.init_steps == ["3", "3", "3", "2"]
    assert lcd.instructions[4:] == [0x28, 0x0C, 0x01, 0x06]


def test_lcd_rows_are_at_the_4_line_ddram_addresses():
    lcd = LcdEmulator()
    lcd.i2c_write(0x27, init_4bit())
    for row, addr in enumerate((0x00, 0x40, 0x14, 0x54)):
        lcd.i2c_write(0x27, byte(0x80 | addr) + b"".join(byte(c, RS) for c in f"row {row}".encode()))
    assert [line.rstrip() for line in lcd.text()] == ["row 0", "row 1", "row 2", "row 3"]
    assert lcd.errors == []


def test_lcd_latches_on_the_falling_edge_only():
    lcd = LcdEmulator()
    lcd.i2c_write(0x27, init_4bit())
    # E held high across writes: one latch, when it falls
    lcd.i2c_write(0x27, bytes([0x80 | E | BL, 0x80 | E | BL, 0x80 | BL, 0x00 | E | BL, 0x00 | BL]))
    assert lcd.instructions[-1] == 0x80 and lcd.ac == 0


def test_lcd_without_initialisation_is_in_8bit_mode_and_says_so():
    lcd = LcdEmulator()
    lcd.i2c_write(0x27, byte(ord("A"), RS))
    assert lcd.errors and not lcd.four_bit
    assert lcd.text() == [" " * 20] * 4  # the display is still off
