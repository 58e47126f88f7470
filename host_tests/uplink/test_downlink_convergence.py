"""Downlink convergence (issue #18) with the real firmware (the charger rig), a real broker and the
real backend (`python -m backend serve`): authorization lists go out QoS 1 without retain and are
lost while a charger is offline; the backend reads the versions the charger reports in its retained
status and sends again what it lacks: the differentials that chain from its version, or a new full
list when a differential cannot apply (backend/converge.py)."""
from __future__ import annotations

import json
import threading
import time

import pytest

from backend.cards import DELETE, CardRow
from backend.db import open_db
from backend.downlink import Downlinks
from backend.keys import Keys
from backend.models import Downlink
from backend.mqtt import connect, make_client, publish_all
from sim.backend import BackendProcess, register_key
from sim.charger import DEV, Charger
from sim.flashfs import run_on_flash

CARDS = ["%032x" % (0xA11CE000 + i) for i in range(6)]


class Statuses:
    """The retained evc/<dev>/status, as a backend sees it."""

    def __init__(self, url: str):
        self.last: dict = {}
        self.cond = threading.Condition()
        self.client = make_client(url, "test-status")
        self.client.on_message = self._on
        connect(self.client, url)
        self.client.subscribe(f"evc/{DEV}/status", qos=1)

    def _on(self, _c, _u, msg) -> None:
        with self.cond:
            self.last = json.loads(msg.payload)
            self.cond.notify_all()

    def wait(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.last):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _holds(ver: int):
    return lambda s: s.get("online") is True and s.get("versions", {}).get("authlist") == ver


def _row(token: str, status: str = "accepted", balance: int | None = None) -> CardRow:
    return CardRow(token=token, status=status, exp=0, contract=None, balance=balance)


def _lookup(root, tokens: list[str]) -> dict:
    return run_on_flash(root, f"""
from billing.authlist import AuthList
al = AuthList(ROOT + "/auth")
out = {{}}
for t in {tokens!r}:
    e = al.lookup(t)
    out[t] = e.status if e else None
emit({{"ver": al.version, "count": al.count, "cards": out}})
""").value


@pytest.fixture
def world(broker, tmp_path):
    """A provisioned charger (not booted), registered with a real backend that trusts its key."""
    c = Charger(tmp_path / "dev", "convergence", broker=broker.url).__enter__()
    db = str(tmp_path / "backend.db")
    register_key(db, DEV, c.provision())
    backend = BackendProcess(broker.url, db, env={"EVC_BACKEND_KEYS": str(c.backend_keys.folder),
                                                  "EVC_CONVERGE_RETRY_S": "3"}).start()
    statuses = Statuses(broker.url)
    sessions = open_db(db)
    down = Downlinks(sessions, Keys(c.backend_keys.folder))
    try:
        yield c, down, sessions, statuses, lambda msgs: publish_all(broker.url, msgs)
    finally:
        statuses.close()
        backend.stop()
        c.__exit__(None, None, None)
        sessions.kw["bind"].dispose()


def _versions(sessions) -> list[int]:
    with sessions.begin() as db:
        return sorted({d.ver for d in db.query(Downlink).filter(Downlink.dev == DEV, Downlink.type == "authlist")})


def test_an_offline_charger_gets_the_lists_it_missed(world):
    c, down, sessions, statuses, publish = world
    c.boot()
    assert statuses.wait(lambda s: s.get("online") is True, 30), c.output()
    full = down.authlist(DEV, [_row(t) for t in CARDS[:4]], False, publish)
    v1 = json.loads(_payload(full[0][1]))["ver"]
    assert statuses.wait(_holds(v1), 30), (statuses.last, c.output())

    # Offline: a differential blocks a card, a full list replaces the list, another differential
    # removes a card. None of it reaches the charger (no retain, clean session).
    c.stop()
    assert statuses.wait(lambda s: s.get("online") is False, 30)  # the last will
    time.sleep(1.1)  # each version a new second (Downlinks versions are max(last + 1, now))
    down.authlist(DEV, [_row(CARDS[0], "blocked")], True, publish)
    down.authlist(DEV, [_row(CARDS[0], "blocked"), *(_row(t) for t in CARDS[1:6])], False, publish)
    down.authlist(DEV, [CardRow(token=CARDS[5], status=DELETE, exp=0, contract=None, balance=None)], True, publish)
    pushed = _versions(sessions)
    assert len(pushed) == 4 and pushed[0] == v1

    # Back online with v1: the differentials after it do not chain from v1 (a full list lies between),
    # so the backend sends a new full version of the list the charger should hold.
    c.boot()
    assert statuses.wait(lambda s: s.get("versions", {}).get("authlist", 0) > pushed[-1], 60), \
        (statuses.last, c.output())
    held = statuses.last["versions"]["authlist"]
    assert _versions(sessions)[-1] == held and len(_versions(sessions)) == 5
    assert "downlink" not in statuses.last  # nothing being collected, nothing refused

    # Offline again: two differentials only. Back online, they are sent again in order (no new version).
    c.stop()
    assert statuses.wait(lambda s: s.get("online") is False, 30)
    time.sleep(1.1)
    d1 = down.authlist(DEV, [_row(CARDS[1], "blocked")], True, publish)
    time.sleep(1.1)
    d2 = down.authlist(DEV, [CardRow(token=CARDS[2], status=DELETE, exp=0, contract=None, balance=None)], True,
                       publish)
    last = json.loads(_payload(d2[0][1]))["ver"]
    assert json.loads(_payload(d1[0][1]))["base"] == held
    c.boot()
    assert statuses.wait(_holds(last), 60), (statuses.last, c.output())
    assert _versions(sessions)[-1] == last and len(_versions(sessions)) == 7
    c.stop()
    got = _lookup(c.root, CARDS)
    assert got["ver"] == last
    assert got["cards"] == {CARDS[0]: "blocked", CARDS[1]: "blocked", CARDS[2]: None, CARDS[3]: "accepted",
                            CARDS[4]: "accepted", CARDS[5]: None}
    assert "authlist ver %d applied" % last in c.output()


