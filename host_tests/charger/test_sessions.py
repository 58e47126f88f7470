"""Charging sessions end to end: the firmware (compiled .mpy, board heap) under the MicroPython
unix port, a pymodbus meter behind a simulated EV, an emulated PN532; no broker, except for the
online policy, which asks the reference backend over a real one. Every record is read back from
the journal on the flash image (or from the backend that acknowledged it) and verified with
evc.verify (cryptography)."""
from __future__ import annotations

import time
from decimal import ROUND_HALF_UP, Decimal

import pytest

from evc.tariff import compile_doc
from evc.verify import verify_record
from sim.backend import BackendProcess
from sim.charger import DEV, authlist_doc, dump, flat_tariff, token

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
BOB = bytes.fromhex("04b0b0b0b0b0b0")
MASTER = bytes.fromhex("deadbeef")
STRANGER = bytes.fromhex("04777777777777")
FRIEND = bytes.fromhex("04f1f1f1f1f1f1")  # not on the charger's list; accepted by the backend
BANNED = bytes.fromhex("04bbbbbbbbbbbb")  # not on the charger's list; blocked at the backend
STARTED = r"session: started "
RECORD = r"session: record (\d+): (\S+) (\d+) Wh (\d+) "
NOW = int(time.time())


def cents(x: Decimal) -> int:
    return int(x.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def accepted(uid: bytes, **extra) -> dict:
    return {"token": token(uid), "status": "accepted", **extra}


def test_normal_session_record_verifies_and_is_priced(charger):
    c = charger(config={"pins": {"led_ok": "led_ok", "buzzer": "buzzer"}})
    c.seed(tariff=compile_doc(flat_tariff(), ver=3),
           authlist=[authlist_doc([accepted(ALICE, contract="ACME")])])
    c.boot()
    assert c.relay() == 0
    tapped = int(time.time())  # the module's NOW is taken at collection, minutes earlier in a full run
    c.tap(ALICE, STARTED)
    c.wait_for(r"state authorizing -> charging")
    led = set()
    for _ in range(30):  # the charging pattern blinks led_ok (1 s on, 1 s off)
        led.add(c.dev.pin("led_ok"))
        assert c.relay() == 1
        time.sleep(0.1)
    assert led == {0, 1}
    c.tap(ALICE, RECORD)
    assert c.relay() == 0
    c.status_after(c.mark())
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert f["token"] == token(ALICE) and f["auth"] == "list" and f["contract"] == "ACME", dump([rec])
    assert f["stop"]["reason"] == "card" and f["flags"] == []
    assert f["tariff"] == {"id": "T-STD", "ver": 3}
    assert f["meter"] == {"model": "sdm630", "serial": "21000042"}
    wh = f["energy_wh"]
    assert 1_000_000 <= f["start"]["wh"] < f["stop"]["wh"] <= c.ev.energy_wh
    assert wh > 100, "the EV charged for seconds at 360 kW"
    excl = Decimal("0.395") * wh / 1000 + Decimal("0.50")
    assert f["cost"]["excl"] == cents(excl * 100)
    assert f["cost"]["incl"] == cents(excl * Decimal("1.2") * 100)
    assert sum(line["qty"] for line in f["cost"]["lines"] if line["dim"] == "ENERGY") == wh
    assert 2 <= f["stop"]["t"] - f["start"]["t"] <= 10 and abs(f["start"]["t"] - tapped) < 30
    assert f["parking_s"] == 0  # power flowed all along


def test_other_card_cannot_stop_but_master_can(charger):
    c = charger(config={"auth": {"master_tokens": [token(MASTER)]}})
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([accepted(ALICE), accepted(BOB)])])
    c.boot()
    c.tap(ALICE, STARTED)
    c.tap(BOB, r"tap by another card ignored")
    time.sleep(1.2)
    assert c.relay() == 1 and "session: record" not in c.output()
    c.tap(MASTER, RECORD)
    assert c.relay() == 0
    c.stop()
    (rec,) = c.records()
    assert rec.fields["token"] == token(ALICE) and rec.fields["stop"]["reason"] == "card"
    assert rec.fields["energy_wh"] > 0


REJECTED = [  # list entries rejected under every policy, with the reason the device logs
    (bytes.fromhex("04000000000001"), {"status": "blocked"}, "blocked"),
    (bytes.fromhex("04000000000002"), {"status": "expired"}, "expired"),
    (bytes.fromhex("04000000000003"), {"status": "accepted", "exp": NOW - 3600}, "expired"),
    (bytes.fromhex("04000000000004"), {"status": "invalid"}, "invalid"),
]


