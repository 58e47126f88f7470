"""The firmware PN532 driver and tap loop, end to end over HSU against the emulator."""
from __future__ import annotations

import pytest

from host_tests.nfc.scenario import OTHER7, UID4, UID7, UID10, run_reader, token
from sim.pn532_emu import FAULTS


def _taps(*uids: bytes) -> list:
    return [[token(u), len(u)] for u in uids]


def _no_raw_uid(log: str, *uids: bytes) -> None:
    for u in uids:
        assert u.hex() not in log.lower(), "a raw UID reached the log"


@pytest.mark.parametrize("uid", [UID4, UID7, UID10], ids=["4-byte", "7-byte", "10-byte"])
def test_uid_lengths_give_one_tap_each(pn532, uid):
    pn532.plan([None, uid, uid, uid])
    out = run_reader(pn532.url, polls=6)
    assert out["taps"] == _taps(uid)
    assert out["fault_count"] == 0
    _no_raw_uid(out["log"], uid)


def test_hold_remove_retap(pn532):
    pn532.plan([UID7, UID7, UID7, None, None, UID7, UID7, None, None])
    out = run_reader(pn532.url, polls=11)
    assert out["taps"] == _taps(UID7, UID7)


def test_one_missed_poll_is_not_a_removal(pn532):
    pn532.plan([UID7, None, UID7, UID7, None])
    out = run_reader(pn532.url, polls=7)
    assert out["taps"] == _taps(UID7)


def test_removal_takes_500_ms_of_empty_polls_by_default(pn532):
    """At poll_ms=100 the default absent_polls is 5: four empty polls (400 ms) are still the same
    card held at the edge of the field, five make it gone and the card back a new tap."""
    pn532.plan([UID7, None, None, None, None, UID7, None, None, None, None, None, UID7, UID7])
    out = run_reader(pn532.url, polls=14, poll_ms=100, absent_polls=None)
    assert out["taps"] == _taps(UID7, UID7)


def test_two_different_cards_in_a_row(pn532):
    # swapped without a gap, then removed and a third card after a gap
    pn532.plan([UID7, UID7, OTHER7, OTHER7, None, None, UID4, None])
    out = run_reader(pn532.url, polls=10)
    assert out["taps"] == _taps(UID7, OTHER7, UID4)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_while_card_arrives(pn532, fault):
    pn532.plan([None, (UID7, fault), UID7, UID7, None])
    out = run_reader(pn532.url, polls=7)
    assert out["taps"] == _taps(UID7), out["log"]
    _no_raw_uid(out["log"], UID7)
    assert pn532.pending_faults() == 0  # the fault did happen
    if fault in ("bad_lcs", "bad_dcs", "truncated"):
        assert pn532.stats.nacks_from_host >= 1  # recovered by asking again
    if fault == "no_answer":
        assert pn532.stats.aborts >= 1 and out["fault_count"] == 1


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_while_card_held_is_not_a_new_tap(pn532, fault):
    pn532.plan([UID10, UID10, (UID10, fault), UID10, UID10])
    out = run_reader(pn532.url, polls=7)
    assert out["taps"] == _taps(UID10), out["log"]


@pytest.mark.parametrize("fault", ["silence", "no_answer", "nack", "error_frame", "bad_dcs"])
def test_repeated_faults_are_reported_and_recovered(pn532, fault):
    # Enough faults in a row that retries inside one poll cannot hide them.
    pn532.inject(fault, 8)
    pn532.plan([None, UID4, UID4])
    out = run_reader(pn532.url, polls=4)
    assert out["taps"] == _taps(UID4)
    assert out["fault_count"] >= 1 and out["faults"]
    assert "reader fault #1" in out["log"] and "reader back after" in out["log"]


def test_every_fault_in_turn_never_yields_a_wrong_uid(pn532):
    plan = []
    for fault in FAULTS:
        plan += [(UID4, fault), UID4, None, None, (OTHER7, fault), OTHER7, None, None]
    pn532.plan(plan)
    out = run_reader(pn532.url, polls=len(plan) + 2, timeout=60)
    assert out["taps"] == _taps(UID4, OTHER7) * len(FAULTS)


def test_pty_transport(pn532):
    path = pn532.serve_pty()  # same emulator, now also behind a pseudo-terminal
    pn532.plan([UID7, UID7, None, None, UID10])
    out = run_reader(path, polls=6)
    assert out["taps"] == _taps(UID7, UID10)
