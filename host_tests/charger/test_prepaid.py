"""Prepaid ledger under MicroPython: a spend booked again for the same record seq (the session
was re-closed at boot after a power cut between booking and journaling) replaces the first."""
import hashlib


def tok(i: int) -> str:
    return hashlib.sha256(b"card%d" % i).digest()[:16].hex()


def test_rebooked_seq_replaces_the_earlier_spend(mpy, tmp_path):
    got = mpy.run(f"""
import board
from billing.prepaid import Ledger
root = board.mount_flash()
led = Ledger(root + "/spent.bin")
led.record("{tok(1)}", 3, 400)
led.record("{tok(1)}", 4, 100)     # power cut before record 4 reached the journal...
led.record("{tok(1)}", 4, 130)     # ...re-closed at boot under seq 4, with the energy until then
led.record("{tok(2)}", 5, 999)
led.record("{tok(1)}", 6, 50)
led = Ledger(root + "/spent.bin")
emit([led.spent_since("{tok(1)}", 0), led.spent_since("{tok(1)}", 3), led.spent_since("{tok(1)}", 4),
      led.spent_since("{tok(2)}", 0)])
""", env={"EVC_ROOT": str(tmp_path)}).value
    assert got == [400 + 130 + 50, 130 + 50, 50, 999]