@pytest.mark.parametrize("policy", ["reject", "offline"])
def test_list_rejections_and_unknown_card_policy(charger, policy):
    cap_wh = 300
    c = charger(config={"auth": {"unknown": policy, "offline_max_wh": cap_wh, "offline_max_cost": 0}})
    c.seed(tariff=compile_doc(flat_tariff()),
           authlist=[authlist_doc([{"token": token(uid), **e} for uid, e, _ in REJECTED])])
    c.boot()
    for uid, _, reason in REJECTED:
        c.tap(uid, rf"card rejected: {reason}$")
        assert c.relay() == 0
    if policy == "reject":
        c.tap(STRANGER, r"card rejected: unknown$")
        time.sleep(0.5)
        assert c.relay() == 0
        c.stop()
        assert c.records() == []
        return
    # offline: charge up to the cap
    c.tap(STRANGER, STARTED)
    c.wait_for(RECORD, timeout=20)
    assert c.relay() == 0
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert f["auth"] == "offline" and f["contract"] is None and f["stop"]["reason"] == "limit", dump([rec])
    # stopped at the cap: at most one meter interval (250 ms at 100 Wh/s) past it
    assert cap_wh <= f["energy_wh"] <= cap_wh + 40


def _backend_db(path: str, device_pem: str):
    """The reference backend's database: this charger registered, FRIEND and BANNED known."""
    from backend.db import open_db
    from backend.keys import load_public_key
    from backend.models import Card, Device

    sessions = open_db(path)
    with sessions.begin() as db:
        db.add(Device(id=DEV, pubkey=load_public_key(device_pem.encode()), added_at=0, head_seq=0, head_hash=""))
        db.add_all([
            Card(token=token(FRIEND), status="accepted", exp=None, contract="FLEET", balance=None, updated_at=0),
            Card(token=token(BANNED), status="blocked", exp=None, contract=None, balance=None, updated_at=0),
        ])
    return sessions


def _stored(sessions, seq: int, timeout: float = 20) -> str | None:
    """The record seq as the backend stored it (the raw JWS), waiting for it up to timeout."""
    from backend.models import Session

    deadline = time.monotonic() + timeout
    while True:
        with sessions() as db:
            row = db.get(Session, (DEV, seq))
            if row is not None or time.monotonic() > deadline:
                return row and row.raw
        time.sleep(0.1)


def test_online_policy_asks_the_backend_then_falls_back_offline(charger, broker, tmp_path):
    """Policy "online" with the reference backend answering over a real broker: a card the charger
    does not know is authorized by the backend (auth "online", its contract: a signed answer) or
    refused as the backend says; with the broker gone the cached answer still gives the contract
    (auth "cache") and an unknown card gets the offline rule (the cap)."""
    cap_wh = 300
    c = charger(broker=broker.url, config={"auth": {"unknown": "online", "offline_max_wh": cap_wh,
                                                    "offline_max_cost": 0}})
    c.seed(tariff=compile_doc(flat_tariff()),
           authlist=[authlist_doc([{"token": token(uid), **e} for uid, e, _ in REJECTED])])
    pem = c.provision()
    sessions = _backend_db(str(tmp_path / "backend.db"), pem)
    # the backend the device trusts: its key is the one the device config pins
    backend = BackendProcess(broker.url, str(tmp_path / "backend.db"),
                             env={"EVC_BACKEND_KEYS": str(c.backend_keys.folder)}).start()
    try:
        c.boot()
        c.wait_for(r"uplink: connected to ")
        for uid, _, reason in REJECTED:  # the list decides: the backend is not asked
            c.tap(uid, rf"card rejected: {reason}$")
            assert c.relay() == 0
        c.tap(FRIEND, r"session: started \S+ auth=online ")
        time.sleep(1.0)
        assert c.relay() == 1
        c.tap(FRIEND, RECORD)
        assert c.relay() == 0
        c.tap(STRANGER, r"card rejected: invalid$")  # unknown to the backend too
        c.tap(BANNED, r"card rejected: blocked$")
        assert c.relay() == 0
        raw = _stored(sessions, 1)
        assert raw, "the backend did not store the online session"
        c.wait_for(r"status: .* seq=1 pending=0 ", start=c.mark())  # and the device has its ack
        broker.stop()  # the network is gone: no answer can come
        c.wait_for(r"uplink: offline", start=c.mark())
        c.tap(FRIEND, r"session: started \S+ auth=cache ")  # the backend's signed answer, cached until its exp
        time.sleep(0.5)
        c.tap(FRIEND, RECORD)
        at = c.mark()
        c.tap(bytes.fromhex("04999999999999"), rf"{STARTED}\S+ auth=offline ")  # unknown to all
        c.wait_for(RECORD, timeout=20, start=at)
        assert c.relay() == 0
        c.stop()
    finally:
        backend.stop()
        sessions.kw["bind"].dispose()
    online = verify_record(raw, pem, kid=DEV)
    f = online.fields
    assert f["seq"] == 1 and f["token"] == token(FRIEND), dump([online])
    assert f["auth"] == "online" and f["contract"] == "FLEET" and f["stop"]["reason"] == "card"
    assert f["energy_wh"] > 0
    cached, offline = c.records(after=online)  # still in the journal: no broker to send them to
    assert cached.fields["auth"] == "cache" and cached.fields["contract"] == "FLEET", dump([cached])
    g = offline.fields
    assert g["auth"] == "offline" and g["contract"] is None and g["stop"]["reason"] == "limit", dump([offline])
    assert cap_wh <= g["energy_wh"] <= cap_wh + 40


