"""Meter benchmark: one poll of energy and power at 9600 8N1, bytes and time on the wire vs measured."""
from __future__ import annotations

import statistics

from bench.common import Row, mpy
from sim.meter_peer import MeterPeer

TITLE = "Meter: one poll of energy + power (Modbus RTU, 9600 8N1)"

BAUD = 9600
CHAR_US = 10 * 1_000_000 / BAUD  # start + 8 data + stop
POLLS = 20
_VALUES = {
    "sdm630": [((4, 0x0048, "f32"), 1234.5), ((4, 0x0034, "f32"), 7000.0)],
    "em340": [((4, 0x0034, "i32_ws"), 12345), ((4, 0x0028, "i32_ws"), 70000)],
}

_CODE = """
import asyncio, time
from hal.stream import open_stream
from meter import models
from meter.meter import Meter
from meter.modbus import ModbusMaster

async def main():
    master = ModbusMaster(open_stream(URL, 9600), timeout_ms=500, retries=0)
    meter = Meter(master, models.get(MODEL), serial_every=1000000)
    await meter.poll()  # warm-up: connects, reads the serial once
    tx, rx, n = master.tx_bytes, master.rx_bytes, master.transactions
    times = []
    for _ in range(POLLS):
        t0 = time.ticks_us()
        await meter.poll()
        times.append(time.ticks_diff(time.ticks_us(), t0))
    emit({"us": times, "bytes": (master.tx_bytes - tx + master.rx_bytes - rx) // POLLS,
          "transactions": (master.transactions - n) // POLLS})

asyncio.run(main())
"""


def _measure(transport: str, pace: bool, model: str) -> dict:
    with MeterPeer(transport, baudrate=BAUD, pace=pace) as peer:
        for quantity, value in _VALUES[model]:
            peer.set(quantity, value)
        code = _CODE.replace("URL", repr(peer.url)).replace("MODEL", repr(model)).replace("POLLS", str(POLLS))
        return mpy.run(code, timeout=120).value


def run() -> list[Row]:
    rows: list[Row] = []
    for model in ("sdm630", "em340"):
        b = f"meter {model}"
        ref = _measure("pty", True, model)
        nbytes, ntx = ref["bytes"], ref["transactions"]
        byte_ms = nbytes * CHAR_US / 1000
        # 3.5 characters of silence before each frame; the one before the first request falls
        # in the idle time between polls: 2 * transactions - 1 gaps per poll.
        gaps_ms = (2 * ntx - 1) * 3.5 * CHAR_US / 1000
        wire_ms = byte_ms + gaps_ms
        rows += [
            Row(b, "transactions per poll", ntx, "", "energy and power merged into one read" if ntx == 1 else
                "registers too far apart to merge"),
            Row(b, "bytes on the wire per poll", nbytes, "B", "requests + replies, CRC included"),
            Row(b, "theoretical wire time", round(wire_ms, 2), "ms",
                f"{byte_ms:.1f} ms of bytes + {gaps_ms:.1f} ms of 3.5-char gaps; a real meter's turnaround comes on top"),
        ]
        for label, transport, pace, result in (
            ("pty paced at 9600 baud", "pty", True, ref),
            ("pty unpaced", "pty", False, None),
            ("tcp (RTU over TCP, loopback)", "tcp", False, None),
        ):
            result = result or _measure(transport, pace, model)
            med_ms = statistics.median(result["us"]) / 1000
            note = {
                "pty paced at 9600 baud": "the peer's bridge holds each chunk for its wire time; pymodbus answers at once",
                "pty unpaced": "a pty moves bytes at memory speed whatever the baud rate: this is driver + peer overhead",
                "tcp (RTU over TCP, loopback)": "no wire at all: driver + TCP + pymodbus overhead",
            }[label]
            rows.append(Row(b, f"measured poll, {label} (median of {POLLS})", round(med_ms, 2), "ms", note))
            rows.append(Row(b, f"ratio measured / wire, {label}", round(med_ms / wire_ms, 2), "x", ""))
    return rows
