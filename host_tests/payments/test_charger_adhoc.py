"""Ad-hoc sessions on the real firmware (MicroPython unix port, pymodbus meter, real broker): the
retained status carries the one-time payment code; a start command signed by the backend key
with that code and a hold starts an `adhoc` session capped at the hold, which stops before its
running cost would pass it; a replayed command, or one naming a stale code, starts nothing."""
from __future__ import annotations

import time
import uuid

from backend.keys import sign_document
from backend.mqtt import connect, make_client
from evc.tariff import compile_doc
from host_tests.charger.topics import DeviceTopics
from sim.charger import DEV, dump, flat_tariff

HOLD = 300  # 3.00 EUR: at 10 EUR/kWh + 20 % VAT about 250 Wh, a few seconds at 360 kW
RECORD = r"session: record (\d+): (\S+) (\d+) Wh (\d+) "


def start_cmd(c, code: str, ref: str, hold: int = HOLD, ttl: int = 300) -> str:
    body = {"type": "cmd", "dev": DEV, "id": uuid.uuid4().hex, "exp": int(time.time()) + ttl, "ver": int(time.time()),
            "cmd": "start", "hold": hold, "code": code, "currency": "EUR", "ref": ref}
    return sign_document(c.backend_keys.private_key(), body)


def test_adhoc_start_caps_at_the_hold_and_ignores_replays(charger, broker):
    c = charger(broker=broker.url, config={"pay_url": "https://pay.example/p", "uplink": {"status_s": 1}})
    c.seed(tariff=compile_doc(flat_tariff("10.00", flat=None)))
    watch = DeviceTopics(broker.url, DEV)
    pub = make_client(broker.url, "test-backend")
    connect(pub, broker.url)
    try:
        c.boot()
        st = watch.wait("status", lambda d: d.get("online") and d.get("pay"))
        code = st["pay"]
        assert len(code) == 8 and code.isalnum() and code.isupper(), st
        ref = uuid.uuid4().hex
        cmd = start_cmd(c, code, ref)
        pub.publish(f"evc/{DEV}/cmd", cmd, qos=1)
        c.wait_for(rf"session: started \S+ auth=adhoc ")
        started = watch.wait("evt", lambda d: d.get("evt") == "started")
        assert started["token"] == ref and started["cap"] == HOLD, started
        # the live progress the payment page and the dashboard show: energy, power, running cost
        live = watch.wait("status", lambda d: d.get("state") == "charging" and d.get("w"))
        assert type(live["w"]) is int and live["w"] > 0 and live["wh"] >= 0 and live["cost"] >= 0, live
        m = c.wait_for(RECORD, timeout=30)
        assert m.group(2) == "limit" and int(m.group(4)) <= HOLD, m.group(0)
        assert c.relay() == 0
        # a new idle period: a new code in the status
        st = watch.wait("status", lambda d: d.get("pay") not in (None, code) and d.get("state") == "idle")
        fresh = st["pay"]
        at = c.mark()
        pub.publish(f"evc/{DEV}/cmd", cmd, qos=1)  # the same signed command again
        c.wait_for(r"down: cmd rejected: replay", start=at)
        at = c.mark()
        pub.publish(f"evc/{DEV}/cmd", start_cmd(c, code, uuid.uuid4().hex), qos=1)  # a new command, the old code
        c.wait_for(r"adhoc: start \w+ refused: stale-code", start=at)
        refused = watch.wait("evt", lambda d: d.get("evt") == "refused" and d.get("reason") == "stale-code")
        assert refused["token"] != ref
        at = c.mark()
        pub.publish(f"evc/{DEV}/cmd", start_cmd(c, fresh, uuid.uuid4().hex, ttl=-5), qos=1)  # expired
        c.wait_for(r"down: cmd rejected: expired", start=at)
        time.sleep(1.5)
        assert "auth=adhoc" not in c.output()[c.output().index("refused: stale-code"):]
        assert c.relay() == 0
        c.stop()
    finally:
        watch.close()
        pub.disconnect()
    (rec,) = c.records()
    f = rec.fields
    assert f["auth"] == "adhoc" and f["token"] == ref and f["contract"] is None, dump([rec])
    assert f["stop"]["reason"] == "limit" and f["energy_wh"] > 100, dump([rec])
    assert 0 < f["cost"]["incl"] <= HOLD, "the signed total must never exceed the hold"


def test_a_paid_start_while_a_card_session_runs_is_refused(charger, broker):
    from sim.charger import authlist_doc, token

    alice = bytes.fromhex("04a1b2c3d4e5f6")
    c = charger(broker=broker.url, config={"pay_url": "https://pay.example/p", "uplink": {"status_s": 1}})
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([{"token": token(alice), "status": "accepted"}])])
    watch = DeviceTopics(broker.url, DEV)
    pub = make_client(broker.url, "test-backend")
    connect(pub, broker.url)
    try:
        c.boot()
        code = watch.wait("status", lambda d: d.get("online") and d.get("pay"))["pay"]
        c.tap(alice, r"session: started \S+ auth=list ")
        ref = uuid.uuid4().hex
        pub.publish(f"evc/{DEV}/cmd", start_cmd(c, code, ref), qos=1)
        evt = watch.wait("evt", lambda d: d.get("evt") == "refused" and d.get("token") == ref)
        assert evt["reason"] == "busy", evt
        assert c.relay() == 1  # the card's session goes on
        c.tap(alice, RECORD)
        c.stop()
    finally:
        watch.close()
        pub.disconnect()
    (rec,) = c.records()
    assert rec.fields["auth"] == "list" and rec.fields["token"] == token(alice)
