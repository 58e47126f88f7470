"""Render the sample invoice (and its credit note, receipt, S.A.F.E. export) from real signed records.

    .venv/bin/python tools/invoice_sample.py                 # docs/img/invoice-sample.png (page 1)
    .venv/bin/python tools/invoice_sample.py --out DIR       # also DIR/*.pdf, *.xml, sessions.safe.xml
    .venv/bin/python tools/invoice_sample.py --lang de --png /tmp/rechnung.png

The session records are sealed by the firmware itself under MicroPython (sim/records.py) with a
fresh device key, so the OCMF strings and the public key on the sample verify. The documents are
built by hand here (the billing run builds them from the database); host_tests/documents uses them.
"""
from __future__ import annotations

import argparse
import calendar
import datetime as dt
import hashlib
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from backend.billing.document import Brand, Document, Line, Party, SessionRef  # noqa: E402

DEV = "evc-a1"
TOKEN = "0123456789abcdef0123456789abcdef"
NOV_1 = calendar.timegm((2026, 11, 1, 0, 0, 0))
# (start offset s, duration s, Wh, net, VAT basis points): three sessions, two VAT rates
SESSIONS = [(2 * 86400 + 8 * 3600, 5400, 11434, 452, 1900),
            (9 * 86400 + 17 * 3600 + 1800, 7200, 22000, 880, 1900),
            (20 * 86400 + 12 * 3600, 2700, 7500, 300, 700)]


def tax(net: int, vat_bp: int) -> int:
    """VAT of a net amount, half up, as the device rounds it."""
    return (net * vat_bp + 5000) // 10000


def session_fields(seq: int) -> dict:
    off, dur, wh, net, vat_bp = SESSIONS[seq - 1]
    start, base = NOV_1 + off, 1_000_000 + seq * 50_000
    return {
        "v": 1, "dev": DEV, "seq": seq, "token": TOKEN, "auth": "list", "contract": "fleet-7",
        "tariff": {"id": "AC-STD", "ver": 4},
        "start": {"t": start, "tq": "S", "wh": base},
        "stop": {"t": start + dur, "tq": "S", "wh": base + wh, "reason": "card"},
        "meter": {"model": "sdm630", "serial": "SN-0042"},
        "cost": {"currency": "EUR", "excl": net, "incl": net + tax(net, vat_bp),
                 "lines": [{"dim": "energy", "excl": net, "qty": wh}]},
        "flags": [], "fw": "0.1.0",
    }


def session_ref(jws: str, pubkey_pem: bytes) -> SessionRef:
    """The SessionRef of a signed record (compact JWS) and its device's public key (PEM)."""
    from cryptography.hazmat.primitives import serialization

    from sim.records import payload

    body = payload(jws)
    rec = json.loads(body)
    spki = serialization.load_pem_public_key(pubkey_pem).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return SessionRef(dev=rec["dev"], seq=rec["seq"], record_hash=hashlib.sha256(body).hexdigest(),
                      start_t=rec["start"]["t"], stop_t=rec["stop"]["t"], energy_wh=rec["energy_wh"],
                      token=rec["token"], tariff_id=rec["tariff"]["id"], ocmf=rec["ocmf"], pubkey_hex=spki.hex())


def signed_sessions(root: Path) -> tuple[list[SessionRef], list[dict]]:
    """Seal the sample sessions with the firmware (key created under root): (refs, record JSON)."""
    from sim.records import make_records, payload

    pem, jws, _ = make_records(root, DEV, [session_fields(s) for s in range(1, len(SESSIONS) + 1)])
    return [session_ref(j, pem) for j in jws], [json.loads(payload(j)) for j in jws]


def sample_brand(logo: str | None = None) -> Brand:
    seller = Party(name="Stadtwerke Musterstadt Mobil GmbH", address=("Ladestraße 1",), country="DE",
                   vat_id="DE123456789", email="billing@sw-musterstadt.example", postcode="12345", city="Musterstadt")
    return Brand(seller=seller, logo=logo, primary_colour="#0b6e4f", accent_colour="#1d2a33",
                 footer="Stadtwerke Musterstadt Mobil GmbH · Amtsgericht Musterstadt HRB 1234",
                 bank="IBAN DE02 1203 0000 0000 2020 51 · BIC BYLADEM1001", extra={"timezone": "Europe/Berlin"})


def buyer() -> Party:
    return Party(name="Fleet Logistics AG", address=("Hafenweg 7", "Building C"), country="DE",
                 vat_id="DE987654321", email="ap@fleet.example", postcode="20457", city="Hamburg")