def test_prepaid_card_stops_before_the_balance_runs_out(charger):
    balance = 500
    c = charger(config={"auth": {"prepaid_min": 100}})
    # 10 EUR/kWh + 20 % VAT: the 500 cent balance lasts about 417 Wh, about 4 s at 360 kW
    # BOB's contract has its own tariff, whose 2 EUR session fee alone is more than his balance
    c.seed(tariff=compile_doc(flat_tariff("10.00", flat=None), {"FEE": flat_tariff(flat="2.00", tid="T-FEE")}),
           authlist=[authlist_doc([accepted(ALICE, balance=balance, bal_seq=0, contract="PRE"),
                                   accepted(BOB, balance=150, bal_seq=0, contract="FEE")])])
    c.boot()
    c.tap(ALICE, STARTED)
    m = c.wait_for(RECORD, timeout=20)
    assert m.group(2) == "balance"
    assert c.relay() == 0
    # what is left is below the minimum to start: refused, no new session
    c.tap(ALICE, r"card rejected: balance$")
    c.tap(BOB, r"card rejected: balance$")
    assert c.relay() == 0
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert f["stop"]["reason"] == "balance" and f["contract"] == "PRE", dump([rec])
    assert 0 < f["charged"] <= balance
    assert f["cost"]["incl"] <= balance, "the bill must never exceed the prepaid balance"
    assert f["charged"] == f["cost"]["incl"]
    assert balance - f["charged"] < 100
    assert f["energy_wh"] > 300


def test_void_session_is_recorded_with_cost_zero(charger):
    # slow meter polls: the stop comes before any reading newer than the start reading
    c = charger(config={"session": {"min_energy_wh": 100000}, "meter": {"poll_ms": 4000, "max_age_ms": 10000}})
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([accepted(ALICE)])])
    c.boot()
    c.tap(ALICE, STARTED)
    c.tap(ALICE, RECORD)
    c.stop()
    (rec,) = c.records()
    f = rec.fields
    assert "void" in f["flags"] and f["cost"]["excl"] == f["cost"]["incl"] == 0 and f["cost"]["lines"] == []
    assert f["energy_wh"] == f["stop"]["wh"] - f["start"]["wh"]


def test_unplug_by_plug_pin_stops_the_session(charger):
    c = charger(plug_pin="plug")
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([accepted(ALICE)])])
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(1.0)
    c.ev.unplug()
    m = c.wait_for(RECORD, timeout=10)
    assert m.group(2) == "unplugged" and c.relay() == 0
    c.tap(ALICE, r'event: refused .*"reason": "unplugged"')  # no EV: no session, no record
    assert c.relay() == 0
    c.stop()
    (rec,) = c.records()
    assert rec.fields["stop"]["reason"] == "unplugged" and rec.fields["energy_wh"] > 0
    assert rec.fields["tariff"]["id"] == "T-STD" and rec.fields["cost"]["incl"] > 0


def test_ev_drawing_no_power_is_suspended_then_unplugged(charger):
    c = charger(config={"session": {"unplug_power_w": 50, "unplug_after_s": 2}})
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([accepted(ALICE)])])
    c.boot()
    c.tap(ALICE, STARTED)
    time.sleep(1.0)
    c.ev.set_power(0)
    c.wait_for(r"state charging -> suspended", timeout=10)
    assert c.relay() == 1
    m = c.wait_for(RECORD, timeout=10)
    assert m.group(2) == "unplugged"
    c.stop()
    (rec,) = c.records()
    assert rec.fields["stop"]["reason"] == "unplugged"
    # the idle time before the stop is in the record (the dashboard's idle-while-plugged time)
    f = rec.fields
    assert 1 <= f["parking_s"] <= f["stop"]["t"] - f["start"]["t"], dump([rec])
