"""Every screen drawn by the firmware (display/panel.py under MicroPython) through the real
drivers on the I2C bridge to the emulators, compared with the expected pixels (golden PNGs) and
text; the final screen's QR code decoded back to the receipt link with zxing-cpp.

EVC_UPDATE_GOLDEN=1 writes the golden PNGs anew (then look at them before checking them in)."""
from __future__ import annotations

import os

import pytest
import zxingcpp

from host_tests.display.conftest import GOLDEN, every_screen
from sim import display
from sim.hd44780_emu import LcdEmulator
from sim.ssd1306_emu import OledEmulator

SCREENS = ["idle", "idle-pay", "not-ready", "authorizing", "refused", "charging", "suspended", "finishing", "final", "faulted"]
LINK = "https://receipts.example/r/chg-1/42"
PAY_LINK = "https://pay.example/pay/chg-1/ABCD2345"  # display_rig.PAY_LINK


@pytest.fixture(scope="module")
def oled_frames(request):
    """{chip: ({screen: result}, emulator)} for both OLED controllers, drawn once."""
    from sim.bus_bridge import serve_i2c

    out = {}
    for chip in ("ssd1306", "sh1106"):
        emu = OledEmulator(chip)
        srv = serve_i2c(emu)
        try:
            out[chip] = (every_screen(chip, srv.url), emu)
        finally:
            srv.close()
    return out


@pytest.mark.parametrize("chip", ["ssd1306", "sh1106"])
@pytest.mark.parametrize("screen", SCREENS)
def test_screen_matches_its_golden_picture(oled_frames, chip, screen):
    results, _emu = oled_frames[chip]
    pixels = display.vlsb_pixels(bytes.fromhex(results[screen]["vlsb"]), 128, 64)
    golden = GOLDEN / f"{screen}.png"
    if os.environ.get("EVC_UPDATE_GOLDEN") and chip == "ssd1306":
        display.image(pixels).save(golden)
    want = display.pixels_of(golden)
    diff = sum(a != b for ra, rb in zip(pixels, want) for a, b in zip(ra, rb))
    assert diff == 0, f"{screen} on {chip}: {diff} pixels differ from {golden.name}"


@pytest.mark.parametrize("chip", ["ssd1306", "sh1106"])
def test_the_chip_shows_the_last_frame_exactly_and_saw_no_bad_command(oled_frames, chip):
    results, emu = oled_frames[chip]
    assert emu.errors == []
    assert emu.glass() == display.vlsb_pixels(bytes.fromhex(results["faulted"]["vlsb"]), 128, 64)



@pytest.mark.parametrize("chip", ["ssd1306", "sh1106"])
def test_final_screen_qr_code_decodes_to_the_receipt_link(oled_frames, chip):
    results, _ = oled_frames[chip]
    final = results["final"]
    assert final["link"] == LINK
    im = display.image(display.vlsb_pixels(bytes.fromhex(final["vlsb"]), 128, 64), scale=4)
    found = zxingcpp.read_barcodes(im, formats=zxingcpp.BarcodeFormat.QRCode)
    assert [(b.text, b.ec_level) for b in found] == [(LINK, "M")]


def read_qr(result) -> list[tuple[str, str]]:
    im = display.image(display.vlsb_pixels(bytes.fromhex(result["vlsb"]), 128, 64), scale=4)
    return [(b.text, b.ec_level) for b in zxingcpp.read_barcodes(im, formats=zxingcpp.BarcodeFormat.QRCode)]


@pytest.mark.parametrize("chip", ["ssd1306", "sh1106"])
def test_idle_screen_qr_code_decodes_to_the_payment_link_beside_the_prices(oled_frames, chip):
    results, _ = oled_frames[chip]
    pay = results["idle-pay"]
    assert pay["link"] == PAY_LINK and read_qr(pay) == [(PAY_LINK, "M")]
    # the prices stay readable beside the code: all four, VAT noted, the call to tap or scan
    assert pay["lines"] == ["Prices EUR", "incl. VAT", "0.36/kWh", "1.80/h", "0.60/start", "6.00/h P",
                            "Tap card or", "scan to pay"]
    # a new code (the next idle period) is a new frame with the new link; without pay_url no code
    nxt = results["idle-pay-next"]
    assert nxt["vlsb"] != pay["vlsb"] and read_qr(nxt) == [(PAY_LINK[:-8] + "XYZ23456", "M")]
    assert results["idle"]["link"] is None and read_qr(results["idle"]) == []


def test_lcd_text_for_every_screen(serve):
    lcd = LcdEmulator()
    results = every_screen("hd44780", serve(lcd))
    want = {
        "idle": ["EUR incl. VAT", "0.36/kWh 1.80/h", "0.60/start 6.00/h P", "Tap card / scan pay"],
        # an LCD cannot draw the payment code: its idle screen stays the same with pay_url set
        "idle-pay": ["EUR incl. VAT", "0.36/kWh 1.80/h", "0.60/start 6.00/h P", "Tap card / scan pay"],
        "idle-pay-next": ["EUR incl. VAT", "0.36/kWh 1.80/h", "0.60/start 6.00/h P", "Tap card / scan pay"],
        "not-ready": ["Not available", "", "No tariff yet"],
        "authorizing": ["Checking card", "", "Please wait"],
        "refused": ["Not authorized", "Unknown card", "", "Ask the operator"],
        "charging": ["Charging", "12.345 kWh  0:12:34", "Cost so far", "5.67 EUR"],
        "suspended": ["Paused (EV)", "12.345 kWh  0:12:34", "Cost so far", "5.67 EUR"],
        "finishing": ["Finishing", "", "Signing record"],
        "final": ["Total 12.34 EUR", "Energy 12.345 kWh", "Receipt chg-1/42", "Thank you"],
        "faulted": ["Out of order", "", "Meter fault"],
    }
    assert {k: v["lines"] for k, v in results.items()} == want
    # what the emulated LCD shows at the end: the last screen, padded to 20 columns
    assert lcd.errors == []
    assert lcd.text() == [f"{line:<20}" for line in want["faulted"] + [""]]
