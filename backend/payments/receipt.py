"""The receipt of an ad-hoc session: a billing Document (kind receipt) built from the stored session
and its payment, rendered by backend/billing/pdf.py. Its number is the session's own, AH-<dev>-<seq>
(one receipt per session, whoever asks when); the lines are the signed record's totals split by
VAT rate, and the transparency block carries the OCMF data and the device's public key."""
from __future__ import annotations

import datetime as dt

from backend.billing import amounts
from backend.billing.document import Brand, Document, Line, Party, SessionRef
from backend.models import Device, Payment, Session


def receipt_number(dev: str, seq: int) -> str:
    return f"AH-{dev}-{seq}"


def receipt_document(db, p: Payment, s: Session, seller: Party | None = None) -> Document:
    """The receipt of payment p for its session s (both stored)."""
    if seller is None:
        try:
            from backend.billing import registry

            seller = registry.seller(db)
        except Exception:  # noqa: BLE001 - no seller set up yet: the receipt still says what was charged
            seller = Party(name="Charging operator")
    dev = db.get(Device, s.dev)
    ref = SessionRef(dev=s.dev, seq=s.seq, record_hash=s.hash, start_t=s.start_t, stop_t=s.stop_t,
                     energy_wh=s.energy_wh, token=s.token, tariff_id=s.tariff_id, ocmf=s.ocmf,
                     pubkey_hex=dev.pubkey.hex() if dev is not None else "")
    label = f"Charging at {s.dev} #{s.seq}, {dt.datetime.fromtimestamp(s.start_t, dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    lines = [Line("session", label, part.net, part.vat_bp, part.tax, session=ref)
             for part in amounts.session_parts(s.payload, s.cost_excl, s.cost_incl)]
    over = s.cost_incl - p.captured
    if over > 0 and p.state == "captured":  # above the card hold (the charger stops before it): not charged
        vat = lines[0].vat_bp
        net = amounts.net_of_gross(over, vat)
        lines.append(Line("discount", "Above the card hold: not charged", -net, vat, -(over - net)))
    issued = dt.datetime.fromtimestamp(p.updated_at, dt.timezone.utc).date()
    return Document(kind="receipt", number=receipt_number(s.dev, s.seq), issue_date=issued, currency=s.currency,
                    seller=seller, buyer=Party(name="Ad-hoc payment by card"), lines=tuple(lines),
                    note=f"Paid by card through {p.gateway} (payment {p.id}).")


def receipt_pdf(db, p: Payment, s: Session, brand: Brand | None = None) -> bytes:
    from backend.billing.pdf import render_pdf

    doc = receipt_document(db, p, s)
    return render_pdf(doc, brand or Brand(seller=doc.seller))
