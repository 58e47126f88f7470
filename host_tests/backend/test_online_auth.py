"""The backend answers a charger's online authorization requests (auth/req -> auth/res)."""
import json
import threading
import time

import paho.mqtt.client as mqtt

from backend.authorize import answer
from backend.db import open_db
from backend.models import Card

KNOWN = "a" * 32
BLOCKED = "b" * 32
EMPTY = "c" * 32
OLD = "d" * 32


def _cards(db_target):
    sessions = open_db(db_target)
    with sessions.begin() as db:
        db.add_all([
            Card(token=KNOWN, status="accepted", exp=None, contract="FLEET", balance=None, updated_at=0),
            Card(token=BLOCKED, status="blocked", exp=None, contract=None, balance=None, updated_at=0),
            Card(token=EMPTY, status="accepted", exp=None, contract=None, balance=0, updated_at=0),
            Card(token=OLD, status="accepted", exp=1000, contract=None, balance=None, updated_at=0),
        ])
    return sessions


def test_answers(tmp_path):
    sessions = _cards(str(tmp_path / "b.db"))
    req = lambda tok: json.dumps({"id": "r1", "token": tok}).encode()  # noqa: E731
    assert answer(sessions, req(KNOWN)) == {"id": "r1", "ok": True, "status": "accepted", "contract": "FLEET"}
    assert answer(sessions, req(BLOCKED))["ok"] is False
    assert answer(sessions, req(EMPTY))["ok"] is False  # prepaid with nothing left
    assert answer(sessions, req(OLD), now=2000)["status"] == "expired"
    assert answer(sessions, req("e" * 32)) == {"id": "r1", "ok": False, "status": "invalid"}
    assert answer(sessions, req("NOT-HEX")) == {"id": "r1", "ok": False, "status": "invalid"}
    for bad in (b"not json", b"[]", b'{"id": 1, "token": "x"}', b"{" + b" " * 5000 + b"}"):
        assert answer(sessions, bad) is None


def test_over_mqtt(broker, backends, tmp_path):
    db = str(tmp_path / "b.db")
    _cards(db)
    backends(broker.url, db)
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="charger-sim")
    c.on_message = lambda cl, u, m: (got.append(json.loads(m.payload)), done.set())
    c.connect(broker.host, broker.port)
    c.subscribe("evc/dev-1/auth/res", qos=1)
    c.loop_start()
    time.sleep(0.3)
    try:
        for _ in range(40):  # the backend may still be subscribing
            c.publish("evc/dev-1/auth/req", json.dumps({"id": "q7", "token": KNOWN}), qos=1)
            if done.wait(0.5):
                break
    finally:
        c.loop_stop()
    assert got and got[0] == {"id": "q7", "ok": True, "status": "accepted", "contract": "FLEET"}
