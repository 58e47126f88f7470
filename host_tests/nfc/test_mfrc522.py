"""The firmware MFRC522 driver and tap loop over the host SPI bridge against the register-level emulator."""
from __future__ import annotations

import pytest

from host_tests.nfc.scenario import OTHER7, UID4, UID7, UID10, run_reader, token
from sim.mfrc522_emu import FAULTS, Mfrc522Emulator
from sim.mfrc522_emu import crc_a as emu_crc_a


def _taps(*uids: bytes) -> list:
    return [[token(u), len(u)] for u in uids]


def _run(emu, polls: int, **kw) -> dict:
    return run_reader(emu.url, polls=polls, kind="mfrc522", **kw)


@pytest.mark.parametrize("uid", [UID4, UID7, UID10], ids=["4-byte", "7-byte", "10-byte"])
def test_uid_lengths_give_one_tap_each(mfrc522, uid):
    mfrc522.plan([None, uid, uid, uid])
    out = _run(mfrc522, polls=6)
    assert out["taps"] == _taps(uid)
    assert out["fault_count"] == 0
    assert uid.hex() not in out["log"].lower()
    # cascade levels used: 1 for 4 bytes, 2 for 7, 3 for 10
    levels = {4: {"93"}, 7: {"93", "95"}, 10: {"93", "95", "97"}}[len(uid)]
    assert levels <= set(mfrc522.stats.frames)
    assert mfrc522.stats.frames["50"] >= 3  # HLTA after every read


def test_hold_remove_retap_and_two_cards(mfrc522):
    mfrc522.plan([UID7, UID7, None, None, UID7, OTHER7, OTHER7, None, None, UID10])
    out = _run(mfrc522, polls=12)
    assert out["taps"] == _taps(UID7, UID7, OTHER7, UID10)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_while_card_arrives(mfrc522, fault):
    mfrc522.plan([None, (UID10, fault), UID10, UID10, UID10])
    out = _run(mfrc522, polls=7)
    assert out["taps"] == _taps(UID10), out["log"]


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_while_card_held_is_not_a_new_tap(mfrc522, fault):
    mfrc522.plan([UID7, UID7, (UID7, fault), UID7, UID7])
    out = _run(mfrc522, polls=7)
    assert out["taps"] == _taps(UID7), out["log"]
    if fault in ("stuck", "bridge_silence", "parity", "bad_crc"):
        assert out["fault_count"] >= 1 and "reader back after" in out["log"]


def test_two_cards_in_the_field_collide_and_one_wins(mfrc522):
    mfrc522.plan([[UID7, OTHER7], [UID7, OTHER7], [UID7, OTHER7]])
    out = _run(mfrc522, polls=5)
    assert out["taps"] in (_taps(UID7), _taps(OTHER7))  # one card, chosen by anticollision


WALK = """
import asyncio
from nfc import open_driver
async def main():
    d = open_driver("mfrc522", {url!r})
    await d.init()
    buf = bytearray(10)
    seen = []
    for _ in range(5):
        n = await d.read_uid(buf, wake={wake})
        seen.append(bytes(buf[:n]).hex())
    emit(seen)
asyncio.run(main())
"""


def test_reqa_walks_every_card_once_wupa_wakes_them_again(mfrc522, mpy):
    # Three cards that share their first bits, so anticollision must resolve real collisions.
    uids = [bytes.fromhex("04a1b2c3d4e5f6"), bytes.fromhex("04a1b2c3d4e5f7"), bytes.fromhex("a1b2c3d4"),
            bytes.fromhex("08112233445566778899")]
    mfrc522.present(*uids)
    seen = mpy.run(WALK.format(url=mfrc522.url, wake=False)).value
    assert sorted(seen[:4]) == sorted(u.hex() for u in uids) and seen[4] == ""
    again = mpy.run(WALK.format(url=mfrc522.url, wake=True)).value
    assert len(set(again)) == 1 and again[0] in [u.hex() for u in uids]  # halted cards answer WUPA


def test_unknown_chip_version_is_a_clear_fault(mpy):
    with Mfrc522Emulator(version=0x00) as emu:
        url = emu.serve_tcp()
        out = mpy.run(f"""
import asyncio
from nfc import open_driver
try:
    asyncio.run(open_driver("mfrc522", {url!r}).init())
except Exception as exc:
    emit([type(exc).__name__, str(exc)])
""").value
    assert out == ["ReaderError", "MFRC522: unknown version 0x00 (wiring?)"]


def test_crc_a_matches_iso_examples(mpy):
    got = mpy.run("""
from nfc.mfrc522 import crc_a
emit([crc_a(b"\\x00\\x00", 2), crc_a(b"\\x12\\x34", 2), crc_a(b"\\x50\\x00", 2)])
""").value
    # ISO/IEC 14443-3 annex B: 00 00 -> A0 1E, 12 34 -> 26 CF; HLTA 50 00 -> 57 CD
    assert got == [0x1EA0, 0xCF26, 0xCD57]
    assert [emu_crc_a(b) for b in (b"\x00\x00", b"\x12\x34", b"\x50\x00")] == [
        bytes.fromhex("a01e"), bytes.fromhex("26cf"), bytes.fromhex("57cd")]
