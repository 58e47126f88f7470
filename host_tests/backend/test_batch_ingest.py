"""Batched ingest (issue #23): bad records in a batch are isolated, acks leave only after the commit,
a record re-sent after a lost ack is a duplicate acked again, and two ingestors racing on the same
records store each exactly once. On SQLite and PostgreSQL; no timing is asserted here."""
from __future__ import annotations

import json
import threading

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from backend import ingest as ingest_mod
from backend import worker as worker_mod
from backend.ingest import Ingestor
from backend.models import Anomaly, Device, Pending, Session
from sim.records import payload, payload_hash

TOPIC = "evc/evc-a1/rec"


class Msg:
    """What the worker reads of a paho MQTTMessage."""

    def __init__(self, mid: int, payload_: str | bytes, topic: str = TOPIC):
        self.mid, self.qos, self.topic = mid, 1, topic
        self.payload = payload_.encode() if isinstance(payload_, str) else payload_


class Client:
    """Records what the worker publishes and acknowledges, in order."""

    def __init__(self):
        self.events: list[tuple] = []

    def publish(self, topic, payload_, qos=0, retain=False):
        self.events.append(("publish", topic, payload_))

    def ack(self, mid, qos):
        self.events.append(("puback", mid))

    @property
    def acks(self) -> list[dict]:
        return [json.loads(payload(p)) for kind, topic, *rest in self.events if kind == "publish"
                for p in rest if topic.endswith("/ack")]


def worker(store) -> worker_mod.Worker:
    return worker_mod.Worker(Ingestor(store), "mqtt://127.0.0.1:1", key=ec.generate_private_key(ec.SECP256R1()),
                             converge_retry_s=None)


def stored(store) -> list[int]:
    with store() as db:
        return list(db.scalars(select(Session.seq).where(Session.dev == "evc-a1").order_by(Session.seq)))


def anomalies(store) -> list[tuple[str, int | None]]:
    with store() as db:
        return [(a.kind, a.seq) for a in db.scalars(select(Anomaly).order_by(Anomaly.id))]


def forged(jws: str) -> str:
    h, p, s = jws.split(".")
    return f"{h}.{p}.{'A' * 6}{s[6:]}"


def test_one_forged_one_replayed_one_malformed_in_a_batch_the_good_ones_are_stored_and_acked(store, charger):
    ing = Ingestor(store)
    assert ing.ingest(TOPIC, charger.records[0]).kind == "stored"  # seq 1, replayed below
    recs = charger.records
    batch = [recs[1], forged(recs[2]), recs[0], "this is not a JWS", recs[2], recs[3], "a.b", recs[4]]
    w, client = worker(store), Client()
    w.ingestor = ing
    w._handle(client, [Msg(i, p) for i, p in enumerate(batch)])
    assert stored(store) == [1, 2, 3, 4, 5]  # the good ones, each once (seq 3 from its genuine copy)
    assert sorted(anomalies(store)) == sorted([("bad-signature", 3), ("malformed", None), ("malformed", None)])
    assert [a["seq"] for a in client.acks] == [5]  # one cumulative ack: every record up to 5 is stored
    assert client.acks[0]["hash"] == payload_hash(recs[4])
    assert sorted(e[1] for e in client.events if e[0] == "puback") == list(range(len(batch)))
    # the forged copy of seq 3 neither filled its seq nor moved the head; the chain goes on
    assert ing.ingest(TOPIC, recs[5]).kind == "stored"


def test_a_batch_holding_every_kind_of_problem_keeps_each_outcome(store, charger):
    ing = Ingestor(store)
    recs = charger.records
    outs = ing.ingest_many([(TOPIC, recs[0]), (TOPIC, forged(recs[1])), (TOPIC, recs[1]), (TOPIC, recs[0]),
                            ("evc/nobody/rec", recs[2]), ("bad topic", recs[2]), (TOPIC, recs[3]), (TOPIC, b"\xff" * 9)])
    assert [o.kind for o in outs] == ["stored", "bad-signature", "stored", "duplicate", "unknown-device", "bad-topic",
                                      "pending", "malformed"]
    assert [o.ack for o in outs] == [1, None, 2, 1, None, None, 2, None]
    assert [o.ack_hash for o in outs if o.kind == "stored"] == [payload_hash(recs[0]), payload_hash(recs[1])]
    with store() as db:
        assert db.scalar(select(func.count()).select_from(Pending)) == 1
    out = ing.ingest(TOPIC, recs[2])  # seq 3 closes the gap: 4 is placed behind it
    assert (out.kind, out.ack, out.ack_hash) == ("stored", 4, payload_hash(recs[3]))
    assert stored(store) == [1, 2, 3, 4]


