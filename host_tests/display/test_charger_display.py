"""The display in the running charger: the firmware (compiled .mpy, board heap) under the
MicroPython unix port with an SSD1306 configured; the host board writes every frame it draws to
$EVC_DISPLAY_DIR. A session from tap to record: the refusal of an unknown card looks exactly as
its golden picture, and the final screen's QR code reads back (zxing-cpp) as the receipt link of
the record just signed. (A card on the local list is decided within one of the panel's 250 ms
looks: the "Checking card" screen shows for online checks, not here.)"""
from __future__ import annotations

import os
import shutil
import time

import zxingcpp

from evc.tariff import compile_doc
from host_tests.charger.conftest import charger  # noqa: F401 - the rig fixture
from host_tests.display.conftest import GOLDEN
from sim import display
from sim.charger import DEV, authlist_doc, flat_tariff, token

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
STRANGER = bytes.fromhex("04777777777777")
RECORD = r"session: record (\d+): "


def frames(folder):
    return sorted(folder.glob("*.vlsb")) if folder.exists() else []


def wait_frames(folder, n, timeout=20.0):
    until = time.monotonic() + timeout
    while len(frames(folder)) < n and time.monotonic() < until:
        time.sleep(0.1)
    return frames(folder)


def test_a_session_on_the_screen_from_idle_to_the_receipt_code(charger, tmp_path):  # noqa: F811
    out = tmp_path / "display"
    c = charger(config={"display": {"type": "ssd1306", "receipt_url": "https://pay.example/receipt"}})
    c.env["EVC_DISPLAY_DIR"] = str(out)
    c.seed(tariff=compile_doc(flat_tariff(), ver=3),
           authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    c.boot()
    assert wait_frames(out, 1), "no frame drawn after boot"
    c.tap(STRANGER, r"card rejected: unknown")
    c.tap(ALICE, r"session: started ")
    time.sleep(3)  # charging: a frame a second at most
    seq = int(c.tap(ALICE, RECORD).group(1))
    wait_frames(out, len(frames(out)) + 1)  # the final screen follows the record
    c.stop()
    drawn = frames(out)
    pictures = [display.read_frame(f) for f in drawn]
    assert display.pixels_of(GOLDEN / "refused.png") in pictures
    found = zxingcpp.read_barcodes(display.image(pictures[-1], scale=4), formats=zxingcpp.BarcodeFormat.QRCode)
    assert [b.text for b in found] == [f"https://pay.example/receipt/{DEV}/{seq}"]
    # idle, refused, charging (a frame a second), maybe finishing, final: a frame per change
    assert 4 <= len(drawn) <= 16, [f.name for f in drawn]
    made = display.convert(out, tmp_path / "png", prefix=f"{DEV}-")  # what --out DIR/display will hold
    assert len(made) == len(drawn)
    if os.environ.get("EVC_KEEP_FRAMES"):  # to look at them
        for f in made:
            shutil.copy(f, os.environ["EVC_KEEP_FRAMES"])


def test_the_driver_bytes_reach_an_emulated_ssd1306_and_a_silent_display_is_only_logged(charger, tmp_path):  # noqa: F811
    from sim.bus_bridge import serve_i2c
    from sim.ssd1306_emu import OledEmulator

    emu = OledEmulator("ssd1306")
    wrong = OledEmulator("ssd1306", addr=0x3D)  # strapped to the other address: nobody answers 0x3C
    servers = [serve_i2c(emu), serve_i2c(wrong)]
    try:
        out = tmp_path / "display"
        c = charger(config={"display": {"type": "ssd1306"}})
        c.seed(tariff=compile_doc(flat_tariff(), ver=3))
        c.env.update({"EVC_DISPLAY_DIR": str(out), "EVC_DISPLAY_I2C": servers[0].url})
        c.boot()
        (idle,) = wait_frames(out, 1)
        c.stop()
        assert emu.errors == [] and emu.glass() == display.read_frame(idle)
        c.env["EVC_DISPLAY_I2C"] = servers[1].url
        c.boot()  # the charger starts without its screen
        c.wait_for(r"display: ssd1306 display not usable")
        assert "charger: ready" in c.output()
        c.stop()
    finally:
        for srv in servers:
            srv.close()


def qr_texts(pixels) -> list[str]:
    return [b.text for b in zxingcpp.read_barcodes(display.image(pixels, scale=4), formats=zxingcpp.BarcodeFormat.QRCode)]


def test_with_pay_url_the_idle_screen_shows_each_idle_periods_payment_link(charger, tmp_path):  # noqa: F811
    """pay_url set: the idle screen's QR code is the payment link pay_url/DEV/CODE (app/adhoc.py),
    read back with zxing-cpp; after a session the code is new, and so is the idle screen's link."""
    import re

    out = tmp_path / "display"
    pay_url = "https://pay.example/pay"
    c = charger(config={"pay_url": pay_url, "display": {"type": "ssd1306", "final_s": 5}})
    c.env["EVC_DISPLAY_DIR"] = str(out)
    c.seed(tariff=compile_doc(flat_tariff(), ver=3),
           authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    c.boot()
    (first,) = wait_frames(out, 1)
    (link,) = qr_texts(display.read_frame(first))
    assert re.fullmatch(rf"{re.escape(pay_url)}/{DEV}/[A-Z2-7]{{8}}", link), link
    c.tap(ALICE, r"session: started ")
    time.sleep(1.5)
    seq = int(c.tap(ALICE, RECORD).group(1))
    until = time.monotonic() + 30  # the final screen (5 s), then idle with the next code

    def last_link():
        texts = qr_texts(display.read_frame(frames(out)[-1]))
        return texts[0] if texts and "/pay/" in texts[0] else None

    while last_link() in (None, link) and time.monotonic() < until:
        time.sleep(0.2)
    c.stop()
    fresh = last_link()
    assert fresh is not None and fresh != link and fresh.rsplit("/", 1)[0] == link.rsplit("/", 1)[0], fresh
    texts = [qr_texts(display.read_frame(f)) for f in frames(out)]
    assert [f"https://receipts.example/r/{DEV}/{seq}"] in texts  # the receipt between the two idle periods
