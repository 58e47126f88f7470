"""Run the firmware's tap loop under MicroPython against an emulated reader and collect what it saw."""
from __future__ import annotations

import hashlib
import hmac

from sim import mpy

SECRET_HEX = "00112233445566778899aabbccddeeff"
SECRET = bytes.fromhex(SECRET_HEX)

UID4 = bytes.fromhex("a1b2c3d4")
UID7 = bytes.fromhex("04a1b2c3d4e5f6")
UID10 = bytes.fromhex("08112233445566778899")
OTHER7 = bytes.fromhex("04deadbeef0102")


def token(uid: bytes, secret: bytes = SECRET) -> str:
    """The blueprint's card token, computed independently with CPython's hmac."""
    return hmac.new(secret, uid, hashlib.sha256).digest()[:16].hex()


def run_reader(url: str, polls: int, kind: str = "pn532", poll_ms: int = 2, absent_polls: int = 2,
               timeout: float = 30, driver_options: dict | None = None, bus: str | None = None) -> dict:
    """Run Reader.run until `polls` polls were answered; return taps, faults, counters, log.
    The driver comes from nfc.open_driver, on the bus the host board opens for url (and bus)."""
    code = f"""
import asyncio
from nfc import open_driver
from nfc.reader import Reader

async def main():
    driver = open_driver({kind!r}, {url!r}, {bus!r}, **{driver_options or {}!r})
    reader = Reader(driver, {SECRET_HEX!r}, poll_ms={poll_ms}, absent_polls={absent_polls})
    taps = []
    faults = []
    task = asyncio.create_task(reader.run(lambda t: taps.append([t.token, t.uid_len]), faults.append))
    while reader.polls < {polls}:
        await asyncio.sleep_ms(2)
    task.cancel()
    emit({{"taps": taps, "faults": faults, "polls": reader.polls, "fault_count": reader.faults}})

asyncio.run(main())
"""
    result = mpy.run(code, timeout=timeout)
    out = dict(result.value)
    out["log"] = result.stdout + result.stderr
    return out
