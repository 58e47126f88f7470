"""Bus faults: each gives a typed error (never a crash, never a wrong reading) and the next poll recovers."""
from __future__ import annotations

import pytest

from host_tests.meter import oracle
from sim.meter_peer import MeterPeer

MODEL = "finder-7e"  # float32 Wh / W at 0x1106 / 0x1026, no serial: every transaction is a reading
ENERGY = (4, 0x1106, "f32")
POWER = (4, 0x1026, "f32")

# fault -> (error class of the cause, extra fault args)
FAULTS = {
    "crc": ("CrcError", {}),
    "silence": ("Timeout", {}),
    "exception": ("ExceptionResponse", {"code": 4}),
    "truncate": ("FrameError", {}),
    "wrong_unit": ("FrameError", {}),
    "garbage": ("FrameError", {}),
    "noise": ("FrameError", {}),
}


def _set(peer: MeterPeer, wh: float, w: float) -> None:
    peer.set(ENERGY, oracle.f32_bits(wh))
    peer.set(POWER, oracle.f32_bits(w))


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_typed_and_next_poll_recovers(any_peer, firmware, fault):
    cause, kw = FAULTS[fault]
    _set(any_peer, 5000, 1500)
    firmware.open(any_peer.url, MODEL, retries=0, timeout_ms=100)
    assert firmware.poll()["ok"]["energy_wh"] == 5000
    any_peer.fault(fault, **kw)
    _set(any_peer, 5001, 1600)
    bad = firmware.poll()
    assert bad["err"] == "MeterCommError" and bad["cause"] == cause, bad
    if fault == "exception":
        assert bad["code"] == 4
    good = firmware.poll()
    assert good["ok"]["energy_wh"] == 5001 and good["ok"]["power_w"] == 1600


# faults of the wire, which a retry hides; an exception response is the meter's own answer and is
# not retried (except "busy": test_busy_is_retried_other_exceptions_are_not)
WIRE_FAULTS = sorted(f for f in FAULTS if f != "exception")


@pytest.mark.parametrize("fault", WIRE_FAULTS)
def test_retry_hides_a_single_fault(peer, firmware, fault):
    _set(peer, 7000, 100)
    firmware.open(peer.url, MODEL, retries=2, timeout_ms=100)
    peer.fault(fault, **FAULTS[fault][1])
    got = firmware.poll()
    assert got["ok"]["energy_wh"] == 7000
    assert firmware.call("stats")["retried"] == 1


def test_busy_is_retried_other_exceptions_are_not(peer, firmware):
    _set(peer, 7000, 100)
    firmware.open(peer.url, MODEL, retries=2)
    peer.fault("exception", code=6)
    assert firmware.poll()["ok"]["energy_wh"] == 7000
    peer.fault("exception", code=2)
    got = firmware.poll()
    assert got["cause"] == "ExceptionResponse" and got["code"] == 2
    assert firmware.call("stats")["retried"] == 1


def test_persistent_silence_fails_after_bounded_retries(peer, firmware):
    _set(peer, 7000, 100)
    firmware.open(peer.url, MODEL, retries=2, timeout_ms=50)
    peer.fault("silence", count=3)
    got = firmware.poll()
    assert got["cause"] == "Timeout"
    assert peer.pending_faults() == 0  # exactly 1 + 2 retries were sent
    assert firmware.poll()["ok"]["energy_wh"] == 7000


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_stale_late_reply_is_never_taken_for_the_current_one(firmware, transport):
    """The meter answers the power read after the master gave up; that answer then sits in the
    receive buffer. Taken for the next power read it would give the old power, and the real
    power reply would then pass for the energy reading."""
    with MeterPeer(transport) as peer:
        _set(peer, 5000, 1000)
        firmware.open(peer.url, MODEL, retries=0, timeout_ms=100)
        peer.fault("late", delay_ms=250)
        assert firmware.poll()["cause"] == "Timeout"
        _set(peer, 5000, 2000)
        firmware.call("sleep", ms=400)  # the stale reply is now waiting in the buffer
        got = firmware.poll()
        assert got["ok"]["power_w"] == 2000 and got["ok"]["energy_wh"] == 5000, got


def test_stale_reply_arriving_during_retry_is_not_believed(peer, firmware):
    _set(peer, 5000, 1000)
    firmware.open(peer.url, MODEL, retries=2, timeout_ms=100)
    peer.fault("late", delay_ms=150)
    got = firmware.poll()
    assert got["ok"]["energy_wh"] == 5000 and got["ok"]["power_w"] == 1000
    firmware.call("sleep", ms=300)
    _set(peer, 5002, 3000)
    got = firmware.poll()
    assert got["ok"]["energy_wh"] == 5002 and got["ok"]["power_w"] == 3000


def test_gateway_down_is_a_link_error_then_recovers(firmware):
    peer = MeterPeer("tcp").start()
    url = peer.url
    _set(peer, 5000, 1000)
    firmware.open(url, MODEL, retries=0)
    assert firmware.poll()["ok"]["energy_wh"] == 5000
    peer.stop_peer()
    got = firmware.poll()
    assert got["err"] == "MeterCommError" and got["cause"] in ("LinkError", "Timeout")
    assert firmware.call("fresh", max_age_ms=0) is None
