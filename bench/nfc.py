"""NFC benchmark: time from card presence to token, and bus bytes per idle poll, on the host emulators."""
from __future__ import annotations

import os
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
TAPS = 20
POLL_MS = 80  # the tap loop's default (nfc.poll_ms)
BEFORE_POLL_MS = 250  # the default before issue 23
IDLE_S = 20  # /proc CPU times tick at 10 ms: 0.5 ms/s resolution over 20 s

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


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _tap_loop(poll_ms: int) -> dict:
    """A running tap loop at poll_ms: idle polls per second and the CPU they cost (IDLE_S with no
    card), then the wall time from emu.present() to its tap line (ms) for TAPS cards."""
    rng = random.Random(7)
    with Pn532Emulator() as emu:
        url = emu.serve_tcp()
        code = _fill(_LOOP_CODE, URL=url, SECRET=SECRET, POLL_MS=poll_ms)
        proc = subprocess.Popen([*mpy.command(), "-c", code], stdout=subprocess.PIPE, text=True, env=mpy.mpy_env())
        try:
            assert proc.stdout and proc.stdout.readline().strip() == "READY"
            polls0, cpu0, t0 = emu.lists_done, _cpu_s(proc.pid), time.monotonic()
            time.sleep(IDLE_S)
            elapsed = time.monotonic() - t0
            idle = {"polls_per_s": (emu.lists_done - polls0) / elapsed,
                    "cpu_ms_per_s": (_cpu_s(proc.pid) - cpu0) * 1000 / elapsed}
            lat = []
            for _ in range(TAPS):
                time.sleep(rng.uniform(0, poll_ms / 1000))  # cards arrive at any phase of the poll cycle
                emu.present(UID)
                t0 = time.monotonic()
                line = proc.stdout.readline()
                lat.append((time.monotonic() - t0) * 1000)
                assert line.startswith("TAP "), line
                emu.remove()
                time.sleep(0.5 + 2 * poll_ms / 1000)  # gone: 500 ms of empty polls (firmware/nfc/reader.py)
            return {"lat": sorted(lat), **idle}
        finally:
            proc.kill()
            proc.wait()


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, -(-95 * len(values) // 100) - 1)]


def run() -> list[Row]:
    rows: list[Row] = []
    idle_bytes = 0
    for kind, bus in (("pn532", "HSU frames over TCP"), ("mfrc522", "SPI bytes over the bridge")):
        m = _polls(kind)
        if kind == "pn532":
            idle_bytes = m["idle"]["bytes"]
        b = f"nfc {kind}"
        rows += [
            Row(b, "bytes per idle poll", m["idle"]["bytes"], "B", bus),
            Row(b, "idle poll", statistics.median(m["idle"]["us"]) / 1000, "ms", f"median of {POLLS}"),
            Row(b, "bytes per poll with a card", m["card"]["bytes"], "B", "7-byte UID, incl. release/halt"),
            Row(b, "poll with a card to token", statistics.median(m["card"]["us"]) / 1000, "ms",
                f"median of {POLLS}: read UID + HMAC token"),
        ]
    for poll_ms, when in ((BEFORE_POLL_MS, "before (the former default)"), (POLL_MS, "the default")):
        m = _tap_loop(poll_ms)
        lat = m["lat"]
        rows += [
            Row("nfc pn532", f"card presence to token, poll_ms={poll_ms}: median / p95 / max",
                f"{statistics.median(lat):.0f} / {_p95(lat):.0f} / {max(lat):.0f}", "ms",
                f"{when}; tap loop, {TAPS} taps at random phase; goal p95 <= 100 ms"),
            Row("nfc pn532", f"idle bus traffic, poll_ms={poll_ms}", round(m["polls_per_s"] * idle_bytes), "B/s",
                f"{m['polls_per_s']:.1f} polls/s x {idle_bytes} B; HSU at 115,200 baud carries 11,520 B/s"),
            Row("nfc pn532", f"idle CPU of the tap loop, poll_ms={poll_ms}", round(m["cpu_ms_per_s"], 1), "ms/s",
                f"MicroPython unix port on this PC (frames over TCP to the emulator), {IDLE_S} s without a card"),
        ]
    return rows