def session_line(s: SessionRef, rec: dict, vat_bp: int, lang: str = "en") -> Line:
    word = "Tarif" if lang == "de" else "Tariff"
    return Line(kind="session", description=f"{word} {s.tariff_id}", net=rec["cost"]["excl"], vat_bp=vat_bp,
                tax=rec["cost"]["incl"] - rec["cost"]["excl"], session=s)


def sample_invoice(refs: list[SessionRef], records: list[dict], brand: Brand, lang: str = "en") -> Document:
    lines = [session_line(s, r, SESSIONS[i][4], lang) for i, (s, r) in enumerate(zip(refs, records))]
    discount = -(lines[0].net + lines[1].net) // 10  # 10 % fleet discount on the 19 % sessions
    lines += [Line("discount", "Fleet discount 10 %" if lang == "en" else "Flottenrabatt 10 %",
                   discount, 1900, -tax(-discount, 1900)),
              Line("fee", "Idle fee (parking after charging)" if lang == "en" else "Blockiergebühr",
                   150, 1900, tax(150, 1900))]
    return Document(kind="invoice", number="INV-2026-000017", issue_date=dt.date(2026, 12, 1), currency="EUR",
                    seller=brand.seller, buyer=buyer(), lines=tuple(lines), period_start=dt.date(2026, 11, 1),
                    period_end=dt.date(2026, 11, 30), due_date=dt.date(2026, 12, 15), language=lang,
                    customer_ref="C-0042", contract_ref="fleet-7", payment_terms="")


def sample_credit_note(refs, records, brand: Brand, lang: str = "en") -> Document:
    s, r = refs[1], records[1]
    part = r["cost"]["excl"] // 2  # half of session 2 refunded
    return Document(kind="credit_note", number="CN-2026-000003", issue_date=dt.date(2026, 12, 5), currency="EUR",
                    seller=brand.seller, buyer=buyer(), language=lang, references=("INV-2026-000017",),
                    lines=(Line("refund", ("Teilerstattung" if lang == "de" else "Partial refund"), part, 1900, tax(part, 1900), s),),
                    customer_ref="C-0042", contract_ref="fleet-7", note=("Ladevorgang unterbrochen" if lang == "de" else "Charging was interrupted"))


def sample_receipt(refs, records, brand: Brand, lang: str = "en") -> Document:
    s, r = refs[2], records[2]
    walk_in = Party(name="Ad-hoc driver", country="DE")
    return Document(kind="receipt", number="RC-2026-000412", issue_date=dt.date(2026, 11, 21), currency="EUR",
                    seller=brand.seller, buyer=walk_in, language=lang, lines=(session_line(s, r, 700, lang),))


def page_png(pdf: bytes, path: Path, page: int = 0, scale: float = 1.6) -> None:
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    try:
        doc[page].render(scale=scale).to_pil().save(path, optimize=True)
    finally:
        doc.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="also write the PDFs, XMLs and the S.A.F.E. export here")
    ap.add_argument("--png", type=Path, default=REPO / "docs" / "img" / "invoice-sample.png")
    ap.add_argument("--page", type=int, default=1, help="page of the invoice to render (1 = first)")
    ap.add_argument("--lang", choices=("en", "de"), default="en")
    a = ap.parse_args(argv)

    from backend.billing.facturx import check_facturx, facturx_xml
    from backend.billing.pdf import render_pdf
    from backend.billing.safe import safe_xml

    brand = sample_brand(str(REPO / "docs" / "img" / "sample-logo.svg"))
    with tempfile.TemporaryDirectory() as tmp:
        refs, records = signed_sessions(Path(tmp))
    docs = {"invoice": sample_invoice(refs, records, brand, a.lang),
            "credit-note": sample_credit_note(refs, records, brand, a.lang),
            "receipt": sample_receipt(refs, records, brand, a.lang)}
    pdf = render_pdf(docs["invoice"], brand)
    a.png.parent.mkdir(parents=True, exist_ok=True)
    page_png(pdf, a.png, a.page - 1)
    print(f"wrote {a.png}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        for name, doc in docs.items():
            (a.out / f"{name}.pdf").write_bytes(render_pdf(doc, brand))
            if doc.kind != "receipt":
                xml = facturx_xml(doc, brand)
                check_facturx(xml)
                (a.out / f"{name}.xml").write_bytes(xml)
        (a.out / "sessions.safe.xml").write_bytes(safe_xml(refs))
        print(f"wrote {a.out}/invoice.pdf, credit-note.pdf, receipt.pdf, *.xml, sessions.safe.xml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