def test_no_ack_before_the_commit_and_the_records_are_acked_after_redelivery(store, charger, monkeypatch):
    monkeypatch.setattr(worker_mod.time, "sleep", lambda s: None)
    monkeypatch.setattr(ingest_mod.time, "sleep", lambda s: None)
    w, client = worker(store), Client()
    msgs = [Msg(i, r) for i, r in enumerate(charger.records[:6])]

    def fail(_session):
        raise OperationalError("COMMIT", None, Exception("injected: the disk is full"))

    event.listen(store, "before_commit", fail)
    try:
        w._handle_safely(client, msgs)
    finally:
        event.remove(store, "before_commit", fail)
    assert stored(store) == []
    assert client.acks == []  # nothing committed, nothing acknowledged to the device
    assert [e[0] for e in client.events] == ["puback"] * 6  # the broker's window is freed all the same
    client.events.clear()
    w._handle_safely(client, msgs)  # the device sends them again
    assert stored(store) == [1, 2, 3, 4, 5, 6]
    assert [(a["seq"], a["hash"]) for a in client.acks] == [(6, payload_hash(charger.records[5]))]
    kinds = [e[0] for e in client.events]
    assert kinds.index("publish") < kinds.index("puback")  # the device's ack, then the broker's PUBACKs


def test_stored_but_not_acked_then_resent_is_a_duplicate_acked_again(store, charger):
    w, client = worker(store), Client()
    msgs = [Msg(i, r) for i, r in enumerate(charger.records[:6])]
    w.ingestor.ingest_many([(m.topic, m.payload) for m in msgs])  # committed; the worker dies before acking
    w2 = worker(store)  # a fresh worker: nothing cached
    w2._handle(client, msgs)
    assert stored(store) == [1, 2, 3, 4, 5, 6]
    assert [(a["seq"], a["hash"]) for a in client.acks] == [(6, payload_hash(charger.records[5]))]
    assert anomalies(store) == []


def test_two_ingestors_racing_on_the_same_records_store_each_exactly_once(store, charger):
    recs = [(TOPIC, r) for r in charger.records]
    a, b = Ingestor(store), Ingestor(store)
    a.ingest(TOPIC, recs[0][1])
    b.ingest(TOPIC, recs[0][1])  # both have read the device (key, head) once
    errors: list[BaseException] = []

    def run(ing: Ingestor, order: list[int], size: int) -> None:
        try:
            for i in range(0, len(order), size):
                ing.ingest_many([recs[j] for j in order[i:i + size]])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(a, list(range(12)), 3)),
               threading.Thread(target=run, args=(b, list(range(11, -1, -1)), 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert stored(store) == list(range(1, 13))
    assert anomalies(store) == []
    with store() as db:
        dev = db.get(Device, "evc-a1")
        assert (dev.head_seq, dev.head_hash) == (12, payload_hash(charger.records[11]))
        assert db.scalar(select(func.count()).select_from(Pending)) == 0


def test_a_changed_device_key_is_used_even_after_the_old_one_was_cached(store, charger):
    ing = Ingestor(store)
    assert ing.ingest(TOPIC, charger.records[0]).kind == "stored"  # the key is now cached
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    from evc.verify import spki_der

    with store.begin() as db:
        db.get(Device, "evc-a1").pubkey = spki_der(other)
    out = ing.ingest(TOPIC, charger.records[1])  # signed with the old key: not the device's word any more
    assert (out.kind, out.ack) == ("bad-signature", None)
    assert stored(store) == [1]


def test_a_resent_record_is_acked_without_verifying_it_again_but_a_doctored_one_is_verified(store, charger, monkeypatch):
    from backend import verify as bv

    ing = Ingestor(store)
    ing.ingest_many([(TOPIC, r) for r in charger.records[:4]])
    calls: list[str] = []
    real = bv.open_record
    monkeypatch.setattr(bv, "open_record", lambda raw, key, dev: calls.append(raw) or real(raw, key, dev))
    outs = ing.ingest_many([(TOPIC, r) for r in charger.records[:4]])  # the device re-sends after a lost ack
    assert [(o.kind, o.ack) for o in outs] == [("duplicate", 4)] * 4
    assert calls == []  # byte for byte what was verified and stored: no signature checked again
    out = ing.ingest(TOPIC, forged(charger.records[1]))  # names a stored seq, but is not the stored message
    assert (out.kind, out.ack) == ("bad-signature", None)
    assert calls == [forged(charger.records[1])]
    assert stored(store) == [1, 2, 3, 4] and anomalies(store) == [("bad-signature", 2)]
