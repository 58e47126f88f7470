"""EN 16931 / Factur-X XML: the library's XSD check, the EN 16931 schematron (offline, SaxonC), and
the amounts exactly as the Document's integer minor units."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from lxml import etree

from backend.billing.document import Line, Party
from backend.billing.facturx import (NSMAP, FacturxError, check_facturx, decimal_text, facturx_xml,
                                     percent_text, schematron_available)


def tree(xml: bytes):
    return etree.fromstring(xml)


def texts(root, path: str) -> list[str]:
    return [e.text for e in root.xpath(path, namespaces=NSMAP)]


def minor(text: str) -> int:
    """Decimal text back to cents, refusing anything that is not exactly two places."""
    d = Decimal(text)
    assert d == d.quantize(Decimal("0.01")), text
    return int(d * 100)


needs_schematron = pytest.mark.skipif(not schematron_available(),
                                      reason="saxonche not installed: EN 16931 schematron not run (pip install -r requirements-dev.txt)")


def test_decimal_text_is_exact():
    assert decimal_text(1926, "EUR") == "19.26"
    assert decimal_text(-134, "EUR") == "-1.34"
    assert decimal_text(5, "EUR") == "0.05"
    assert decimal_text(1234567, "JPY") == "1234567"
    assert decimal_text(1005, "KWD") == "1.005"
    assert percent_text(1900) == "19.00" and percent_text(550) == "5.50"
    with pytest.raises(FacturxError):
        decimal_text(19.26, "EUR")
    with pytest.raises(FacturxError):
        decimal_text(100, "eur")


def test_invoice_passes_xsd_and_carries_exact_amounts(invoice, brand):
    xml = facturx_xml(invoice, brand)
    check_facturx(xml, schematron=False)
    root = tree(xml)
    assert texts(root, "//rsm:ExchangedDocument/ram:TypeCode") == ["380"]
    assert texts(root, "//rsm:ExchangedDocument/ram:ID") == [invoice.number]
    # one invoice line per Document line, each with its net exactly
    line_totals = texts(root, "//ram:SpecifiedTradeSettlementLineMonetarySummation/ram:LineTotalAmount")
    assert [minor(t) for t in line_totals] == [line.net for line in invoice.lines]
    # the discount line: quantity -1 at a positive price (BR-27)
    qty = texts(root, "//ram:BilledQuantity")
    prices = texts(root, "//ram:NetPriceProductTradePrice/ram:ChargeAmount")
    assert qty[3] == "-1" and minor(prices[3]) == -invoice.lines[3].net > 0
    # VAT breakdown per rate = Document.vat_totals (sums of the lines as signed)
    breakdown = root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NSMAP)
    got = [(t.findtext("ram:RateApplicablePercent", namespaces=NSMAP), minor(t.findtext("ram:BasisAmount", namespaces=NSMAP)),
            minor(t.findtext("ram:CalculatedAmount", namespaces=NSMAP)), t.findtext("ram:CategoryCode", namespaces=NSMAP))
           for t in breakdown]
    assert got == [(percent_text(v.vat_bp), v.base, v.tax, "S") for v in invoice.vat_totals]
    assert len(got) == 2
    s = "//ram:SpecifiedTradeSettlementHeaderMonetarySummation/"
    assert minor(texts(root, s + "ram:LineTotalAmount")[0]) == invoice.total_net
    assert minor(texts(root, s + "ram:TaxBasisTotalAmount")[0]) == invoice.total_net
    assert minor(texts(root, s + "ram:TaxTotalAmount")[0]) == invoice.total_tax
    assert minor(texts(root, s + "ram:GrandTotalAmount")[0]) == invoice.total_gross == 1926
    assert minor(texts(root, s + "ram:DuePayableAmount")[0]) == invoice.total_gross
    # every session line names its signed record
    for line in invoice.lines:
        if line.session:
            assert line.session.record_hash in texts(root, "//ram:ApplicableProductCharacteristic/ram:Value")


@needs_schematron
def test_invoice_credit_note_pass_en16931_business_rules(invoice, credit_note, brand):
    check_facturx(facturx_xml(invoice, brand))
    check_facturx(facturx_xml(credit_note, brand))


def test_credit_note_is_381_and_references_the_invoice(credit_note, brand):
    xml = facturx_xml(credit_note, brand)
    check_facturx(xml, schematron=False)
    root = tree(xml)
    assert texts(root, "//rsm:ExchangedDocument/ram:TypeCode") == ["381"]
    assert texts(root, "//ram:InvoiceReferencedDocument/ram:IssuerAssignedID") == ["INV-2026-000017"]


@needs_schematron
def test_credit_note_with_negative_lines_is_stated_positive(credit_note, brand):
    neg = dataclasses.replace(credit_note, lines=tuple(
        dataclasses.replace(ln, net=-ln.net, tax=-ln.tax) for ln in credit_note.lines))
    xml = facturx_xml(neg, brand)
    check_facturx(xml)
    root = tree(xml)
    assert minor(texts(root, "//ram:GrandTotalAmount")[0]) == credit_note.total_gross > 0
    assert xml == facturx_xml(credit_note, brand)


@needs_schematron
def test_zero_rate_is_category_z(invoice, brand):
    line = Line("fee", "Card fee", 500, 0, 0)
    doc = dataclasses.replace(invoice, lines=invoice.lines + (line,))
    xml = facturx_xml(doc, brand)
    check_facturx(xml)
    assert "Z" in texts(tree(xml), "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode")


@needs_schematron
def test_not_subject_to_vat_is_category_o_with_reason(receipt, brand):
    # a small operator without VAT id, identified by its register entry (BR-CO-26)
    seller = dataclasses.replace(receipt.seller, vat_id=None, legal_id="HRB 1234")
    buyer = dataclasses.replace(receipt.buyer, vat_id="DE987654321")
    line = dataclasses.replace(receipt.lines[0], vat_bp=None, tax=0)
    doc = dataclasses.replace(receipt, seller=seller, buyer=buyer, lines=(line,))
    xml = facturx_xml(doc, brand)
    check_facturx(xml)
    root = tree(xml)
    assert b"DE987654321" not in xml  # no VAT ids on an invoice not subject to VAT (BR-O-02)
    tax = root.xpath("//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax", namespaces=NSMAP)[0]
    assert tax.findtext("ram:CategoryCode", namespaces=NSMAP) == "O"
    assert tax.findtext("ram:ExemptionReasonCode", namespaces=NSMAP) == "VATEX-EU-O"
    assert tax.find("ram:RateApplicablePercent", namespaces=NSMAP) is None


@needs_schematron
def test_untaxed_fee_beside_taxed_sessions_is_exempt_category(invoice, brand):
    """A late-payment fee carries no VAT; EN 16931 forbids category O beside S (BR-O-11), so it is E."""
    doc = dataclasses.replace(invoice, lines=invoice.lines + (Line("fee", "Late-payment fee", 500, None, 0),))
    xml = facturx_xml(doc, brand)
    check_facturx(xml)
    root = tree(xml)
    cats = texts(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:CategoryCode")
    assert cats == ["E", "S", "S"]
    assert texts(root, "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:ExemptionReason") == ["Not subject to VAT"]
    assert minor(texts(root, "//ram:GrandTotalAmount")[0]) == doc.total_gross == invoice.total_gross + 500


def test_documents_en16931_cannot_express_are_refused(invoice, brand):
    with pytest.raises(FacturxError, match="BR-O-09"):
        facturx_xml(dataclasses.replace(invoice, lines=(Line("fee", "Parking", 100, None, 19),)), brand)
    no_vat_id = dataclasses.replace(invoice, seller=dataclasses.replace(invoice.seller, vat_id=None))
    with pytest.raises(FacturxError, match="VAT identifier"):
        facturx_xml(no_vat_id, brand)
    with pytest.raises(FacturxError, match="country"):
        facturx_xml(dataclasses.replace(invoice, buyer=Party(name="X")), brand)
    with pytest.raises(FacturxError, match="BT-25"):
        facturx_xml(dataclasses.replace(invoice, kind="credit_note"), brand)
    with pytest.raises(FacturxError, match="ISO 4217"):
        facturx_xml(dataclasses.replace(invoice, currency="euro"), brand)


def test_check_reports_the_library_xsd_message(invoice, brand):
    xml = facturx_xml(invoice, brand).replace(b"<ram:TypeCode>380</ram:TypeCode>", b"")
    with pytest.raises(FacturxError, match="XML Schema Definition"):
        check_facturx(xml, schematron=False)


@needs_schematron
def test_schematron_catches_a_total_that_does_not_add_up(invoice, brand):
    xml = facturx_xml(invoice, brand)
    bad = xml.replace(b'currencyID="EUR">2.78<', b'currencyID="EUR">2.79<')
    assert bad != xml
    check_facturx(bad, schematron=False)  # schema-valid ...
    with pytest.raises(FacturxError, match="BR-CO-14"):  # ... but the VAT total is not the breakdown's sum
        check_facturx(bad)
