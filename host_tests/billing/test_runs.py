"""Billing runs on real signed records: invoices and receipts, idempotent re-runs, late records,
contract versions, discounts, late fees, documents."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from backend.billing import registry
from backend.billing.issued import document_for
from backend.billing.runs import Runner, mark_paid
from backend.billing.terms import BillingError
from backend.db import open_db
from backend.models import BilledSession, Invoice, NumberSeries, Session
from host_tests.billing.conftest import DEC, JAN, SELLER, T0, Charger, Clock, fields, ingest, token

DAY = 86400


def contract(sessions, cid, customer, cycle="monthly", rules=(), late_fee=0, valid_from=0, days=14):
    registry.add_contract(sessions, cid, customer, cycle=cycle, payment_days=days, late_fee=late_fee, tariff_id=None,
                          valid_from=valid_from, valid_to=None, rules=list(rules))


def customer(sessions, cid, kind="company"):
    registry.add_customer(sessions, cid, kind=kind, name=f"Customer {cid}", address="Street 1", postcode="10115",
                          city="Berlin", country="DE", vat_id=None, email=None, language="en", currency="EUR")


@pytest.fixture
def billing(db_target, keys_dir):
    """A database with a seller, two customers (a fleet, monthly, 10 % off per invoice; a driver, per
    session) and the November records of one charger: fleet cards 0/1, driver card 2, ad-hoc card 9."""
    sessions = open_db(db_target)
    registry.set_seller(sessions, **SELLER)
    customer(sessions, "FLEET")
    customer(sessions, "ANNA", "driver")
    contract(sessions, "FLEET-1", "FLEET", rules=["percent:1000:invoice"], late_fee=500)
    contract(sessions, "ANNA-1", "ANNA", cycle="per_session")
    registry.assign_card(sessions, token(0), "FLEET", "FLEET-1")
    registry.assign_card(sessions, token(1), "FLEET", "FLEET-1")
    registry.assign_card(sessions, token(2), "ANNA", "ANNA-1")
    ch = Charger("evc-r1", keys_dir)
    plan = [(0, 1000, 1190), (1, 2000, 2380), (2, 500, 595), (9, 300, 357), (0, 1234, 1468), (2, 100, 119)]
    ch.make([fields(ch.dev, i + 1, token(t), T0 + i * DAY, 5000, e, g) for i, (t, e, g) in enumerate(plan)])
    ingest(sessions, ch, ch.records)
    return sessions, ch


def count(sessions, model):
    with sessions() as db:
        return db.scalar(select(func.count()).select_from(model))


def test_run_issues_invoices_and_receipts_once(billing):
    sessions, ch = billing
    runner = Runner(sessions, Clock(DEC + 3600))
    res = runner.run("2026-11")
    assert res.issued == ["INV-2026-000001", "INV-2026-000002", "INV-2026-000003", "RC-2026-000001"]
    with sessions() as db:
        fleet = document_for(db, "INV-2026-000003")  # documents go out by customer id: ANNA's two first
        assert fleet.customer_ref == "FLEET" and fleet.kind == "invoice" and len(fleet.sessions) == 3
        signed_net, signed_tax = 1000 + 2000 + 1234, 190 + 380 + 234
        disc = [x for x in fleet.lines if x.kind == "discount"]
        assert [(d.net, d.tax, d.vat_bp) for d in disc] == [(-423, -80, 1900)]  # 10 % of 4234 half-up; 19 % of 423
        assert fleet.total_net == signed_net - 423 and fleet.total_tax == signed_tax - 80
        assert fleet.due_date is not None and (fleet.due_date - fleet.issue_date).days == 14
        assert [s.seq for s in fleet.sessions] == [1, 2, 5] and fleet.sessions[0].ocmf.startswith("OCMF|")
        assert fleet.sessions[0].record_hash == db.scalar(select(Session.hash).where(Session.seq == 1))
        anna = [document_for(db, n) for n in ("INV-2026-000001", "INV-2026-000002")]
        assert [d.total_gross for d in anna] == [595, 119]
        rc = document_for(db, "RC-2026-000001")
        assert rc.kind == "receipt" and rc.total_gross == 357 and rc.buyer.name.startswith("Driver, card")
        assert rc.seller.vat_id == "DE123456789"
    again = runner.run("2026-11")
    assert again.issued == [] and count(sessions, Invoice) == 4


def test_late_record_goes_on_the_next_run(billing):
    sessions, ch = billing
    Runner(sessions, Clock(DEC + 3600)).run("2026-11")
    late = ch.make([fields(ch.dev, 7, token(0), T0 + 20 * DAY, 1000, 700, 833)])  # a November session, arriving late
    ingest(sessions, ch, late)
    with sessions() as db:
        before = document_for(db, "INV-2026-000003")
    res = Runner(sessions, Clock(JAN + 3600)).run("2026-12")
    # issued in January: the 2027 series; the fleet's unpaid November invoice adds its late fee
    assert res.issued == ["INV-2027-000001"]
    with sessions() as db:
        assert document_for(db, "INV-2026-000003") == before  # the issued invoice never changes
        doc = document_for(db, "INV-2027-000001")
        assert [s.seq for s in doc.sessions] == [7] and doc.period_start.month == 11
        assert db.get(BilledSession, ("evc-r1", 7)).invoice == "INV-2027-000001"
        assert [x.kind for x in doc.lines] == ["session", "discount", "fee"]


def test_open_period_and_unknown_customer_are_refused(billing):
    sessions, _ = billing
    with pytest.raises(BillingError, match="has not ended"):
        Runner(sessions, Clock(DEC - 1)).run("2026-11")
    with pytest.raises(BillingError, match="unknown"):
        Runner(sessions, Clock(DEC + 1)).run("2026-11", customer="NOBODY")
    with pytest.raises(BillingError, match="YYYY-MM"):
        Runner(sessions, Clock(DEC + 1)).run("2026-13")
    assert count(sessions, Invoice) == 0 and count(sessions, NumberSeries) == 0


def test_run_for_one_customer_only(billing):
    sessions, _ = billing
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11", customer="ANNA")
    assert res.issued == ["INV-2026-000001", "INV-2026-000002"]
    with sessions() as db:
        assert {document_for(db, n).customer_ref for n in res.issued} == {"ANNA"}
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11")
    assert res.issued == ["INV-2026-000003", "RC-2026-000001"]


def test_late_fee_on_next_invoice_once_and_not_when_paid(billing):
    sessions, ch = billing
    Runner(sessions, Clock(DEC + 1)).run("2026-11")
    mark_paid(sessions, "INV-2026-000001", DEC + 2)  # Anna paid one; the fleet did not pay
    dec = ch.make([fields(ch.dev, 7, token(1), DEC + DAY, 1000, 100, 119), fields(ch.dev, 8, token(2), DEC + DAY, 1000, 100, 119)])
    ingest(sessions, ch, dec)
    res = Runner(sessions, Clock(JAN + 1)).run("2026-12")
    with sessions() as db:
        fleet = document_for(db, res.issued[-1])
        fees = [x for x in fleet.lines if x.kind == "fee"]
        assert [(f.net, f.tax, f.vat_bp) for f in fees] == [(500, 0, None)] and "INV-2026-000003" in fees[0].description
        assert db.get(Invoice, "INV-2026-000003").late_fee_by == res.issued[-1]
        anna = [document_for(db, n) for n in res.issued[:-1]]
        assert not any(x.kind == "fee" for d in anna for x in d.lines)  # INV-...-3 (unpaid, no late fee in ANNA-1) neither
    assert Runner(sessions, Clock(JAN + 2)).run("2026-12").issued == []  # the fee is charged once


def test_contract_version_at_session_start(billing):
    sessions, ch = billing
    # from Nov 3 on, FLEET-1 gives 50 % per session and no invoice discount
    registry.set_contract(sessions, "FLEET-1", T0 + 2 * DAY, rules=["percent:5000:session"])
    Runner(sessions, Clock(DEC + 1)).run("2026-11")
    with sessions() as db:
        fleet = document_for(db, "INV-2026-000003")
        disc = [x for x in fleet.lines if x.kind == "discount"]
        # session 1 and 2 start before Nov 3 (v1), session 5 on Nov 5 (v2); invoice terms are v2's
        assert [(d.net, d.tax) for d in disc] == [(-617, -117)]
        assert "evc-r1 #5" in disc[0].description
    with pytest.raises(BillingError, match="invoiced already"):
        registry.set_contract(sessions, "FLEET-1", T0 + 3 * DAY, late_fee=0)  # session 5 (Nov 5) is billed


def test_service_periods_follow_the_cycle(billing):
    import datetime as dt

    sessions, _ = billing
    registry.set_contract(sessions, "FLEET-1", T0, cycle="weekly")  # 2026-11-01 is a Sunday
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11")
    with sessions() as db:
        docs = {n: document_for(db, n) for n in res.issued}
    periods = {(d.customer_ref, d.period_start, d.period_end, tuple(s.seq for s in d.sessions)) for d in docs.values()}
    day = lambda n: dt.date(2026, 11, n)  # noqa: E731
    assert periods == {("FLEET", day(1), day(1), (1,)), ("FLEET", day(2), day(8), (2, 5)),
                       ("ANNA", day(3), day(3), (3,)), ("ANNA", day(6), day(6), (6,)), ("", day(4), day(4), (4,))}


def test_volume_tier_counts_the_month_across_documents(billing):
    sessions, _ = billing
    # weekly from Nov 1; 50 % per session once the contract's November energy reached 5 kWh
    registry.set_contract(sessions, "FLEET-1", T0, cycle="weekly", rules=["percent:5000:session:above=5000"])
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11")
    with sessions() as db:
        fleet = [d for d in (document_for(db, n) for n in res.issued) if d.customer_ref == "FLEET"]
    first, second = sorted(fleet, key=lambda d: d.period_start)
    assert [s.seq for s in first.sessions] == [1] and not any(x.kind == "discount" for x in first.lines)
    # session 2 starts with 5 kWh billed this month (session 1, on the first document): discounted, as is 5
    assert [(x.net, x.tax) for x in second.lines if x.kind == "discount"] == [(-1000, -190), (-617, -117)]


def test_a_session_that_cost_nothing_gets_no_receipt(billing):
    sessions, ch = billing
    free = ch.make([fields(ch.dev, 7, token(9), T0 + 9 * DAY, 20, 0, 0, flags=("void",), lines=[]),
                    fields(ch.dev, 8, token(0), T0 + 9 * DAY, 20, 0, 0, flags=("void",), lines=[])])
    ingest(sessions, ch, free)
    res = Runner(sessions, Clock(DEC + 1)).run("2026-11")
    assert [n for n in res.issued if n.startswith("RC-")] == ["RC-2026-000001"]  # the ad-hoc session that cost 357
    with sessions() as db:
        fleet = document_for(db, "INV-2026-000003")
        assert [s.seq for s in fleet.sessions] == [1, 2, 5, 8]  # listed at 0 on the invoice
        assert [(x.net, x.tax, x.vat_bp) for x in fleet.lines if x.kind == "session"][-1] == (0, 0, None)
