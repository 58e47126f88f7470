"""The board layer's display bus: boards/esp32/board.py on the stand-in `machine`
(host_tests/flash/mp/machine.py) builds the I2C of board_defs' "display" wiring; pincheck keeps
every board's wiring free of conflicts (a shared I2C bus is one function)."""
from __future__ import annotations

import pytest

from host_tests.flash.test_esp32_board import ESP32, run_board


@pytest.mark.parametrize("name, bus", [("esp32-devkitc", (0, 22, 21)), ("esp32-s3-devkitc-1", (0, 42, 41)),
                                       ("olimex-esp32-poe", (0, 16, 13))])
def test_display_bus_is_the_boards_i2c_at_400khz(tmp_path, name, bus):
    made = run_board(tmp_path, name, """
board.display_bus()
emit([m for m in machine.made if m[0] == "I2C"])
""")
    assert made == [["I2C", bus[0], {"freq": 400000, "scl": bus[1], "sda": bus[2]}]]


def test_every_board_wiring_passes_pincheck():
    import sys

    sys.path.insert(0, str(ESP32))
    try:
        import board_defs
        import pincheck

        for name in board_defs.BOARDS:
            assert pincheck.check(name) == [], name
            assert any(field.startswith("display.") for field, *_ in pincheck.uses(name)), name
    finally:
        sys.path.remove(str(ESP32))