def _payload(jws: str) -> bytes:
    import base64

    p = jws.split(".")[1]
    return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))


def test_the_backend_decides_from_the_status_what_a_device_lacks(tmp_path):
    """backend/converge.py without a broker: differentials that chain from the device's version are
    sent again in order, a full list where none can apply, nothing within the retry time or for a
    version the device refused for room; a tariff the device lacks goes again, retained; a bad
    status changes nothing."""
    from backend.converge import Converger, StatusError
    from backend.models import Device, DeviceState

    keys = Keys(tmp_path / "keys")
    keys.init(site_secret="22" * 32)
    sessions = open_db(str(tmp_path / "b.db"))
    with sessions.begin() as db:
        db.add(Device(id=DEV, pubkey=b"", added_at=0, head_seq=0, head_hash=""))
    t = [1_800_000_000]
    down = Downlinks(sessions, keys, clock=lambda: t[0])
    conv = Converger(sessions, down, retry_s=60, clock=lambda: t[0])
    sent: list = []
    topic = f"evc/{DEV}/status"

    def status(tariff: int, authlist: int, **down_fields) -> list:
        doc = {"online": True, "state": "idle", "versions": {"tariff": tariff, "authlist": authlist}}
        if down_fields:
            doc["downlink"] = down_fields
        return conv.on_status(topic, json.dumps(doc).encode(), sent.extend)

    v = lambda msgs: json.loads(_payload(msgs[0][1]))["ver"]  # noqa: E731
    v1 = v(down.authlist(DEV, [_row(x) for x in CARDS[:3]], False, lambda m: None))
    t[0] += 10
    d2 = down.authlist(DEV, [_row(CARDS[0], "blocked")], True, lambda m: None)
    t[0] += 10
    d3 = down.authlist(DEV, [_row(CARDS[1], "blocked")], True, lambda m: None)
    assert status(0, v1) == []  # d3 went out 0 s ago: it may still be arriving
    t[0] += 61
    again = status(0, v1)
    assert again == d2 + d3 and sent == again  # the chain from v1, in order, nothing new signed
    assert status(0, v1) == []  # just sent again: wait
    assert status(0, v(d3)) == []  # converged
    t[0] += 61
    assert status(0, v1) == d2 + d3  # the device lost them again (a reboot mid-list): once more

    # A device on a version no differential chains from (0: it never got a list): a new full list.
    t[0] += 61
    full = status(0, 0)
    body = json.loads(_payload(full[0][1]))
    assert body["full"] is True and body["ver"] > v(d3) and body["total"] == 3
    assert {e["token"]: e["status"] for e in body["entries"]} == {CARDS[0]: "blocked", CARDS[1]: "blocked",
                                                                  CARDS[2]: "accepted"}
    # ... that the device refused for room: not sent again until the operator pushes something else
    t[0] += 61
    assert status(0, 0, refused={"ver": body["ver"], "reason": "no-room"}) == []
    t[0] += 600
    assert conv.sweep(sent.extend) == []

    # Tariffs: the retained document again when the device holds an older one.
    tar = down.tariff(DEV, {"id": "x"}, None, lambda d, c, ver: {"ver": ver}, lambda m: None)
    t[0] += 61
    assert status(0, 0, refused={"ver": body["ver"], "reason": "no-room"}) == [(tar[0][0], tar[0][1], True)]
    assert status(v(tar), 0, refused={"ver": body["ver"], "reason": "no-room"}) == []

    # Bad statuses: refused with a reason, nothing recorded; the last will ends the pushes.
    with sessions.begin() as db:
        before = {c.name: getattr(db.get(DeviceState, DEV), c.name) for c in DeviceState.__table__.columns}
    for bad in (b"[" * 50_000, b"x" * 20_000, b"not json", b"[]", b'{"online": "yes"}',
                b'{"online": true, "versions": {"tariff": -1, "authlist": 0}}',
                b'{"online": true, "versions": {"tariff": 1, "authlist": true}}',
                b'{"online": true, "versions": {"tariff": 1, "authlist": 1}, "downlink": {"refused": {"ver": 1}}}'):
        with pytest.raises(StatusError):
            conv.on_status(topic, bad, sent.extend)
    with pytest.raises(StatusError):
        conv.on_status("evc/a/b/status", b'{"online": false}', sent.extend)
    with sessions.begin() as db:
        assert {c.name: getattr(db.get(DeviceState, DEV), c.name) for c in DeviceState.__table__.columns} == before
    assert conv.on_status("evc/stranger/status", b'{"online": true, "versions": {}}', sent.extend) == []
    assert conv.on_status(topic, b'{"online": false}', sent.extend) == []
    t[0] += 600
    assert conv.sweep(sent.extend) == []  # offline: nothing is pushed
    # A charger in its fault state subscribes nothing: nothing is pushed to it either (the same
    # status with state idle gets the tariff it lacks).
    fault = {"online": True, "state": "fault", "fault": "x", "versions": {"tariff": 0, "authlist": 0}}
    assert conv.on_status(topic, json.dumps(fault).encode(), sent.extend) == []
    t[0] += 600
    assert conv.sweep(sent.extend) == []
    assert status(0, 0, refused={"ver": body["ver"], "reason": "no-room"}) == [(tar[0][0], tar[0][1], True)]
