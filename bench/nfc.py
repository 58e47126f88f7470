"""NFC benchmark: time from card presence to token, and bus bytes per idle poll, on the host emulators."""
from __future__ import annotations

import random
import statistics
import subprocess
import time

from bench.common import Row, mpy
from sim.mfrc522_emu import Mfrc522Emulator
from sim.pn532_emu import Pn532Emulator

TITLE = "NFC: card presence to token, bytes per idle poll (PN532 HSU over TCP, MFRC522 over the SPI bridge)"

SECRET = "00112233445566778899aabbccddeeff"
UID = bytes.fromhex("04a1b2c3d4e5f6")
POLLS = 20
TAPS = 8
POLL_MS = 250  # the tap loop's default

_POLLS_CODE = """
import asyncio, time
from nfc import open_driver
from nfc.token import card_token

def bus_bytes(d):
    link = getattr(d, "link", None)
    return link.bytes_in + link.bytes_out if link else d.bytes_on_bus

async def main():
    d = open_driver(KIND, URL)
    await d.init()
    buf = bytearray(10)
    key = bytes.fromhex(SECRET)
    out = {}
    for phase in ("idle", "card"):
        b0 = bus_bytes(d)
        us = []
        for _ in range(POLLS):
            t0 = time.ticks_us()
            n = await d.read_uid(buf)
            if n:
                card_token(key, buf, n)
            us.append(time.ticks_diff(time.ticks_us(), t0))
        out[phase] = {"us": us, "bytes": (bus_bytes(d) - b0) // POLLS}
    emit(out)

asyncio.run(main())
"""

_LOOP_CODE = """
import asyncio, sys
from nfc import open_driver
from nfc.reader import Reader

async def main():
    reader = Reader(open_driver("pn532", URL), SECRET, poll_ms=POLL_MS)
    await reader.driver.init()
    reader._ready = True
    sys.stdout.write("READY\\n")
    await reader.run(lambda tap: sys.stdout.write("TAP %s\\n" % tap.token))

asyncio.run(main())
"""


def _fill(code: str, **values) -> str:
    for k, v in values.items():
        code = code.replace(k, repr(v) if isinstance(v, str) else str(v))
    return code


def _polls(kind: str) -> dict:
    emu = Pn532Emulator() if kind == "pn532" else Mfrc522Emulator()
    with emu:
        url = emu.serve_tcp()
        emu.plan([None] * POLLS + [UID] * POLLS)
        return mpy.run(_fill(_POLLS_CODE, KIND=kind, URL=url, SECRET=SECRET, POLLS=POLLS), timeout=120).value


def _presence_to_token() -> list[float]:
    """Wall time from emu.present() to the tap line of a running tap loop, in ms."""
    rng = random.Random(7)
    with Pn532Emulator() as emu:
        url = emu.serve_tcp()
        code = _fill(_LOOP_CODE, URL=url, SECRET=SECRET, POLL_MS=POLL_MS)
        proc = subprocess.Popen([*mpy.command(), "-c", code], stdout=subprocess.PIPE, text=True, env=mpy.mpy_env())
        try:
            assert proc.stdout and proc.stdout.readline().strip() == "READY"
            lat = []
            for _ in range(TAPS):
                time.sleep(rng.uniform(0, POLL_MS / 1000))  # cards arrive at any phase of the poll cycle
                emu.present(UID)
                t0 = time.monotonic()
                line = proc.stdout.readline()
                lat.append((time.monotonic() - t0) * 1000)
                assert line.startswith("TAP "), line
                emu.remove()
                time.sleep(3 * POLL_MS / 1000)  # two empty polls: removed
            return lat
        finally:
            proc.kill()
            proc.wait()


def run() -> list[Row]:
    rows: list[Row] = []
    for kind, bus in (("pn532", "HSU frames over TCP"), ("mfrc522", "SPI bytes over the bridge")):
        m = _polls(kind)
        b = f"nfc {kind}"
        rows += [
            Row(b, "bytes per idle poll", m["idle"]["bytes"], "B", bus),
            Row(b, "idle poll", statistics.median(m["idle"]["us"]) / 1000, "ms", f"median of {POLLS}"),
            Row(b, "bytes per poll with a card", m["card"]["bytes"], "B", "7-byte UID, incl. release/halt"),
            Row(b, "poll with a card to token", statistics.median(m["card"]["us"]) / 1000, "ms",
                f"median of {POLLS}: read UID + HMAC token"),
        ]
    lat = _presence_to_token()
    rows += [
        Row("nfc pn532", "card presence to token (median)", statistics.median(lat), "ms",
            f"tap loop, poll_ms={POLL_MS}; {TAPS} taps at random phase"),
        Row("nfc pn532", "card presence to token (max)", max(lat), "ms", "bounded by poll_ms + one poll"),
    ]
    return rows
