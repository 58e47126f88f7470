"""PDF rendering: the text a PDF tool extracts carries number, totals and every session line; the
e-invoice is embedded as factur-x.xml in a PDF/A-3; German documents speak German."""
from __future__ import annotations

import dataclasses
import io
import re

import pytest

from backend.billing.facturx import check_facturx, facturx_xml
from backend.billing.pdf import RenderError, context, kwh, money, rate, render_html


def text_of(pdf: bytes) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)


def flat(s: str) -> str:
    return re.sub(r"\s+", " ", s)


def squeezed(s: str) -> str:
    return re.sub(r"\s+", "", s)


def attachments(pdf: bytes) -> dict[str, list[bytes]]:
    from pypdf import PdfReader

    return dict(PdfReader(io.BytesIO(pdf)).attachments)


def test_formatting_is_exact_integers():
    assert money(192600, "EUR", "en") == "1,926.00 EUR"
    assert money(192600, "EUR", "de") == "1.926,00 EUR"
    assert money(-5, "EUR", "de") == "-0,05 EUR"
    assert money(1234, "JPY", "en") == "1,234 JPY"
    assert kwh(11434, "en") == "11.434" and kwh(11434, "de") == "11,434"
    assert kwh(1234567, "de") == "1.234,567" and kwh(7, "en") == "0.007"
    assert rate(1900, "en") == "19 %" and rate(550, "de") == "5,5 %" and rate(None, "de") == "nicht steuerbar"
    with pytest.raises(RenderError):
        money(1.5, "EUR", "en")
    with pytest.raises(RenderError):
        kwh(-1, "en")


def test_invoice_text_has_number_totals_and_every_session_line(render, invoice, brand):
    text = text_of(render(invoice))
    ftext = flat(text)
    assert invoice.number in text
    assert "Total 19.26 EUR" in ftext and "Total net 16.48 EUR" in ftext and "Total VAT 2.78 EUR" in ftext
    assert "7 % 3.00 EUR 0.21 EUR 3.21 EUR" in ftext  # VAT breakdown per rate
    assert "19 % 13.48 EUR 2.57 EUR 16.05 EUR" in ftext
    ctx = context(invoice, brand)
    for row, line in zip(ctx["rows"], invoice.lines):
        assert row["title"] in ftext
        if line.session is None:
            assert f"{row['net']} {row['rate']} {row['gross']}" in ftext
            continue
        s = line.session
        assert f"{kwh(s.energy_wh, 'en')} {row['net']} {row['rate']} {row['gross']}" in ftext
        assert f"Charger {s.dev} · record {s.seq} · {row['start']}" in ftext
        assert s.record_hash in text
        assert squeezed(s.ocmf) in squeezed(text)  # the appendix: what transparency software takes
        assert s.pubkey_hex in squeezed(text)
    assert "Fleet discount 10 % -1.34 EUR 19 % -1.59 EUR" in ftext
    assert "Idle fee (parking after charging) 1.50 EUR 19 % 1.79 EUR" in ftext


def test_invoice_is_pdfa3_with_the_facturx_xml(render, invoice, brand):
    from facturx import get_facturx_xml_from_pdf

    pdf = render(invoice)
    files = attachments(pdf)
    assert list(files) == ["factur-x.xml"]
    assert files["factur-x.xml"][0] == facturx_xml(invoice, brand)
    name, xml = get_facturx_xml_from_pdf(pdf, check_xsd=True)
    assert name == "factur-x.xml"
    check_facturx(xml)
    from pypdf import PdfReader

    meta = PdfReader(io.BytesIO(pdf)).trailer["/Root"]["/Metadata"].get_object().get_data()
    assert b"<pdfaid:part>3</pdfaid:part>" in meta and b"<pdfaid:conformance>B</pdfaid:conformance>" in meta
    assert b"fx:ConformanceLevel>EN 16931<" in meta


