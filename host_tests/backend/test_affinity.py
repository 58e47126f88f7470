"""Worker scaling (issue #23): device affinity (each worker owns a hash partition of the device
ids, so a device's records reach one worker, in order), what happens while a worker is down (its
devices resend; the next worker adopts the partition), and the verify/store pipeline."""
from __future__ import annotations

import threading

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from backend.db import open_db
from backend.ingest import Ingestor
from backend.models import Device, Pending
from backend.worker import ADOPT_S, PARTITION_ENV, Partition, Worker
from sim.records import seal
from host_tests.backend.conftest import wait_until
from host_tests.backend.test_mqtt import stored
from sim.backend import register_key
from sim.records import ChargerLink, Made


def sealed(dev: str, n: int) -> Made:
    """n chained records of dev in the firmware's format (bench.backend.seal, checked against the
    firmware there), sealed in CPython: quick enough for a fleet."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    prev, out = "", []
    for seq in range(1, n + 1):
        jws, prev = seal(key, dev, seq, prev)
        out.append(jws)
    return Made(dev, pem, out)


def devices_of(part: Partition, owner: int, n: int, prefix: str = "evc-p") -> list[str]:
    """n device ids that `part`'s hash puts in partition `owner`."""
    out, i = [], 0
    while len(out) < n:
        if part.owner(dev := f"{prefix}{i}") == owner:
            out.append(dev)
        i += 1
    return out


# -- routing, without a broker ----------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_each_device_belongs_to_exactly_one_worker(count):
    workers = [Partition(i, count) for i in range(count)]
    devs = [f"evc-{i:04d}" for i in range(400)]
    for dev in devs:
        assert sum(w.takes(dev, 1, now=0) for w in workers) == 1  # first send: only the owner
    owners = {workers[0].owner(d) for d in devs}
    assert owners == set(range(count))  # every worker gets some
    assert all(Partition(0, count).owner(d) == workers[-1].owner(d) for d in devs)  # no per-process salt (hash() has one)


def test_a_partition_spec_is_checked():
    assert (Partition.parse("1/4").index, Partition.parse("1/4").count) == (1, 4)
    for bad in ("4/4", "1", "a/2", "-1/2", "1/0", ""):
        with pytest.raises(ValueError):
            Partition.parse(bad)


def test_serve_refuses_a_bad_partition_before_it_connects(tmp_path, capsys):
    from backend.__main__ import main

    assert main(["serve", "--db", str(tmp_path / "x.db"), "--broker", "mqtt://127.0.0.1:1", "--partition", "2/2"]) == 2
    assert "partition 2/2: want 0 <= I < N" in capsys.readouterr().err


def test_a_down_workers_partition_is_adopted_by_the_next_worker_on_the_first_resend():
    w1, w2 = Partition(1, 3), Partition(2, 3)
    dev, other = devices_of(w1, 0, 2)  # owned by worker 0, which is down
    for seq in range(1, 33):  # the device's window goes out; nobody acks it
        assert not w1.takes(dev, seq, now=10) and not w2.takes(dev, seq, now=10)
    # uplink.resend_s later the device sends its unacknowledged records again, in seq order
    assert w1.takes(dev, 1, now=40)  # the next worker after the owner takes them ...
    assert not w2.takes(dev, 1, now=40)  # ... the one after it waits for a second round
    assert all(w1.takes(dev, s, now=40) for s in range(2, 33))
    assert not w1.takes(other, 1, now=40)  # not yet the partition: a probe only
    w1.settled(dev, 1, "stored", now=41)  # it was not stored: the owner is down
    assert w1.adopted == {0: 41 + ADOPT_S}
    assert w1.takes(other, 1, now=42)  # the whole partition, new records too
    assert w1.takes(dev, 33, now=42) and not w2.takes(dev, 33, now=42)
    assert not w1.takes(other, 2, now=41 + ADOPT_S)  # the adoption lapses (the owner may be back)


def test_a_resend_the_owner_had_stored_adopts_nothing():
    w1 = Partition(1, 2)
    dev = devices_of(w1, 0, 1)[0]
    assert not any(w1.takes(dev, s, now=0) for s in range(1, 5))
    assert w1.takes(dev, 3, now=60)  # a resend of what the owner stored but whose ack got lost
    w1.settled(dev, 3, "duplicate", now=60)
    assert w1.adopted == {} and not w1.takes(dev, 5, now=61)


def test_a_resend_right_after_a_reconnect_is_no_sign_of_a_down_owner():
    w1 = Partition(1, 2, quiet_s=10)
    dev = devices_of(w1, 0, 1)[0]
    assert not any(w1.takes(dev, s, now=100) for s in range(1, 5))
    assert not any(w1.takes(dev, s, now=101) for s in range(3, 5))  # reconnected: resends from its ack on
    assert w1.takes(dev, 3, now=111)  # still unacked 10 s after its last new record: a probe


def test_when_two_workers_are_down_the_third_takes_over_on_the_second_round():
    w2 = Partition(2, 3)
    dev = devices_of(w2, 0, 1)[0]  # owner 0 and its successor 1 are down
    assert not any(w2.takes(dev, s, now=0) for s in range(1, 9))  # sent
    assert not any(w2.takes(dev, s, now=30) for s in range(1, 9))  # first round: worker 1's turn
    assert w2.takes(dev, 1, now=60)  # second round: mine
    w2.settled(dev, 1, "stored", now=60)
    assert w2.takes(dev, 9, now=61)


