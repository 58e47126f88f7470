"""Verify and store exactly once, straight through backend.ingest (no broker): on SQLite and PostgreSQL."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from backend.db import make_engine, migrate
from backend.ingest import Ingestor
from backend.models import Anomaly, Base, Card, Device, Pending, Session
from host_tests.backend.conftest import TOKENS
from sim.records import make_records, payload, payload_hash, session_fields

TOPIC = "evc/evc-a1/rec"


def counts(sessions) -> tuple[int, int, int]:
    with sessions() as db:
        return (db.scalar(select(func.count()).select_from(Session)),
                db.scalar(select(func.count()).select_from(Anomaly)),
                db.scalar(select(func.count()).select_from(Pending)))


def kinds(sessions) -> list[str]:
    with sessions() as db:
        return [a.kind for a in db.scalars(select(Anomaly).order_by(Anomaly.id))]


def test_migrations_match_the_models(db_target):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(db_target)
    migrate(engine)
    migrate(engine)  # idempotent
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_firmware_records_are_verified_stored_and_acked_in_order(store, charger):
    ing = Ingestor(store)
    outs = [ing.ingest(TOPIC, r) for r in charger.records]
    assert [o.kind for o in outs] == ["stored"] * 12
    assert [o.ack for o in outs] == list(range(1, 13))
    with store() as db:
        s = db.get(Session, ("evc-a1", 5))
        assert (s.token, s.energy_wh, s.cost_incl, s.currency, s.stop_reason) == (TOKENS[0], 1500, 250, "EUR", "card")
        assert s.raw == charger.records[4] and s.ocmf.startswith("OCMF|")
        assert db.get(Device, "evc-a1").head_seq == 12


def test_duplicates_are_stored_once_and_acked_again(store, charger):
    ing = Ingestor(store)
    batch = [(TOPIC, r) for r in charger.records[:5]]
    first = ing.ingest_many(batch + batch)  # the same records twice in one transaction
    assert sorted(o.kind for o in first) == ["duplicate"] * 5 + ["stored"] * 5
    again = ing.ingest(TOPIC, charger.records[2].encode())
    assert (again.kind, again.ack) == ("duplicate", 5)
    assert counts(store) == (5, 0, 0)


def test_forged_and_unknown_are_anomalies_never_billed_never_acked(store, charger, device_dir):
    ing = Ingestor(store)
    ing.ingest(TOPIC, charger.records[0])
    h, p, s = charger.records[1].split(".")
    tampered = h + "." + p[:-4] + ("AAAA" if p[-4:] != "AAAA" else "BBBB") + "." + s
    # A well-formed record for evc-a1 signed by another key (an impostor with the firmware).
    _, impostor, _ = make_records(device_dir / "impostor", "evc-a1", [session_fields("evc-a1", 2, TOKENS[1])],
                                 prev=payload_hash(charger.records[0]))
    outs = [ing.ingest(TOPIC, tampered), ing.ingest(TOPIC, impostor[0]), ing.ingest(TOPIC, "not a jws"),
            ing.ingest("evc/evc-zz/rec", charger.records[1]), ing.ingest("evc/rec", "x")]
    assert [o.kind for o in outs] == ["bad-signature", "bad-signature", "malformed", "unknown-device", "bad-topic"]
    assert all(o.ack is None for o in outs)
    assert counts(store) == (1, 5, 0)
    with store() as db:
        assert db.get(Device, "evc-a1").head_seq == 1
        assert not any(a.slot for a in db.scalars(select(Anomaly)))
        assert {a.raw for a in db.scalars(select(Anomaly))} >= {tampered, impostor[0]}
    assert ing.ingest(TOPIC, charger.records[1]).kind == "stored"  # the genuine seq 2 still goes in


def test_out_of_chain_record_is_flagged_not_billed_and_the_chain_goes_on(store, charger, device_dir):
    ing = Ingestor(store)
    for r in charger.records[:3]:
        ing.ingest(TOPIC, r)
    # The device signs seq 4 with a wrong prev (as after a lost journal), then 5 chained to that 4.
    fields = [session_fields("evc-a1", 4, TOKENS[0]), session_fields("evc-a1", 5, TOKENS[0])]
    _, recs, _ = make_records(device_dir, "evc-a1", fields, prev="ab" * 32)
    out4, out5 = ing.ingest(TOPIC, recs[0]), ing.ingest(TOPIC, recs[1])
    assert (out4.kind, out4.ack, out5.kind, out5.ack) == ("chain-break", 4, "stored", 5)
    assert kinds(store) == ["chain-break"]
    with store() as db:
        assert db.get(Session, ("evc-a1", 4)) is None
        a = db.scalars(select(Anomaly)).one()
        assert (a.seq, a.slot, a.raw) == (4, True, recs[0])
    # The genuine record 4 arriving later conflicts with what the device already signed for 4.
    assert ing.ingest(TOPIC, charger.records[3]).kind == "seq-conflict"


def test_bad_ocmf_signed_by_the_device_is_flagged(store, charger, device_dir):
    ing = Ingestor(store)
    ing.ingest(TOPIC, charger.records[0])
    good = json.loads(payload(charger.records[1]))
    f = session_fields("evc-a1", 2, TOKENS[1])
    f["ocmf"] = good["ocmf"].replace('"SD":"3', '"SD":"4', 1)  # the meter data signature no longer verifies
    _, recs, _ = make_records(device_dir, "evc-a1", [f], prev=payload_hash(charger.records[0]))
    out = ing.ingest(TOPIC, recs[0])
    assert (out.kind, out.ack) == ("bad-ocmf", 2)
    assert counts(store)[0] == 1


def test_out_of_order_waits_then_goes_in_and_gaps_are_reported(store, charger):
    now = [1000]
    ing = Ingestor(store, clock=lambda: now[0], gap_grace_s=30)
    ing.ingest(TOPIC, charger.records[0])
    for i in (4, 2, 5):  # seq 5, 3, 6 before 2 and 4
        assert ing.ingest(TOPIC, charger.records[i]).kind == "pending"
    assert ing.sweep_gaps() == []  # within the grace: two workers may simply be racing
    now[0] += 31
    gaps = ing.sweep_gaps()
    assert sorted(g.seq for g in gaps) == [3, 5]
    assert ing.sweep_gaps() == []  # reported once
    assert counts(store) == (1, 2, 3)
    out = ing.ingest(TOPIC, charger.records[1])
    assert (out.kind, out.ack) == ("stored", 3)
    out = ing.ingest(TOPIC, charger.records[3])
    assert (out.kind, out.ack) == ("stored", 6)
    assert counts(store) == (6, 2, 0)


def test_prepaid_balance_is_charged_once_per_record(store, charger):
    with store.begin() as db:
        db.add(Card(token=TOKENS[0], status="accepted", exp=0, contract=None, balance=10_000, updated_at=0))
    ing = Ingestor(store)
    for r in charger.records[:8] + charger.records[:8]:  # every record twice
        ing.ingest(TOPIC, r)
    with store() as db:
        card = db.get(Card, TOKENS[0])
        charged = db.scalars(select(Session.charged).where(Session.token == TOKENS[0])).all()
    assert charged == [250, 250]  # seq 1 and 5 carry TOKENS[0]
    assert card.balance == 10_000 - 500


def test_operator_accepts_a_gap_and_the_records_behind_it_are_billed(store, charger):
    """A record the device lost for good (its journal quarantined it) must not hold back the rest."""
    ing = Ingestor(store)
    for i in (0, 1):
        ing.ingest(TOPIC, charger.records[i])
    for i in (3, 4, 5):  # seq 3 never comes
        assert ing.ingest(TOPIC, charger.records[i]).kind == "pending"
    with pytest.raises(ValueError, match="no record waits at seq 7"):
        ing.accept_gap("evc-a1", 6, "x")
    with pytest.raises(ValueError, match="records at or below seq 4 are waiting"):
        ing.accept_gap("evc-a1", 4, "x")
    with pytest.raises(ValueError, match="not beyond the stored head"):
        ing.accept_gap("evc-a1", 2, "x")
    assert ing.accept_gap("evc-a1", 3, "journal quarantined seq 3") == 6
    assert counts(store) == (5, 1, 0) and kinds(store) == ["lost"]
    out = ing.ingest(TOPIC, charger.records[6])  # the chain goes on from the records behind the gap
    assert (out.kind, out.ack) == ("stored", 7)
    late = ing.ingest(TOPIC, charger.records[2])  # seq 3 turns up after all: never a step back
    assert late.kind == "seq-conflict" and late.ack == 7
    with store() as db:
        assert db.get(Device, "evc-a1").head_seq == 7 and db.get(Session, ("evc-a1", 3)) is None