def test_credit_note_pdf_refers_to_the_invoice(render, credit_note, brand):
    pdf = render(credit_note)
    ftext = flat(text_of(pdf))
    assert f"Credit note {credit_note.number}" in ftext
    assert "Corrects invoice INV-2026-000017" in ftext
    assert "We credit you 5.24 EUR." in ftext and "Total 5.24 EUR" in ftext
    xml = attachments(pdf)["factur-x.xml"][0]
    assert b"<ram:TypeCode>381</ram:TypeCode>" in xml


def test_negative_credit_note_prints_positive_amounts(credit_note, brand):
    neg = dataclasses.replace(credit_note, lines=tuple(
        dataclasses.replace(ln, net=-ln.net, tax=-ln.tax) for ln in credit_note.lines))
    ctx = context(neg, brand)
    assert ctx["total_gross"] == "5.24 EUR" and ctx["rows"][0]["net"] == "4.40 EUR"


def test_receipt_is_plain_pdf_with_its_session(render, receipt):
    pdf = render(receipt)
    assert attachments(pdf) == {}
    text = text_of(pdf)
    ftext = flat(text)
    s = receipt.sessions[0]
    assert f"Receipt {receipt.number}" in ftext
    assert f"{kwh(s.energy_wh, 'en')} 3.00 EUR 7 % 3.21 EUR" in ftext
    assert "Charged for this session: 3.21 EUR." in ftext
    assert s.record_hash in text


def test_german_document_uses_german_labels_and_decimal_comma(render, invoice_de):
    ftext = flat(text_of(render(invoice_de)))
    assert f"Rechnung {invoice_de.number}" in ftext
    assert "Gesamtbetrag 19,26 EUR" in ftext and "Summe netto 16,48 EUR" in ftext and "Summe USt 2,78 EUR" in ftext
    assert "Fällig am 15.12.2026" in ftext and "Abrechnungszeitraum 01.11.2026 – 30.11.2026" in ftext
    assert "11,434 4,52 EUR 19 % 5,38 EUR" in ftext
    assert "Transparenzdaten" in ftext and "Ladepunkt evc-a1 · Datensatz 1" in ftext
    assert "19.26" not in ftext and "Total" not in ftext and "Invoice" not in ftext


def test_brand_colours_logo_and_footer_reach_the_document(render, invoice, brand):
    odd = dataclasses.replace(brand, primary_colour="#aa3300", footer='Say "hi" </style><b>x</b> \\ done')
    html = render_html(invoice, odd)
    assert "--primary: #aa3300" in html
    assert "sample-logo.svg" in html
    assert "</style><b>" not in html.split("</head>")[0].split("@page")[1]  # the footer cannot end the style sheet
    text = text_of(render(invoice, odd))
    assert 'Say "hi" </style><b>x</b> \\ done' in text


def test_bad_brand_is_refused_before_rendering(invoice, brand):
    with pytest.raises(RenderError, match="primary_colour"):
        context(invoice, dataclasses.replace(brand, primary_colour="red;}body{display:none"))
    with pytest.raises(RenderError, match="logo"):
        context(invoice, dataclasses.replace(brand, logo="/nonexistent/logo.png"))
    with pytest.raises(RenderError, match="language"):
        context(dataclasses.replace(invoice, language="fr"), brand)
    with pytest.raises(RenderError, match="timezone"):
        context(invoice, dataclasses.replace(brand, extra={"timezone": "Mars/Olympus"}))
    with pytest.raises(RenderError, match="no lines"):
        context(dataclasses.replace(invoice, lines=()), brand)
    with pytest.raises(RenderError, match="kind"):
        context(dataclasses.replace(invoice, kind="quote"), brand)


def test_session_split_by_vat_rate_shows_energy_and_appendix_once(invoice, brand):
    """The billing run gives a session one line per VAT rate: one energy figure, one appendix entry."""
    first = invoice.lines[0]
    half = dataclasses.replace(first, net=first.net // 2, tax=first.tax // 2)
    doc = dataclasses.replace(invoice, lines=(half, dataclasses.replace(half, vat_bp=700)) + invoice.lines[1:])
    ctx = context(doc, brand)
    assert ctx["rows"][0]["energy"] == kwh(first.session.energy_wh, "en") and ctx["rows"][1]["energy"] == ""
    assert [t["session"].seq for t in ctx["transparency"]] == [1, 2, 3]
