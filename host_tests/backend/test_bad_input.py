"""The backend survives any input (issue #18): bounded before parsing, every message in its own
try, values checked against their columns, anomalies counted and sampled so a flood stays bounded.

Unit tests go straight through backend.ingest (SQLite and PostgreSQL); the flood goes through a
real broker to `python -m backend serve`: 10,000 malformed messages (about 200 MB) interleaved with
1,000 genuine firmware records from four devices and the 12 odd records of a fifth; about 12 s on
SQLite and 21 s on PostgreSQL on the 2-core reference machine (plus 7 s, once, for the firmware to
sign the records), so the full count runs by default.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from sqlalchemy import func, select

from backend import authorize, guard
from backend import verify as bv
from backend.db import open_db
from backend.ingest import SAMPLES_PER_HOUR, Ingestor
from backend.keys import load_public_key
from backend.models import Anomaly, AnomalyCount, Device, Pending, Session
from evc import verify as ev
from host_tests.backend.conftest import TOKENS, wait_until
from sim.backend import register
from sim.records import ChargerLink, make_device, make_records, payload, payload_hash, session_fields

TOPIC = "evc/evc-a1/rec"


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------- records signed like the device's

def device_key(root: Path, dev: str) -> ec.EllipticCurvePrivateKey:
    """The private key the firmware created for dev under root (crypto/keys.py: 32 raw bytes)."""
    return ec.derive_private_key(int.from_bytes((root / f"{dev}.key").read_bytes(), "big"), ec.SECP256R1())


def sign_jws(key: ec.EllipticCurvePrivateKey, dev: str, body: bytes) -> str:
    signing_input = (b64(json.dumps({"alg": "ES256", "kid": dev}, separators=(",", ":"))) + "." + b64(body)).encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input.decode() + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def resign(key: ec.EllipticCurvePrivateKey, template: str, prev: str, record=None, ocmf: dict | None = None) -> str:
    """A record with the device's key, made from a firmware record: prev set, then `record(fields)`
    applied to the payload and `ocmf` ({key: value}) to the OCMF payload (re-signed); what the
    stock firmware refuses to sign but a device key can."""
    fields = json.loads(payload(template))
    fields["prev"] = prev
    opay, _, _ = fields["ocmf"][5:].rpartition("|")
    for k, v in (ocmf or {}).items():
        old = json.loads(opay)[k]
        opay = opay.replace(f'"{k}":{json.dumps(old)}', f'"{k}":{json.dumps(v)}', 1)
    sd = key.sign(opay.encode(), ec.ECDSA(hashes.SHA256())).hex()
    fields["ocmf"] = "OCMF|" + opay + "|" + json.dumps({"SA": "ECDSA-secp256r1-SHA256", "SD": sd}, separators=(",", ":"))
    if record is not None:
        record(fields)
    return sign_jws(key, fields["dev"], json.dumps(fields, separators=(",", ":")).encode())


def _deep(n: int):
    x: object = 0
    for _ in range(n):
        x = [x]
    return x


# seq -> (what the firmware gets in its fields, what is changed after it signed, the kind expected)
ODD = "evc-odd"


def _odd_plan():
    serial = "S" * 200
    return [
        ({}, None, "stored"),
        ({}, (lambda f: f["meter"].update(serial=serial), {"MS": serial}), "unstorable"),  # the issue's case
        ({"tariff": {"id": "T" * 100, "ver": 3}}, None, "unstorable"),  # the firmware signs this one itself
        ({"contract": "C" * 100}, None, "unstorable"),  # and this one
        ({}, (lambda f: f["meter"].update(serial="M\x000001"), {"MS": "M\x000001"}), "unstorable"),
        ({}, (lambda f: f["cost"].update(incl=2**63 + 5), None), "unstorable"),
        ({}, (lambda f: f["meter"].update(model="sdm\ud800"), {"MM": "sdm\ud800"}), "unstorable"),
        ({}, (lambda f: f["meter"].update(serial=12345), None), "bad-record"),  # wrong type: schema
        ({}, (lambda f: f.update(zz=_deep(40)), None), "bad-record"),  # too deep to parse: seq from its head
        ({"flags": ["flag-%05d" % i for i in range(40)]}, None, "unstorable"),  # 439 characters, column 255
        ({}, None, "stored"),
        ({}, None, "stored"),
    ]


def make_odd(root: Path) -> tuple[bytes, list[str], list[str]]:
    """Records of one device whose chain holds what no column takes, signed with its key:
    (public key PEM, JWS list, kind expected for each seq)."""
    plan = _odd_plan()
    fields = []
    for seq, (extra, _, _) in enumerate(plan, 1):
        f = session_fields(ODD, seq, TOKENS[seq % len(TOKENS)])
        f.update(extra)
        fields.append(f)
    pem, templates, _ = make_records(root, ODD, fields)
    key = device_key(root, ODD)
    out, prev = [], ""
    for (_, change, _), tpl in zip(plan, templates):
        rec, ocmf = change if change else (None, None)
        jws = resign(key, tpl, prev, rec, ocmf)
        out.append(jws)
        prev = payload_hash(jws)
    return pem, out, [k for _, _, k in plan]


@pytest.fixture(scope="session")
def odd(device_dir):
    return make_odd(device_dir)


def rows(sessions, model, *where) -> list:
    with sessions() as db:
        return list(db.scalars(select(model).where(*where)))


# ---------------------------------------------------------------- unit: reading within bounds

def test_json_depth_is_measured_without_recursion():
    assert not ev.json_too_deep('{"a":[1,{"b":[]}]}', 4)
    assert ev.json_too_deep('{"a":[1,{"b":[[]]}]}', 4)
    assert not ev.json_too_deep('["[[[[", "\\"[[[[", "\\\\", []]', 2)  # brackets in strings, escapes
    assert ev.json_too_deep(b"[" * 1_000_000)
    assert not ev.json_too_deep(b"]" * 100_000 + b"[" * 32)
    with pytest.raises(ev.VerifyError) as e:
        ev.verify_jws(b64("[" * 50_000) + "." + b64("{}") + "." + "A" * 86, ec.generate_private_key(ec.SECP256R1()).public_key())
    assert e.value.reason == ev.Reason.HEADER
    with pytest.raises(ev.OcmfError):
        ev.parse_ocmf("OCMF|" + "[" * 50_000 + "|{}")


def test_the_50000_bracket_header_is_an_anomaly_and_ingest_goes_on(store, charger):
    ing = Ingestor(store)
    issue = b64("[" * 50_000) + "." + b64('{"seq":1}') + ".AAAA"  # the message from the issue: 66,672 bytes
    smaller = b64("[" * 40_000) + "." + b64('{"seq":1}') + ".AAAA"  # under the size bound: header too long
    deep_payload = b64('{"alg":"ES256","kid":"evc-a1"}') + "." + b64("[" * 40_000) + "." + "A" * 86
    for msg in (issue, smaller, deep_payload):
        assert bv.peek(msg) == (None, None)  # raised RecursionError before
    outs = [ing.ingest(TOPIC, m) for m in (issue, smaller, deep_payload)] + [ing.ingest("evc/nobody/rec", issue)]
    assert [o.kind for o in outs] == ["too-large", "malformed", "bad-signature", "unknown-device"]
    assert all(o.ack is None for o in outs)
    assert ing.ingest(TOPIC, charger.records[0]).kind == "stored"  # and the device's record goes in


def test_a_4_mib_message_is_kept_cut_to_4_kib_with_its_length_and_hash(store):
    ing = Ingestor(store)
    big = bytes(random.Random(4).getrandbits(8) for _ in range(4096)) * 1024  # 4 MiB, not UTF-8
    assert ing.ingest("evc/nobody/rec", big).kind == "unknown-device"
    assert ing.ingest(TOPIC, big).kind == "too-large"
    for a in rows(store, Anomaly):
        assert len(a.raw) <= guard.KEEP_RAW_BYTES
        assert (a.raw_len, a.raw_sha256) == (len(big), hashlib.sha256(big).hexdigest())


def test_garbage_bytes_nul_and_odd_topics_never_break_a_transaction(store, charger):
    """NUL and lone surrogates are refused by PostgreSQL text; they are stored as escapes."""
    ing = Ingestor(store)
    msgs = [(TOPIC, b"\x00\xff\xfe" * 100), ("evc/nobody/rec", "a\x00b\ud800"), ("evc/\x00/rec", b"x"),
            ("evc/a b/rec", b"x"), ("evc/" + "d" * 40 + "/rec", b"x"), (TOPIC, "é".encode("latin-1")),
            (TOPIC, b"a.b.c"), (TOPIC, "a.b\x00.c"), (TOPIC, b64("{}") + "." + b64(b"\xff") + "." + "A" * 86)]
    outs = ing.ingest_many(msgs + [(TOPIC, charger.records[0])])
    assert [o.kind for o in outs] == ["malformed", "unknown-device", "bad-topic", "bad-topic", "bad-topic", "malformed",
                                      "malformed", "malformed", "bad-signature", "stored"]
    assert any("\\x00" in a.topic for a in rows(store, Anomaly, Anomaly.dev.is_(None)))  # the topic, escaped


def test_auth_requests_are_read_within_bounds():
    for bad in (b"[" * 1000, b"\xff\xfe", b"{" * 600 + b"}" * 600, b"x" * 5000, b"[]", b'{"token": 5}', b"null"):
        assert authorize.unreadable(bad) is not None
    assert authorize.unreadable(json.dumps({"nonce": "n" * 16, "token": "a" * 32}).encode()) is None


# ---------------------------------------------------------------- unit: values against columns

def test_overlong_meter_serial_fills_its_seq_once_and_the_chain_goes_on(db_target, odd):
    """On PostgreSQL this raised DataError on every resend (meter_serial is 64 characters)."""
    pem, recs, kinds = odd
    sessions = open_db(db_target)
    with sessions.begin() as db:
        db.add(Device(id=ODD, pubkey=load_public_key(pem), added_at=0, head_seq=0, head_hash=""))
    ing = Ingestor(sessions)
    topic = f"evc/{ODD}/rec"
    assert ing.ingest(topic, recs[0]).kind == "stored"
    out = ing.ingest(topic, recs[1])
    assert (out.kind, out.ack) == ("unstorable", 2)  # acknowledged: the device may forget it, it is kept
    assert "meter_serial: 200 characters" in rows(sessions, Anomaly)[0].detail
    again = ing.ingest(topic, recs[1])  # the resend is a duplicate, not a second try
    assert (again.kind, again.ack) == ("duplicate", 2)
    outs = [ing.ingest(topic, r) for r in reversed(recs[2:])]  # the rest, last first: they wait, then are placed
    assert [o.kind for o in outs[:-1]] == ["pending"] * (len(recs) - 3)
    assert (outs[-1].ack, outs[-1].kind) == (len(recs), kinds[2])
    slots = {a.seq: a for a in rows(sessions, Anomaly, Anomaly.slot.is_(True))}
    stored = {s.seq for s in rows(sessions, Session)}
    for seq, kind in enumerate(kinds, 1):
        if kind == "stored":
            assert seq in stored and seq not in slots
        else:
            assert slots[seq].kind == kind and seq not in stored, seq
            assert slots[seq].raw == recs[seq - 1] and slots[seq].hash == payload_hash(recs[seq - 1])
    assert rows(sessions, Pending) == []
    with sessions() as db:
        assert db.get(Device, ODD).head_seq == len(recs)


def test_a_handler_failure_nobody_foresaw_is_one_anomaly_and_the_batch_goes_on(store, charger, monkeypatch):
    ing = Ingestor(store)
    real = bv.open_record
    poison = charger.records[1]

    def flaky(raw, key, dev):
        if raw == poison:
            raise RuntimeError("a bug")
        return real(raw, key, dev)

    monkeypatch.setattr(bv, "open_record", flaky)
    outs = ing.ingest_many([(TOPIC, r) for r in charger.records[:4]])
    assert [o.kind for o in outs] == ["stored", "internal-error", "pending", "pending"]
    assert outs[1].ack is None  # not acknowledged: the device keeps it and sends it again
    assert [a.kind for a in rows(store, Anomaly)] == ["internal-error"]
    monkeypatch.setattr(bv, "open_record", real)
    assert ing.ingest(TOPIC, poison).ack == 4  # fixed: it goes in, the waiting ones follow


def test_a_flood_is_counted_and_only_sampled(store, charger):
    now = [1_800_000_000]
    ing = Ingestor(store, clock=lambda: now[0], samples=5)
    forged = charger.records[0][:-6] + "AAAAAA"
    for i in range(60):
        ing.ingest_many([(TOPIC, forged), (f"evc/x{i}/rec", b"junk"), (f"evc/x{i}/rec/y", b"junk")])
    now[0] += 3600  # a new hour: new samples
    ing.ingest(TOPIC, forged)
    with store() as db:
        counts = {(c.source, c.kind, c.hour): c.seen for c in db.scalars(select(AnomalyCount))}
        stored = db.scalar(select(func.count()).select_from(Anomaly))
    hour = 1_800_000_000 - 1_800_000_000 % 3600
    assert counts == {("evc-a1", "bad-signature", hour): 60, ("", "unknown-device", hour): 60,
                      ("", "bad-topic", hour): 60, ("evc-a1", "bad-signature", hour + 3600): 1}
    assert stored == 3 * 5 + 1


# ---------------------------------------------------------------- the flood, through a real broker

def _garbage(rng: random.Random, genuine: dict[str, list[str]], devs: list[str]):
    """One malformed message: (topic, payload). Each makes exactly one counted anomaly."""
    dev = rng.choice(devs)
    rec_topic = f"evc/{dev}/rec"
    hdr = b64(json.dumps({"alg": "ES256", "kid": dev}))
    sig = b64(rng.randbytes(64))
    kind = rng.randrange(13)
    if kind == 0:  # deep header (the issue's message among them)
        return rec_topic, b64("[" * rng.choice([33, 200, 5000, 50_000])) + "." + b64("{}") + "." + sig
    if kind == 1:  # deep payload
        d = rng.choice([33, 300, 3000, 30_000])
        return rec_topic, hdr + "." + b64('{"a":' * d + "1" + "}" * d) + "." + sig
    if kind == 2:  # large
        return rng.choice([rec_topic, "evc/nobody/rec"]), b"x" * rng.choice([65_537, 100_000, 300_000])
    if kind == 3:  # not base64url
        return rec_topic, "".join(rng.choice(string.printable) for _ in range(rng.randrange(1, 400)))
    if kind == 4:  # not UTF-8 / NUL bytes
        return rec_topic, bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 400))) + b"\x00\xff"
    if kind == 5:  # base64url of what is not JSON
        return rec_topic, b64(bytes(rng.getrandbits(8) for _ in range(40))) + "." + b64(b"\xc3(") + "." + sig
    if kind == 6:  # wrong types
        body = rng.choice(['{"seq":"1"}', "5", "null", "[]", '{"seq":%d}' % 2**70, '{"dev":{},"seq":-1}', '{"seq":1.5}'])
        head = rng.choice([hdr, b64("[]"), b64('{"alg":5,"kid":["x"]}'), b64('{"alg":"ES256","kid":"%s","x":{}}' % dev)])
        return rec_topic, head + "." + b64(body) + "." + sig
    if kind == 7:  # forged: a genuine record with its signature or payload changed
        rec = rng.choice(genuine[dev])
        h, p, s = rec.split(".")
        i = rng.randrange(len(p) - 8)
        p = p[:i] + ("A" if p[i] != "A" else "B") + p[i + 1:]
        return rec_topic, ".".join([h, p, s]) if rng.random() < 0.5 else f"{h}.{rec.split('.')[1]}.{sig}"
    if kind == 8:  # another device's genuine record on this device's topic
        other = rng.choice([d for d in devs if d != dev])
        return rec_topic, rng.choice(genuine[other])
    if kind == 9:  # unknown device
        return f"evc/stranger-{rng.randrange(10**6)}/rec", rng.choice(genuine[dev])
    if kind == 10:  # on the subscription, but no device id (evc/+/rec: any one level)
        return rng.choice(["evc//rec", f"evc/{'d' * 40}/rec", "evc/a b/rec", "evc/é/rec", "evc/x$y/rec"]), b"junk"
    if kind == 11:  # over-long field: a huge meter serial in a forged record (no device signature)
        return rec_topic, hdr + "." + b64(json.dumps({"v": 1, "dev": dev, "seq": 1, "meter": {"serial": "S" * 5000}})) + "." + sig
    # an auth request that is not one
    return f"evc/{dev}/auth/req", rng.choice([b"[" * 1000, b"\xff" * 10, b"{}", b'{"token":[1]}', b"x" * 2000])


def _counted(db_url: str) -> tuple[int, dict[str, int]]:
    sessions = open_db(db_url)
    try:
        with sessions() as db:
            by_kind = dict(db.execute(select(AnomalyCount.kind, func.sum(AnomalyCount.seen)).group_by(AnomalyCount.kind)).all())
    finally:
        sessions.kw["bind"].dispose()
    return sum(by_kind.values()), {k: int(v) for k, v in by_kind.items()}


@pytest.fixture(scope="session")
def fleet(device_dir):
    """1,000 genuine records: four devices of 250, made and signed by the firmware."""
    return [make_device(device_dir, f"evc-f{i}", 250, TOKENS) for i in range(4)]


def test_flood_of_malformed_messages_genuine_records_stored_once_worker_never_stops(
        broker, backends, db_target, fleet, odd):
    n_bad = 10_000
    rng = random.Random(18)
    for made in fleet:
        register(db_target, made)
    odd_pem, odd_recs, odd_kinds = odd
    from sim.backend import register_key

    register_key(db_target, ODD, odd_pem)
    worker = backends(broker.url, db_target, ["--gap-grace", "3600"])
    links = [ChargerLink(broker.url, m.dev, m.records) for m in fleet] + [ChargerLink(broker.url, ODD, odd_recs)]
    genuine = {m.dev: m.records for m in fleet}
    devs = list(genuine)
    from backend.mqtt import connect, make_client

    attacker = make_client(broker.url, "attacker")
    connect(attacker, broker.url)
    sent_bytes = 0
    try:
        t0 = time.monotonic()
        infos = [attacker.publish("evc/nobody/rec", b"\x00" * (4 << 20), qos=1)]  # 4 MiB
        sent_bytes += 4 << 20
        order = [(link, s) for link in links for s in range(1, len(link.records) + 1)]
        order.sort(key=lambda ls: ls[1] + rng.random())  # devices interleaved, each in seq order
        per = n_bad / len(order)
        owed = 0.0
        for link, seq in order:
            link.client.publish(f"evc/{link.dev}/rec", link.records[seq - 1], qos=1)
            owed += per
            while owed >= 1:
                topic, body = _garbage(rng, genuine, devs)
                sent_bytes += len(body)
                infos.append(attacker.publish(topic, body, qos=1))
                owed -= 1
        while len(infos) < n_bad + 1:
            topic, body = _garbage(rng, genuine, devs)
            infos.append(attacker.publish(topic, body, qos=1))
        for info in infos:
            info.wait_for_publish(120)
        for link in links:
            assert link.wait_acked(len(link.records), 300), (link.dev, link.acked)
        expected = len(infos)
        assert wait_until(lambda: _counted(db_target)[0] >= expected, 120, 0.5), _counted(db_target)
        took = time.monotonic() - t0
    finally:
        attacker.disconnect()
        attacker.loop_stop()
        for link in links:
            link.close()
    total, by_kind = _counted(db_target)
    print(f"\nflood: {len(order)} genuine + {len(infos)} malformed ({sent_bytes / 1e6:.1f} MB) in {took:.1f} s; {by_kind}")
    assert total == len(infos), by_kind  # every malformed message counted, none twice
    assert "internal-error" not in by_kind
    assert worker.proc.poll() is None  # never stopped
    sessions = open_db(db_target)
    try:
        with sessions() as db:
            got = sorted(tuple(r) for r in db.execute(select(Session.dev, Session.seq)))
            slots = dict(db.execute(select(Anomaly.seq, Anomaly.kind).where(Anomaly.slot.is_(True), Anomaly.dev == ODD)).all())
            free_rows = db.scalar(select(func.count()).select_from(Anomaly).where(Anomaly.slot.is_(False)))
            count_rows = db.scalar(select(func.count()).select_from(AnomalyCount))
            raw_chars = db.scalar(select(func.sum(func.length(Anomaly.raw))).where(Anomaly.slot.is_(False)))
            heads = {d.id: d.head_seq for d in db.scalars(select(Device))}
            assert db.scalar(select(func.count()).select_from(Pending)) == 0
    finally:
        sessions.kw["bind"].dispose()
    want = sorted([(m.dev, s) for m in fleet for s in range(1, 251)] + [(ODD, s) for s, k in enumerate(odd_kinds, 1) if k == "stored"])
    assert got == want  # every genuine record stored exactly once
    assert slots == {s: k for s, k in enumerate(odd_kinds, 1) if k != "stored"}
    assert heads == {**{m.dev: 250 for m in fleet}, ODD: len(odd_recs)}
    assert all(link.acked == len(link.records) for link in links)
    # bounded: at most `samples` rows per (source, kind, hour), each raw at most 4 KiB
    assert count_rows <= 2 * (len(devs) + 2) * 8  # sources x kinds, an hour boundary at most once
    assert free_rows <= SAMPLES_PER_HOUR * count_rows
    assert (raw_chars or 0) <= guard.KEEP_RAW_BYTES * free_rows
    if "://" not in db_target:
        size = sum(p.stat().st_size for p in Path(db_target).parent.glob(Path(db_target).name + "*"))
        print(f"SQLite files: {size / 1e6:.1f} MB")
        assert size < 32e6


# ---------------------------------------------------------------- the worker's own guards

class _Client:
    def __init__(self):
        self.acked: list[int] = []
        self.published: list[tuple] = []

    def ack(self, mid, qos):
        self.acked.append(mid)

    def publish(self, *args, **kwargs):
        self.published.append(args)


def _message(mid: int, topic: bytes, body: bytes):
    import paho.mqtt.client as paho

    m = paho.MQTTMessage(mid=mid, topic=topic)
    m.payload, m.qos = body, 1
    return m


def test_the_worker_goes_on_when_the_database_is_away(monkeypatch):
    from sqlalchemy.exc import OperationalError

    from backend import worker as worker_mod

    class Away:
        sessions = None

        def ingest_many(self, messages):
            raise OperationalError("INSERT", {}, Exception("server closed the connection"))

    w = worker_mod.Worker(Away(), "mqtt://127.0.0.1:1")
    monkeypatch.setattr(worker_mod.time, "sleep", lambda s: None)
    client = _Client()
    w._handle_safely(client, [_message(i, b"evc/a/rec", b"x") for i in (1, 2, 3)])
    assert client.acked == [1, 2, 3] and client.published == []  # PUBACKed, nothing acked to a device


def test_the_mqtt_callback_never_raises(tmp_path):
    from backend import worker as worker_mod

    sessions = open_db(str(tmp_path / "b.db"))
    w = worker_mod.Worker(Ingestor(sessions), "mqtt://127.0.0.1:1")
    client = _Client()
    w._on_message(client, None, _message(1, b"evc/\xff/auth/req", b"{}"))  # msg.topic raises UnicodeDecodeError
    w._on_message(client, None, _message(2, b"evc/dev-1/auth/req", b"[" * 1000))  # too deep
    w._on_message(client, None, _message(3, b"evc/dev-1/auth/req", b"\xff"))
    assert client.acked == [1, 2, 3] and client.published == []
    w._store_problems()
    with sessions() as db:
        kinds = sorted(a.kind for a in db.scalars(select(Anomaly)))
    assert kinds == ["bad-auth-req", "bad-auth-req", "internal-error"]
