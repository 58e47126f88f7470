"""Display: a frame's cost on the device (render + driver, the I2C bus itself left out) and the
QR encoder's time and heap, under the MicroPython unix port."""
from __future__ import annotations

import json

from bench.common import Row, mpy
from sim.display import RIG_DIR as MP
from sim.display import TARIFF

TITLE = "Display (firmware/display under MicroPython)"

FRAMES = """
import gc, json, time
import display_rig
from hal import clock

class Bus:  # takes every write at once: the figure is the CPU's, not the I2C wire's
    def writeto(self, addr, buf, stop=True):
        return len(buf)

out = {}
for kind in ("ssd1306", "hd44780"):
    p, ctl, tset = display_rig.panel(kind, Bus(), json.loads(TARIFF))
    ctl.state = "charging"
    ctl.session = display_rig.Session(tset.tariffs["std"], clock.monotonic_ms())
    best, churn = None, 0
    for i in range(N):
        ctl.st = {"state": "charging", "wh": 1000 + i, "cost": 100 + i}
        content = p.screen(clock.monotonic_ms())
        gc.collect()
        gc.disable()
        m0 = gc.mem_alloc()
        t0 = time.ticks_us()
        p.draw(content)
        dt = time.ticks_diff(time.ticks_us(), t0)
        churn = max(churn, gc.mem_alloc() - m0)
        gc.enable()
        best = dt if best is None else min(best, dt)
    out[kind] = {"us": best, "heap": churn}
# the final screen: QR encode (once per receipt) and its frame
p, ctl, tset = display_rig.panel("ssd1306", Bus(), json.loads(TARIFF))
fields = {"cost": {"currency": "EUR", "incl": 1234}, "start": {"wh": 0}, "stop": {"wh": 12345}}
p.finished(42, fields)
gc.collect()
t0 = time.ticks_us()
p.draw(p.screen(clock.monotonic_ms()))  # the screen encodes the receipt's QR code
out["final_us"] = time.ticks_diff(time.ticks_us(), t0)
emit(out)
"""

QR = """
import gc, time
from display import qr
out = {}
for name, text in (("link", b"https://receipts.example/r/chg-0042/123456"), ("max", b"x" * 180)):
    best = None
    for _ in range(N):
        gc.collect()
        gc.disable()
        m0 = gc.mem_alloc()
        t0 = time.ticks_us()
        code = qr.encode(text)
        dt = time.ticks_diff(time.ticks_us(), t0)
        churn = gc.mem_alloc() - m0
        gc.enable()
        best = dt if best is None else min(best, dt)
    del code
    gc.collect()
    m1 = gc.mem_alloc()
    code = qr.encode(text)
    gc.collect()
    kept = gc.mem_alloc() - m1
    out[name] = {"us": best, "churn": churn, "kept": kept, "version": code.version, "bytes": len(text)}
emit(out)
"""


def measure(n: int = 5) -> tuple[dict, dict]:
    frames = mpy.run(f"N = {n}\nTARIFF = {json.dumps(json.dumps(TARIFF))}\n" + FRAMES, extra_path=[MP], heap="512k").value
    qr = mpy.run(f"N = {n}\n" + QR, heap="512k").value
    return frames, qr


def run(n: int = 5) -> list[Row]:
    frames, qr = measure(n)
    b = "display"
    rows = [
        Row(b, "SSD1306 charging frame: render + send", round(frames["ssd1306"]["us"] / 1000, 2), "ms",
            f"best of {n}; 1 KiB framebuffer in 8 page writes; the I2C wire adds ~25 ms at 400 kHz"),
        Row(b, "SSD1306 charging frame: heap allocated", frames["ssd1306"]["heap"], "bytes", "GC off during the frame"),
        Row(b, "HD44780 charging frame: render + send", round(frames["hd44780"]["us"] / 1000, 2), "ms",
            f"best of {n}; changed rows only, 4 expander writes a character"),
        Row(b, "HD44780 charging frame: heap allocated", frames["hd44780"]["heap"], "bytes", "GC off during the frame"),
        Row(b, "final screen frame incl. QR encode", round(frames["final_us"] / 1000, 2), "ms", "version 3-M link"),
    ]
    for name, r in qr.items():
        rows += [
            Row(b, f"QR encode, {r['bytes']} bytes (version {r['version']}-M)", round(r["us"] / 1000, 2), "ms",
                f"best of {n}; 8 masks evaluated"),
            Row(b, f"QR encode, {r['bytes']} bytes: heap allocated", r["churn"], "bytes", "GC off: all garbage but the symbol"),
            Row(b, f"QR encode, {r['bytes']} bytes: heap kept by the symbol", r["kept"], "bytes", "bit-packed modules"),
        ]
    return rows
