"""Ad-hoc payment: time from "payment confirmed" (the gateway's hold webhook reaches the backend) to
the charger's relay closed, over a few paid sessions.

The world of sim/payworld.py: the real firmware on the MicroPython unix port with a
pymodbus meter and an EV, mosquitto, the reference backend, the Stripe emulator and the payment
service with its web app. Each run: the driver's steps without a browser (page, emulator's hosted
page with the test card), then the relay pin is polled every 2 ms. The path: the webhook verified,
the signed start command published, delivered, its ES256 signature verified on the device (unix
port: ~10 ms, an ESP32 much longer), then the controller's next tick (every 1 s) starts the session.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Row

TITLE = "Payments: payment confirmed -> relay closed (ad-hoc session)"
RUNS = 5


def run() -> list[Row]:
    from sim.payworld import PayWorld, wait
    from sim.broker import Broker

    times: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker, \
            PayWorld(Path(tmp), broker.url, hold=300, name="bench-payments") as w:
        code = None
        for _ in range(RUNS):
            code = w.code(other_than=code)
            before = len(w.confirmed)
            pid = w.pay_headless(code)
            wait(lambda: w.charger.relay() == 1, 30, "relay closed", step=0.002)
            closed = time.monotonic()
            wait(lambda: len(w.confirmed) > before, 10, "the confirmation stamp")
            times.append((closed - w.confirmed[before]) * 1000)
            w.wait_state(pid, ("captured",), timeout=60)
    return [
        Row("payments", "confirmed -> relay closed, median", round(statistics.median(times)), "ms",
            f"{RUNS} sessions; the controller ticks every 1 s, so up to 1 s of it is the wait for the tick"),
        Row("payments", "confirmed -> relay closed, min", round(min(times)), "ms"),
        Row("payments", "confirmed -> relay closed, max", round(max(times)), "ms"),
    ]
