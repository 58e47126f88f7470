"""Boot on a real board's terms: the watchdog is armed only when the supervisor runs, a power cut
while the meter is down never reboot-loops, a missing or damaged tariff never means free charging,
and a charger that cannot be built waits in a fault state instead of rebooting."""
from __future__ import annotations

import time

from evc.tariff import compile_doc
from sim import mpy
from sim.charger import authlist_doc, flat_tariff, token
from sim.flashfs import put_file

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
STARTED = r"session: started "
RECORD = r"session: record (\d+): (\S+) (\d+) Wh"


def boots(c) -> int:
    return c.output().count("boot: firmware")


def test_power_cut_while_the_meter_is_down_never_reboots(charger):
    # clock speed 1 and the stock 8 s watchdog: recovery waits up to 10 s for the meter
    c = charger(config={"watchdog_ms": 8000})
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(2.0)
    c.power_cut()
    c.meter.fault("silence", count=100000)  # the meter is down when the power comes back
    c.boot()
    assert c.relay() == 0
    at = c.mark()
    c.tap(ALICE, r"not starting: recovering")  # no new session before the old one is closed
    m = c.wait_for(RECORD, timeout=30, start=at)  # closed at the checkpoint after the wait, no reboot
    assert m.group(2) == "power-loss"
    time.sleep(4.0)  # past the watchdog's 8 s since boot
    assert c.dev.alive() and boots(c) == 2, c.output()[-2000:]
    c.meter.clear_faults()  # the meter answers: billing starts again
    time.sleep(2.0)
    c.tap(ALICE, STARTED)
    c.tap(ALICE, RECORD)
    c.stop()
    first, second = c.records()
    assert "meter-fault" in first.fields["flags"] and "power-loss" in first.fields["flags"]
    assert second.fields["stop"]["reason"] == "card" and second.fields["energy_wh"] > 0


def test_no_tariff_means_no_session_not_free_charging(charger):
    c = charger()
    c.seed(authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])  # no tariff ever pushed
    c.boot()
    c.tap(ALICE, r"not starting: tariff-missing")
    assert c.relay() == 0
    c.stop()
    assert c.records() == []


def test_a_damaged_tariff_file_refuses_sessions_and_a_fallback_must_be_named(charger):
    c = charger()
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    put_file(c.root, "tariff.json", '{"v": 1, "ver": 3, "tariffs": ')  # torn by a flash fault
    c.boot()
    c.wait_for(r"stored tariff unusable")
    c.tap(ALICE, r"not starting: tariff-missing")
    assert c.relay() == 0
    c.stop()
    # with a fallback tariff named in the config, the same charger prices with it (and says so)
    c2 = charger(config={"fallback_tariff": compile_doc(flat_tariff("0.50", flat=None, tid="FALLBACK"))})
    c2.seed(authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    c2.boot()
    c2.wait_for(r"fallback_tariff prices sessions")
    c2.tap(ALICE, STARTED)
    c2.tap(ALICE, RECORD)
    c2.stop()
    (rec,) = c2.records()
    assert rec.fields["tariff"]["id"] == "FALLBACK" and rec.fields["cost"]["incl"] > 0


def test_the_same_tariff_version_is_applied_again_when_the_local_copy_was_lost(tmp_path):
    """Downlink.forget: the retained document of the version the device had is no longer ignored."""
    got = mpy.run(f"""
import json
from uplink.downlink import Downlink
applied = []
d = Downlink("dev1", lambda c: c, {str(tmp_path / "uplink.json")!r}, applied.append, None, None, lambda e: None)
doc = json.dumps({{"type": "tariff", "dev": "dev1", "ver": 5}}).encode()
first = d.handle("tariff", doc)
again = d.handle("tariff", doc)           # a retained redelivery: ignored
d.forget("tariff")
d2 = Downlink("dev1", lambda c: c, {str(tmp_path / "uplink.json")!r}, applied.append, None, None, lambda e: None)
after = d2.handle("tariff", doc)          # after a reboot too: applied again
emit([first, again, after, len(applied), d2.versions()["tariff"]])
""").value
    assert got == [True, False, True, 2, 5]


def test_a_charger_that_cannot_be_built_waits_in_a_fault_state(charger):
    c = charger(config={"watchdog_ms": 2000})
    c.seed(tariff=compile_doc(flat_tariff()))
    put_file(c.root, "device.key", b"\x00not a key")  # a damaged device key
    c.dev = None
    from sim.device import DeviceProcess

    c.dev = DeviceProcess(c.root, c.config, heap=c.heap, name=c.name).start()
    c.wait_for(r"FAULT .*charging disabled until fixed", timeout=30)
    time.sleep(3.0)  # longer than the watchdog: none is armed, nothing reboots
    assert c.dev.alive() and boots(c) == 1
    assert c.relay() == 0
    c.dev.stop()
