"""The renderers on Documents from a real billing run (backend.billing.runs, refunds, issued): every
issued invoice, receipt and credit note renders and its e-invoice passes the EN 16931 checks."""
from __future__ import annotations

import io

import pytest

from backend.billing.facturx import check_facturx, facturx_xml
from backend.billing.safe import safe_xml
from host_tests.documents.conftest import weasyprint_or_skip
from tools.invoice_sample import sample_brand

DAY = 86400


@pytest.fixture(scope="module")
def issued(tmp_path_factory):
    """November on SQLite: a fleet invoice (10 % off, one session at 7 %), a driver's per-session
    invoice in German, an ad-hoc receipt, and a partial refund of a fleet session."""
    from backend.billing import registry
    from backend.billing.issued import document_for
    from backend.billing.refunds import Refunds
    from backend.billing.runs import Runner
    from backend.db import open_db
    from host_tests.billing.conftest import DEC, SELLER, T0, Charger, Clock, fields, ingest, token

    tmp = tmp_path_factory.mktemp("billing-run")
    sessions = open_db(str(tmp / "billing.db"))
    registry.set_seller(sessions, **SELLER)
    for cid, kind, lang in (("FLEET", "company", "en"), ("ANNA", "driver", "de")):
        registry.add_customer(sessions, cid, kind=kind, name=f"Customer {cid}", address="Street 1", postcode="10115",
                              city="Berlin", country="DE", vat_id=None, email=None, language=lang, currency="EUR")
    registry.add_contract(sessions, "FLEET-1", "FLEET", cycle="monthly", payment_days=14, late_fee=0, tariff_id=None,
                          valid_from=0, valid_to=None, rules=["percent:1000:invoice"])
    registry.add_contract(sessions, "ANNA-1", "ANNA", cycle="per_session", payment_days=7, late_fee=0, tariff_id=None,
                          valid_from=0, valid_to=None, rules=[])
    registry.assign_card(sessions, token(0), "FLEET", "FLEET-1")
    registry.assign_card(sessions, token(2), "ANNA", "ANNA-1")
    ch = Charger("evc-d1", tmp)
    ch.make([fields(ch.dev, 1, token(0), T0 + DAY, 5000, 1000, 1190),
             fields(ch.dev, 2, token(0), T0 + 2 * DAY, 7000, 2000, 2140, vat=700),
             fields(ch.dev, 3, token(2), T0 + 3 * DAY, 3000, 500, 595),
             fields(ch.dev, 4, token(9), T0 + 4 * DAY, 2500, 300, 357)])
    ingest(sessions, ch, ch.records)
    numbers = Runner(sessions, Clock(DEC + 1)).run("2026-11").issued
    with sessions() as db:
        fleet = next(n for n in numbers if document_for(db, n).customer_ref == "FLEET")
    numbers.append(Refunds(sessions, Clock(DEC + 2 * DAY)).refund(fleet, [("evc-d1", 1)], 500))
    with sessions() as db:
        return [document_for(db, n) for n in numbers]


def test_every_issued_document_passes_en16931_and_renders(issued):
    kinds = sorted(d.kind for d in issued)
    assert kinds == ["credit_note", "invoice", "invoice", "receipt"]
    brand = sample_brand()
    for doc in issued:
        if doc.kind != "receipt":
            check_facturx(facturx_xml(doc, brand))
        assert safe_xml(doc.sessions).count(b"<value ") == len(doc.sessions) >= 1


def test_issued_documents_render_as_pdf(issued):
    weasyprint_or_skip()
    from pypdf import PdfReader

    from backend.billing.pdf import render_pdf

    brand = sample_brand()
    for doc in issued:
        pdf = render_pdf(doc, brand)
        reader = PdfReader(io.BytesIO(pdf))
        text = " ".join(" ".join(p.extract_text().split()) for p in reader.pages)
        assert doc.number in text
        for s in doc.sessions:
            assert s.record_hash in text
        assert ("factur-x.xml" in reader.attachments) == (doc.kind != "receipt")
        if doc.language == "de":
            assert "Gesamtbetrag" in text
