"""Refunds: credit notes (series CN), partial, full, over-refund refused, concurrent refunds,
prepaid balances restored, automatic rules."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from backend.billing import registry
from backend.billing.issued import document_for
from backend.billing.refunds import Refunds
from backend.billing.runs import Runner
from backend.billing.terms import BillingError
from backend.db import open_db
from backend.models import BilledSession, Card, Invoice, NumberSeries
from host_tests.billing.conftest import DEC, SELLER, T0, Charger, Clock, fields, ingest, token
from host_tests.billing.test_runs import contract, customer

DAY = 86400
PREPAID = token(7)


@pytest.fixture
def billed(db_target, keys_dir):
    """November billed: the fleet's invoice (10 % off) with sessions 1, 2; a prepaid ad-hoc card's
    receipt (session 3, taken from its balance); a meter-fault session of the fleet (4)."""
    sessions = open_db(db_target)
    registry.set_seller(sessions, **SELLER)
    customer(sessions, "FLEET")
    contract(sessions, "FLEET-1", "FLEET", rules=["percent:1000:invoice"])
    registry.assign_card(sessions, token(0), "FLEET", "FLEET-1")
    with sessions.begin() as db:
        db.add(Card(token=PREPAID, status="accepted", exp=None, contract=None, balance=10_000, updated_at=0))
    ch = Charger("evc-f1", keys_dir)
    ch.make([fields(ch.dev, 1, token(0), T0 + DAY, 5000, 1000, 1190),
             fields(ch.dev, 2, token(0), T0 + 2 * DAY, 5000, 2000, 2380),
             fields(ch.dev, 3, PREPAID, T0 + 3 * DAY, 5000, 3000, 3570, charged=3570),
             fields(ch.dev, 4, token(0), T0 + 4 * DAY, 5000, 400, 476, reason="meter-fault", flags=("meter-fault",))])
    ingest(sessions, ch, ch.records)
    with sessions() as db:
        assert db.get(Card, PREPAID).balance == 10_000 - 3570
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11")
    assert res.issued == ["INV-2026-000001", "RC-2026-000001"] and res.credit_notes == []
    return sessions


def left(sessions, dev="evc-f1", seq=1):
    with sessions() as db:
        b = db.get(BilledSession, (dev, seq))
        return b.amount - b.refunded


def cn_count(sessions):
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(Invoice).where(Invoice.kind == "credit_note"))


def test_partial_then_full_then_nothing_left(billed):
    sessions = billed
    refunds = Refunds(sessions, Clock(DEC + 2 * DAY))
    charged = left(sessions)
    assert charged == 1190 - 119  # its share of the 10 % invoice discount is not refundable
    cn = refunds.refund("INV-2026-000001", [("evc-f1", 1)], 500)
    assert cn == "CN-2026-000001"
    with sessions() as db:
        doc = document_for(db, cn)
        assert doc.kind == "credit_note" and doc.references == ("INV-2026-000001",)
        assert doc.total_gross == -500 and [(x.net, x.tax, x.vat_bp) for x in doc.lines] == [(-420, -80, 1900)]
        assert doc.sessions[0].dev == "evc-f1" and doc.sessions[0].seq == 1 and doc.buyer.name == "Customer FLEET"
    assert left(sessions) == charged - 500
    full = refunds.refund("INV-2026-000001")  # everything still creditable on the invoice
    with sessions() as db:
        inv = document_for(db, "INV-2026-000001")
        doc = document_for(db, full)
        assert {(s.dev, s.seq) for s in doc.sessions} == {("evc-f1", 1), ("evc-f1", 2), ("evc-f1", 4)}
        # everything credited = what the invoice charged
        assert doc.total_gross - 500 == -inv.total_gross
    with pytest.raises(BillingError, match="refunded already"):
        refunds.refund("INV-2026-000001")
    assert cn_count(sessions) == 2
    with sessions() as db:
        assert db.get(NumberSeries, "CN-2026").last == 2  # a refused refund takes no number


def test_over_refund_and_bad_requests_are_refused_and_change_nothing(billed):
    sessions = billed
    refunds = Refunds(sessions, Clock(DEC + DAY))
    charged = left(sessions)
    with pytest.raises(BillingError, match="exceeds what is left"):
        refunds.refund("INV-2026-000001", [("evc-f1", 1)], charged + 1)
    with pytest.raises(BillingError, match="name one with --session"):
        refunds.refund("INV-2026-000001", None, 100)
    with pytest.raises(BillingError, match="not on INV-2026-000001"):
        refunds.refund("INV-2026-000001", [("evc-f1", 3)], 100)
    with pytest.raises(BillingError, match="no invoice or receipt"):
        refunds.refund("INV-2026-999999")
    with pytest.raises(BillingError, match="positive"):
        refunds.refund("INV-2026-000001", [("evc-f1", 1)], 0)
    refunds.refund("INV-2026-000001", [("evc-f1", 1)], charged)  # exactly all of it is fine
    with pytest.raises(BillingError, match="exceeds"):
        refunds.refund("INV-2026-000001", [("evc-f1", 1)], 1)
    cn = "CN-2026-000001"
    with pytest.raises(BillingError, match="is a credit note"):
        refunds.refund(cn)
    assert cn_count(sessions) == 1 and left(sessions) == 0


def test_concurrent_refunds_cannot_both_pass(billed):
    sessions = billed
    charged = left(sessions, seq=2)
    amount = charged * 6 // 10  # each alone fits, both together do not
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def one() -> None:
        refunds = Refunds(sessions, Clock(DEC + DAY))
        barrier.wait(timeout=30)
        try:
            outcomes.append(refunds.refund("INV-2026-000001", [("evc-f1", 2)], amount))
        except BillingError as exc:
            outcomes.append(f"refused: {exc}")

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert sorted(o[:7] for o in outcomes) == ["CN-2026", "refused"], outcomes
    assert left(sessions, seq=2) == charged - amount and cn_count(sessions) == 1


def test_prepaid_balance_is_restored(billed):
    sessions = billed
    refunds = Refunds(sessions, Clock(DEC + DAY))
    with sessions() as db:
        rc = db.get(Invoice, "RC-2026-000001")
        assert rc.paid_at == rc.issued_at  # the prepaid balance paid it in full at the charger
    cn = refunds.refund("RC-2026-000001", None, 1000)  # the receipt's only session
    with sessions() as db:
        assert db.get(Card, PREPAID).balance == 10_000 - 3570 + 1000
        assert "returned to the prepaid balance" in document_for(db, cn).note
    refunds.refund("RC-2026-000001")
    with sessions() as db:
        assert db.get(Card, PREPAID).balance == 10_000  # all that was taken is back, no more


def test_automatic_refund_rule_credits_meter_fault_sessions(billed):
    sessions = billed
    assert Refunds(sessions, Clock(DEC + DAY)).apply_rules() == []  # rules are off by default
    registry.set_auto_refund(sessions, meter_fault=True)
    res = Runner(sessions, Clock(DEC + DAY)).run("2026-11")
    assert res.issued == [] and res.credit_notes == ["CN-2026-000001"]
    with sessions() as db:
        doc = document_for(db, "CN-2026-000001")
        assert [(s.dev, s.seq) for s in doc.sessions] == [("evc-f1", 4)] and "Automatic" in doc.note
    assert left(sessions, seq=4) == 0
    assert Runner(sessions, Clock(DEC + DAY)).run("2026-11").credit_notes == []  # once


def test_ocpi_export_emits_credit_cdrs(billed):
    import io
    import json

    from backend import export

    sessions = billed
    refunds = Refunds(sessions, Clock(DEC + DAY))
    refunds.refund("INV-2026-000001", [("evc-f1", 1)], 300)
    refunds.refund("INV-2026-000001", [("evc-f1", 1)])  # the rest
    out = io.StringIO()
    n = export.to_cdrs(export.select_sessions(sessions, None, None, None), out)
    cdrs = json.loads(out.getvalue())
    assert n == len(cdrs) == 4 + 2
    credits = [c for c in cdrs if c.get("credit")]
    assert [c["id"] for c in credits] == ["evc-f1-1-C1", "evc-f1-1-C2"]
    assert all(c["credit_reference_id"] == "evc-f1-1" and len(c["id"]) <= 39 for c in credits)
    assert credits[0]["total_cost"]["incl_vat"] == -3.0 and credits[0]["invoice_reference_id"] == "CN-2026-000001"
    assert round(sum(c["total_cost"]["incl_vat"] for c in credits) * 100) == -left_before_refunds(1190)
    # a time range selects credits by when they were issued
    out = io.StringIO()
    assert export.to_cdrs(export.select_sessions(sessions, DEC + 2 * DAY, None, None), out) == 0


def left_before_refunds(gross: int) -> int:
    return gross - 119  # session 1's share of the 10 % invoice discount (test_partial_then_full_then_nothing_left)


def test_a_session_named_twice_is_credited_once(billed):
    sessions = billed
    charged = left(sessions)
    cn = Refunds(sessions, Clock(DEC + DAY)).refund("INV-2026-000001", [("evc-f1", 1), ("evc-f1", 1)])
    with sessions() as db:
        assert document_for(db, cn).total_gross == -charged
    assert left(sessions) == 0
