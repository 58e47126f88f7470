"""Sessions meeting faults: a silent meter, a power cut, a full journal, a crashing task.
Same rig as test_sessions.py: firmware under the MicroPython unix port, real peers, no broker."""
from __future__ import annotations

import time

from evc.tariff import compile_doc
from sim.charger import authlist_doc, dump, flat_tariff, token
from sim.flashfs import run_on_flash

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
STARTED = r"session: started "
RECORD = r"session: record (\d+): (\S+) (\d+) Wh (\d+) "


def _seed(c, **tariff):
    c.seed(tariff=compile_doc(flat_tariff(**tariff)),
           authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])


def test_meter_going_silent_stops_without_billing_stale_energy(charger):
    c = charger(config={"session": {"meter_fault_s": 2}})
    _seed(c)
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(1.5)
    c.ev.silence()
    silent_at = c.ev.energy_wh  # the last energy the meter could have reported
    m = c.wait_for(RECORD, timeout=15)
    assert m.group(2) == "meter-fault"
    assert c.relay() == 0
    c.wait_for(r"state idle -> faulted", timeout=10)
    c.tap(ALICE, r'event: refused .*"reason": "meter-fault"')  # no session without a live meter
    assert c.relay() == 0
    c.ev.speak()
    c.wait_for(r"state faulted -> idle", timeout=10)
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert f["stop"]["reason"] == "meter-fault" and "meter-fault" in f["flags"], dump([rec])
    assert f["stop"]["wh"] <= silent_at < c.ev.energy_wh, "energy after the meter went silent was billed"
    assert f["energy_wh"] > 0


def test_power_cut_mid_session_is_recovered_with_power_loss(charger):
    # device time runs 5x: a checkpoint (5 s device time) lands every second
    c = charger(speed=5, config={"journal": {"checkpoint_s": 5}})
    balance = 100000  # a prepaid card: the spend of the recovered session is booked too
    c.seed(tariff=compile_doc(flat_tariff()),
           authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted", "balance": balance}])])
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(3.0)
    c.power_cut()
    assert c.relay() == 1, "a killed process leaves its relay pin as it was"
    time.sleep(0.3)
    cut_wh = c.ev.energy_wh
    c.boot()
    assert c.relay() == 0
    c.wait_for(r"session: record (\d+): power-loss (\d+) Wh", timeout=20)
    assert "closing session" in c.output()
    c.tap(ALICE, STARTED)  # the charger works on
    c.tap(ALICE, RECORD)
    c.stop()
    first, second = c.records()
    f = first.fields
    assert f["stop"]["reason"] == "power-loss" and "power-loss" in f["flags"], dump([first])
    assert "meter-fault" not in f["flags"]
    # closed at the register read at reboot (the meter kept counting while the relay was closed)
    assert cut_wh <= f["stop"]["wh"] <= second.fields["start"]["wh"]
    assert f["stop"]["t"] > f["start"]["t"], "stop time is the last checkpoint's"
    assert second.fields["stop"]["reason"] == "card" and second.fields["flags"] == []
    assert f["charged"] == f["cost"]["incl"] > 0 and second.fields["charged"] == second.fields["cost"]["incl"]
    spent = run_on_flash(c.root, f"""
from billing.prepaid import Ledger
emit(Ledger(ROOT + "/auth/spent.bin").spent_since("{token(ALICE)}", 0))
""").value
    assert spent == f["charged"] + second.fields["charged"]


def test_journal_full_refuses_new_sessions_and_loses_nothing(charger):
    c = charger(config={"journal": {"max_bytes": 16 * 1024}})
    _seed(c)
    before = c.fill_journal(3, token(ALICE))  # weeks offline: the last few sessions are left to play
    assert before >= 5
    c.boot()
    done = before
    for _ in range(10):
        m = c.tap(ALICE, rf"{STARTED}|journal full")
        if "journal full" in m.group(0):
            break
        time.sleep(0.3)
        c.tap(ALICE, RECORD)
        done += 1
    else:
        raise AssertionError("the journal never filled")
    assert done >= before + 2
    c.wait_for(r'event: refused .*"reason": "journal-full"')
    assert c.relay() == 0
    c.stop()
    recs = c.records()
    assert [r.seq for r in recs] == list(range(1, done + 1))
    # after a reboot: still refused, still every record
    c.boot()
    c.tap(ALICE, r"journal full")
    assert c.relay() == 0
    c.stop()
    assert [r.seq for r in c.records()] == list(range(1, done + 1))


def test_crashed_tasks_are_restarted_and_the_session_goes_on(charger):
    c = charger()
    _seed(c)
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(0.5)
    for task in ("meter", "control", "status"):
        at = c.mark()
        c.inject(task)
        c.wait_for(rf"task {task} crashed; restart 1", timeout=10, start=at)
        assert f"injected crash in {task}" in c.output()
        time.sleep(1.5)
        assert c.relay() == 1
    c.status_after(c.mark())
    wh_before = c.ev.energy_wh
    time.sleep(0.5)
    c.tap(ALICE, RECORD)
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert f["stop"]["reason"] == "card" and f["flags"] == [], dump([rec])
    assert f["stop"]["wh"] >= wh_before, "metering went on after the meter task was restarted"
    assert "WATCHDOG" not in c.output()