def test_a_partitioned_worker_subscribes_to_every_record_without_share(monkeypatch):
    assert Worker(None, "mqtt://127.0.0.1:1", partition=None).topic == "$share/evc-backend/evc/+/rec"
    assert Worker(None, "mqtt://127.0.0.1:1", partition=Partition(0, 2)).topic == "evc/+/rec"
    monkeypatch.setenv(PARTITION_ENV, "1/2")
    w = Worker(None, "mqtt://127.0.0.1:1")
    assert (w.partition.index, w.partition.count) == (1, 2)
    assert w.auth_topic.startswith("$share/")  # auth requests: any worker answers


# -- through a real broker -------------------------------------------------------------------

class Recording(Ingestor):
    """An Ingestor noting which devices' records its worker stored."""

    def __init__(self, sessions):
        super().__init__(sessions)
        self.devs: list[str] = []

    def store(self, items):
        outs = super().store(items)
        self.devs += [o.dev for o in outs if o.kind == "stored"]
        return outs


def run_workers(broker, db: str, partitions: list[Partition]):
    stop = threading.Event()
    workers = [Worker(Recording(open_db(db)), broker.url, partition=p, key=ec.generate_private_key(ec.SECP256R1()),
                      converge_retry_s=None) for p in partitions]
    threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in workers]
    for t in threads:
        t.start()
    assert all(w.subscribed.wait(10) for w in workers)
    return workers, stop, threads


def test_over_mqtt_each_devices_records_reach_one_worker_in_order(broker, db_target):
    if broker.kind != "mosquitto":
        pytest.skip("the device-affinity test runs on mosquitto")
    parts = [Partition(0, 2), Partition(1, 2)]
    fleet = [sealed(d, 30) for d in devices_of(parts[0], 0, 2) + devices_of(parts[0], 1, 2)]
    for m in fleet:
        register_key(db_target, m.dev, m.pubkey_pem)
    workers, stop, threads = run_workers(broker, db_target, parts)
    links = [ChargerLink(broker.url, m.dev, m.records) for m in fleet]
    try:
        for link in links:
            link.send(range(1, 31))
        for link in links:
            assert link.wait_acked(30)
    finally:
        for link in links:
            link.close()
        stop.set()
        for t in threads:
            t.join(10)
    assert stored(db_target) == sorted((m.dev, s) for m in fleet for s in range(1, 31))
    for i, w in enumerate(workers):
        assert {parts[0].owner(d) for d in w.ingestor.devs} == {i}  # only its own devices
        assert w.ingestor.devs  # and some
    sessions = open_db(db_target)
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(Pending)) == 0
    sessions.kw["bind"].dispose()


def test_over_mqtt_a_down_workers_devices_are_stored_when_they_resend(broker, db_target):
    if broker.kind != "mosquitto":
        pytest.skip("the device-affinity test runs on mosquitto")
    part = Partition(0, 2)
    orphan, own = sealed(devices_of(part, 1, 1)[0], 6), sealed(devices_of(part, 0, 1)[0], 3)
    for m in (orphan, own):
        register_key(db_target, m.dev, m.pubkey_pem)
    part.quiet_s = 0  # the test resends at once, not uplink.resend_s later
    _, stop, threads = run_workers(broker, db_target, [part])  # worker 1/2 is down
    lost, mine = ChargerLink(broker.url, orphan.dev, orphan.records), ChargerLink(broker.url, own.dev, own.records)
    try:
        lost.send(range(1, 7))
        mine.send(range(1, 4))
        assert mine.wait_acked(3)  # worker 0 has seen the orphan's records (sent before) and left them
        assert lost.acked == 0 and [d for d, _ in stored(db_target)] == [own.dev] * 3
        lost.resend_unacked()  # what the firmware does after uplink.resend_s without an ack
        assert lost.wait_acked(6)
        assert part.adopted  # and worker 0 took over partition 1
    finally:
        lost.close()
        mine.close()
        stop.set()
        for t in threads:
            t.join(10)
    assert stored(db_target) == sorted([(orphan.dev, s) for s in range(1, 7)] + [(own.dev, s) for s in range(1, 4)])


# -- the verify/store pipeline ---------------------------------------------------------------

def test_prepared_with_a_key_that_changed_before_the_store_is_verified_again(db_target):
    made = sealed("evc-k1", 2)
    register_key(db_target, made.dev, made.pubkey_pem)
    sessions = open_db(db_target)
    ing = Ingestor(sessions)
    first = ing.prepare([("evc/evc-k1/rec", made.records[0])])  # verified with the registered key
    from evc.verify import spki_der

    with sessions.begin() as db:  # the operator re-keys the device before the batch is stored
        db.get(Device, "evc-k1").pubkey = spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())
    assert [(o.kind, o.ack) for o in ing.store(first)] == [("bad-signature", None)]
    assert stored(db_target) == []
    sessions.kw["bind"].dispose()


def test_prepare_then_store_is_ingest_many(db_target):
    made = sealed("evc-k2", 5)
    register_key(db_target, made.dev, made.pubkey_pem)
    sessions = open_db(db_target)
    ing = Ingestor(sessions)
    batch = [("evc/evc-k2/rec", r) for r in (made.records[1], made.records[0], made.records[2])]
    assert [(o.kind, o.ack) for o in ing.store(ing.prepare(batch))] == [("stored", 2), ("stored", 1), ("stored", 3)]
    assert [(o.kind, o.ack) for o in ing.ingest_many(batch)] == [("duplicate", 3)] * 3
    sessions.kw["bind"].dispose()
