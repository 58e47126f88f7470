"""What the dashboard pushes to chargers goes through a real broker, signed by the backend key:
remote stop (a `cmd`) and a blocked card (a differential `authlist` to every charger). A broker
that does not take it changes nothing."""
from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from backend.models import AuditEntry, Card, ListEntry
from host_tests.web.conftest import ADMIN, TOK_A, TOK_C, login


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from backend.keys import Keys

    k = Keys(tmp_path_factory.mktemp("web-keys") / "keys")
    k.init(site_secret="22" * 32)
    return k


def pushing_client(world, keys, broker_url: str):
    from fastapi.testclient import TestClient

    from backend.web import create_app

    return TestClient(create_app(world.db, broker=broker_url, keys=keys.folder))


class Listener:
    """Every message on evc/# from a real subscriber, until it has `n` of them (with a deadline)."""

    def __init__(self, url: str):
        from backend.mqtt import connect, make_client

        self.got: list[tuple[str, str]] = []
        self.cond = threading.Condition()
        self.client = make_client(url, "web-test-sub")
        self.client.on_message = self._on
        connect(self.client, url)
        self.client.subscribe("evc/#", qos=1)
        time.sleep(0.3)  # the subscription is in place before anything is published

    def _on(self, _c, _u, m) -> None:
        with self.cond:
            self.got.append((m.topic, m.payload.decode()))
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 15) -> list[tuple[str, str]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.got) >= n, timeout), self.got
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_stop_and_block_are_signed_and_published(world, keys, broker):
    from evc.verify import verify_jws

    listener = Listener(broker.url)
    try:
        with pushing_client(world, keys, broker.url) as client:
            csrf = login(client)
            assert 'id="no-push"' not in client.get("/chargers").text
            r = client.post("/chargers/ev-1/stop", data={"csrf": csrf})
            assert r.status_code == 200 and "stop sent to ev-1" in r.text
            topic, doc = listener.wait(1)[0]
            _h, payload = verify_jws(doc, keys.public_hex(), kid="backend")
            body = json.loads(payload)
            assert topic == "evc/ev-1/cmd" and body["cmd"] == "stop" and body["dev"] == "ev-1"
            r = client.post(f"/cards/{TOK_C}/block", data={"csrf": csrf})
            assert r.status_code == 200 and "card blocked and pushed to the chargers" in r.text
            with world.sessions() as db:
                devs = sorted(db.scalars(select(ListEntry.dev).where(ListEntry.token == TOK_C)))
            got = listener.wait(1 + len(devs))[1:]
    finally:
        listener.close()
    assert devs == ["ev-1", "ev-2", "evc-w1"]
    assert sorted(t for t, _ in got) == [f"evc/{d}/authlist" for d in devs]
    for _topic, doc in got:
        body = json.loads(verify_jws(doc, keys.public_hex(), kid="backend")[1])
        assert body["full"] is False and [(e["token"], e["status"]) for e in body["entries"]] == [(TOK_C, "blocked")]
    with world.sessions() as db:
        assert db.get(Card, TOK_C).status == "blocked"
        acts = [(a.user, a.action, a.target) for a in db.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert (ADMIN, "stop", "ev-1") in acts and (ADMIN, "card-block", TOK_C) in acts


def test_a_broker_that_is_down_changes_nothing(world, keys, free_port):
    with pushing_client(world, keys, f"mqtt://127.0.0.1:{free_port}") as client:
        csrf = login(client)
        r = client.post(f"/cards/{TOK_A}/block", data={"csrf": csrf})
        assert r.status_code == 502 and "card not blocked (nothing changed)" in r.text
        r = client.post("/chargers/ev-2/stop", data={"csrf": csrf})
        assert r.status_code == 502 and "not sent" in r.text
    with world.sessions() as db:
        assert db.get(Card, TOK_A).status == "accepted"
        assert not list(db.scalars(select(ListEntry).where(ListEntry.token == TOK_A)))
