"""An issued document as the renderers read it: `document_for(db, number)`."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session as DbSession

from backend.billing import terms
from backend.billing.document import Document, Line, SessionRef
from backend.billing.terms import BillingError
from backend.models import Device, Invoice, InvoiceLine, Session


def _date(t: int | None) -> dt.date | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).date()


def session_refs(db: DbSession, keys: list[tuple[str, int]]) -> dict[tuple[str, int], SessionRef]:
    """The stored sessions (dev, seq) with their device's key, as documents reference them; unknown
    keys are left out."""
    refs: dict[tuple[str, int], SessionRef] = {}
    for i in range(0, len(keys), 500):  # bounded IN lists
        q = (select(Session, Device.pubkey).join(Device, Device.id == Session.dev)
             .where(tuple_(Session.dev, Session.seq).in_(keys[i:i + 500])))
        for s, pubkey in db.execute(q):
            refs[(s.dev, s.seq)] = SessionRef(dev=s.dev, seq=s.seq, record_hash=s.hash, start_t=s.start_t, stop_t=s.stop_t,
                                              energy_wh=s.energy_wh, token=s.token, tariff_id=s.tariff_id, ocmf=s.ocmf,
                                              pubkey_hex=pubkey.hex())
    return refs


def document_for(db: DbSession, number: str) -> Document:
    inv = db.get(Invoice, number)
    if inv is None:
        raise BillingError(f"no invoice, receipt or credit note {number!r}")
    rows = list(db.scalars(select(InvoiceLine).where(InvoiceLine.invoice == number).order_by(InvoiceLine.pos)))
    refs = session_refs(db, [(r.dev, r.seq) for r in rows if r.main and r.dev is not None])
    lines = tuple(Line(kind=r.kind, description=r.description, net=r.net, vat_bp=r.vat_bp, tax=r.tax,  # type: ignore[arg-type]
                       session=refs.get((r.dev, r.seq)) if r.main else None) for r in rows)
    return Document(
        kind=inv.kind, number=inv.number, issue_date=_date(inv.issued_at), currency=inv.currency,  # type: ignore[arg-type]
        seller=terms.party_from_json(inv.seller), buyer=terms.party_from_json(inv.buyer), lines=lines,
        period_start=_date(inv.period_start), period_end=_date(None if inv.period_end is None else inv.period_end - 1),
        due_date=_date(inv.due_at), language=inv.language, references=(inv.refers_to,) if inv.refers_to else (),
        customer_ref=inv.customer_id or "", contract_ref=inv.contract_id or "", note=inv.note,
        payment_terms=inv.payment_terms)
