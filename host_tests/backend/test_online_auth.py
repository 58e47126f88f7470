"""The backend answers a charger's online authorization requests (auth/req -> auth/res), signed by its key."""
import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from backend.authorize import answer
from backend.db import open_db
from backend.models import Card, Device
from evc.verify import VerifyError, verify_jws
from sim.backend_peer import Signer

KNOWN = "a" * 32
BLOCKED = "b" * 32
EMPTY = "c" * 32
OLD = "d" * 32
PREPAID = "1" * 32
SOON = "2" * 32
NOW = 1_800_000_000


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
    with sessions.begin() as db:
        db.add(Device(id="dev-1", pubkey=b"", added_at=0, head_seq=41, head_hash=""))
        db.add(Card(token=PREPAID, status="accepted", exp=None, contract="PRE", balance=750, updated_at=0))
        db.add(Card(token=SOON, status="accepted", exp=NOW + 600, contract=None, balance=None, updated_at=0))
    req = lambda tok: json.dumps({"nonce": "n0nce-1234", "token": tok}).encode()  # noqa: E731
    ask = lambda tok, now=NOW, dev="dev-1": answer(sessions, req(tok), dev, now=now, ttl_s=3600)  # noqa: E731
    base = {"type": "auth", "dev": "dev-1", "nonce": "n0nce-1234"}
    assert ask(KNOWN) == {**base, "token": KNOWN, "ok": True, "status": "accepted", "contract": "FLEET",
                          "exp": NOW + 3600, "allowance": None, "bal_seq": 0}
    assert ask(PREPAID) == {**base, "token": PREPAID, "ok": True, "status": "accepted", "contract": "PRE",
                            "exp": NOW + 3600, "allowance": 750, "bal_seq": 41, "rsv": True}  # all of it reserved
    assert ask(PREPAID)["ok"] is False  # nothing left to reserve (backend/prepaid.py; host_tests/prepaid)
    assert ask(SOON)["exp"] == NOW + 600  # never cached past the card's own expiry
    assert ask(BLOCKED)["ok"] is False and ask(BLOCKED)["exp"] == NOW + 300  # refusals are asked about again soon
    empty = ask(EMPTY)
    assert empty["ok"] is False and empty["status"] == "accepted" and empty["allowance"] == 0  # prepaid, nothing left
    assert ask(OLD, now=2000)["status"] == "expired"
    assert ask("e" * 32)["status"] == "invalid" and ask("NOT-HEX")["status"] == "invalid"
    assert ask(PREPAID, dev="dev-9")["bal_seq"] == 0  # an unknown device: no records included
    for bad in (b"not json", b"[]", b'{"nonce": 1, "token": "x"}', b'{"nonce": "short", "token": "x"}',
                b'{"id": "r1", "token": "x"}', b"{" + b" " * 5000 + b"}"):
        assert answer(sessions, bad, "dev-1") is None


def test_over_mqtt_the_answer_is_signed_by_the_backend_key(broker, backends, tmp_path):
    db = str(tmp_path / "b.db")
    _cards(db)
    backend = backends(broker.url, db)
    pub = backend.keys.public_hex()
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="charger-sim")
    c.on_message = lambda cl, u, m: (got.append(m.payload), done.set())
    c.connect(broker.host, broker.port)
    c.subscribe("evc/dev-1/auth/res", qos=1)
    c.loop_start()
    time.sleep(0.3)
    try:
        for _ in range(40):  # the backend may still be subscribing
            c.publish("evc/dev-1/auth/req", json.dumps({"nonce": "0011223344556677", "token": KNOWN}), qos=1)
            if done.wait(0.5):
                break
    finally:
        c.loop_stop()
    assert got
    head, payload = verify_jws(got[0], pub)
    doc = json.loads(payload)
    assert head["kid"] == "backend"
    assert {k: doc[k] for k in ("type", "dev", "nonce", "token", "ok", "status", "contract")} == {
        "type": "auth", "dev": "dev-1", "nonce": "0011223344556677", "token": KNOWN, "ok": True, "status": "accepted",
        "contract": "FLEET"}
    assert time.time() < doc["exp"] <= time.time() + 24 * 3600 + 5
    with pytest.raises(VerifyError):
        verify_jws(got[0], Signer().spki_hex)  # and by no other key
