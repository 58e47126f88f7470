"""Invoices, credit notes and receipts as PDF: one Jinja2 HTML/CSS template (templates/), WeasyPrint.

Invoices and credit notes come out as PDF/A-3b with the EN 16931 XML (facturx.py) embedded as
factur-x.xml by the `factur-x` library; receipts as PDF/A-3b without it. Every amount is formatted
from integer minor units, every energy from integer Wh, in the document's language (en, de).
WeasyPrint and Jinja2 are imported when a PDF is rendered, so this module imports without them.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.billing.document import Brand, Document, Line, Party
from backend.billing.facturx import FacturxError, exponent, facturx_xml, line_name, sign_of

TEMPLATES = Path(__file__).with_name("templates")
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$|^#[0-9a-fA-F]{3}$")

LABELS = {
    "en": {
        "invoice": "Invoice", "credit_note": "Credit note", "receipt": "Receipt",
        "number": "Number", "issue_date": "Date", "customer": "Customer", "contract": "Contract",
        "period": "Billing period", "due_date": "Due date", "corrects": "Corrects invoice",
        "description": "Description", "energy": "Energy kWh", "net": "Net", "vat_rate": "VAT rate",
        "vat": "VAT", "gross": "Gross", "total_net": "Total net", "total_vat": "Total VAT",
        "total_gross": "Total", "charger": "Charger", "seq": "record", "record": "Record SHA-256",
        "page": "Page", "vat_id": "VAT ID", "bank": "Bank details", "public_key": "Public keys of the chargers (SubjectPublicKeyInfo DER, hex)",
        "not_subject": "not subject to VAT",
        "due": "Please pay {amount} by {date}.", "due_now": "Amount due: {amount}.",
        "credited": "We credit you {amount}.", "charged": "Charged for this session: {amount}.",
        "no_vat_note": "Not subject to VAT.",
        "einvoice": "This PDF carries this document as EN 16931 e-invoice (Factur-X, profile EN16931) in factur-x.xml.",
        "transparency_title": "Transparency data",
        "transparency_text": ("Every charging session above is a meter reading signed inside the charger. "
                              "To check a reading, paste its OCMF string and the charger's public key into "
                              "transparency software (e.g. the S.A.F.E. Transparenzsoftware); the record hash "
                              "identifies the signed session record the line bills."),
        "session": "Charging session", "times": "Times of day: {zone}.",
    },
    "de": {
        "invoice": "Rechnung", "credit_note": "Rechnungskorrektur", "receipt": "Quittung",
        "number": "Nummer", "issue_date": "Datum", "customer": "Kunde", "contract": "Vertrag",
        "period": "Abrechnungszeitraum", "due_date": "Fällig am", "corrects": "Korrigiert Rechnung",
        "description": "Beschreibung", "energy": "Energie kWh", "net": "Netto", "vat_rate": "USt-Satz",
        "vat": "USt", "gross": "Brutto", "total_net": "Summe netto", "total_vat": "Summe USt",
        "total_gross": "Gesamtbetrag", "charger": "Ladepunkt", "seq": "Datensatz", "record": "Datensatz SHA-256",
        "page": "Seite", "vat_id": "USt-IdNr.", "bank": "Bankverbindung",
        "public_key": "Öffentliche Schlüssel der Ladepunkte (SubjectPublicKeyInfo DER, hex)", "not_subject": "nicht steuerbar",
        "due": "Bitte zahlen Sie {amount} bis zum {date}.", "due_now": "Zu zahlen: {amount}.",
        "credited": "Wir schreiben Ihnen {amount} gut.", "charged": "Für diesen Ladevorgang berechnet: {amount}.",
        "no_vat_note": "Nicht steuerbarer Umsatz.",
        "einvoice": "Diese PDF enthält dieses Dokument als E-Rechnung nach EN 16931 (Factur-X, Profil EN16931) in factur-x.xml.",
        "transparency_title": "Transparenzdaten",
        "transparency_text": ("Jeder Ladevorgang oben ist ein im Ladepunkt signierter Messwert. Zur Prüfung "
                              "den OCMF-Datensatz und den öffentlichen Schlüssel des Ladepunkts in eine "
                              "Transparenzsoftware (z. B. die S.A.F.E. Transparenzsoftware) einfügen; der "
                              "Datensatz-Hash bezeichnet den signierten Datensatz, den die Zeile abrechnet."),
        "session": "Ladevorgang", "times": "Uhrzeiten: {zone}.",
    },
}


class RenderError(ValueError):
    """A Document or Brand that cannot be rendered (the message says what to fix)."""


def _lang(doc: Document) -> str:
    """The document's language, after checking what the template relies on."""
    if doc.language not in LABELS:
        raise RenderError(f"language must be one of {sorted(LABELS)}, not {doc.language!r}")
    if doc.kind not in ("invoice", "credit_note", "receipt"):
        raise RenderError(f"document kind must be invoice, credit_note or receipt, not {doc.kind!r}")
    if not doc.number or not isinstance(doc.issue_date, dt.date):
        raise RenderError("document needs a number and an issue date")
    if not doc.lines:
        raise RenderError(f"document {doc.number} has no lines")
    exponent(doc.currency)  # FacturxError (a ValueError) for a code that is not ISO 4217-like
    return doc.language


def _group(digits: str, sep: str) -> str:
    out = []
    while len(digits) > 3:
        out.insert(0, digits[-3:])
        digits = digits[:-3]
    out.insert(0, digits)
    return sep.join(out)


def money(minor: int, currency: str, lang: str) -> str:
    """12345, EUR -> "123.45 EUR" (en) / "123,45 EUR" (de); thousands grouped; integers only."""
    if not isinstance(minor, int) or isinstance(minor, bool):
        raise RenderError(f"amount must be integer minor units, not {minor!r}")
    e = exponent(currency)
    dec, thou = (",", ".") if lang == "de" else (".", ",")
    whole, frac = divmod(abs(minor), 10**e)
    text = _group(str(whole), thou) + (f"{dec}{frac:0{e}d}" if e else "")
    return f"{'-' if minor < 0 else ''}{text} {currency}"


def kwh(wh: int, lang: str) -> str:
    """Integer Wh as kWh with three decimals, exactly: 11434 -> "11.434" / "11,434"."""
    if not isinstance(wh, int) or isinstance(wh, bool) or wh < 0:
        raise RenderError(f"energy must be non-negative integer Wh, not {wh!r}")
    return f"{_group(str(wh // 1000), ',' if lang == 'en' else '.')}{'.' if lang == 'en' else ','}{wh % 1000:03d}"


def rate(vat_bp: int | None, lang: str) -> str:
    """1900 -> "19 %", 550 -> "5.5 %" / "5,5 %"; None -> "not subject to VAT"."""
    if vat_bp is None:
        return LABELS[lang]["not_subject"]
    whole, frac = divmod(vat_bp, 100)
    text = str(whole) if frac == 0 else f"{whole}{',' if lang == 'de' else '.'}{frac:02d}".rstrip("0")
    return f"{text} %"


def day(d: dt.date, lang: str) -> str:
    return d.strftime("%d.%m.%Y") if lang == "de" else d.isoformat()


def _zone(brand: Brand) -> tuple[dt.tzinfo, str]:
    name = brand.extra.get("timezone", "UTC")
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RenderError(f"brand timezone {name!r} is not an IANA zone name") from e


def moment(t: int, zone: dt.tzinfo, lang: str) -> str:
    local = dt.datetime.fromtimestamp(t, dt.timezone.utc).astimezone(zone)
    return local.strftime("%d.%m.%Y %H:%M" if lang == "de" else "%Y-%m-%d %H:%M")


def _address_lines(p: Party, home: str = "") -> list[str]:
    """Printed address lines; the country only when it is not the sender's (home) country."""
    lines = [ln for ln in p.address if ln]
    town = f"{p.postcode} {p.city}".strip()
    if town and town not in lines:
        lines.append(town)
    if p.country and p.country != home and p.country not in lines:
        lines.append(p.country)
    return lines


def _css_string(text: str) -> str:
    """text as the inside of a CSS string: everything but letters, digits and spaces escaped."""
    # a hex escape swallows one following blank, hence the blank after each escape
    return "".join(c if c.isalnum() and c.isascii() or c == " " else f"\\{ord(c):06x} " for c in text)


def check_brand(brand: Brand) -> None:
    for name in ("primary_colour", "accent_colour"):
        if not _COLOUR.match(getattr(brand, name)):
            raise RenderError(f"brand {name} must be a hex colour like #0b6e4f, not {getattr(brand, name)!r}")
    if brand.logo is not None and not Path(brand.logo).is_file():
        raise RenderError(f"brand logo {brand.logo!r} is not a readable file")


def context(doc: Document, brand: Brand) -> dict:
    """Everything the template shows, formatted (also what tests and the docs sample inspect)."""
    lang = _lang(doc)
    check_brand(brand)
    labels = LABELS[lang]
    zone, zone_name = _zone(brand)
    cur = doc.currency
    sign = sign_of(doc)

    def m(v: int) -> str:
        return money(sign * v, cur, lang)

    rows, transparency, seen = [], [], set()
    keys: dict[str, list[str]] = {}  # device -> its public key(s), printed once each
    for pos, line in enumerate(doc.lines, 1):
        s = line.session
        first = s is not None and (s.dev, s.seq) not in seen  # a session split by VAT rate has several lines
        rows.append(_row(pos, line, lang, zone, m, energy=first and line.kind == "session"))
        if first:
            seen.add((s.dev, s.seq))
            transparency.append({"pos": pos, "session": s, "energy": f"{kwh(s.energy_wh, lang)} kWh"})
            keys.setdefault(s.dev, [])
            if s.pubkey_hex not in keys[s.dev]:  # a device whose key changed shows both
                keys[s.dev].append(s.pubkey_hex)
    vat_rows = [{"rate": rate(v.vat_bp, lang), "base": m(v.base), "tax": m(v.tax), "gross": m(v.base + v.tax)}
                for v in doc.vat_totals]
    gross = sign * doc.total_gross
    amount = money(gross, cur, lang)
    if doc.kind == "credit_note":
        payment = labels["credited"].format(amount=amount)
    elif doc.kind == "receipt" and doc.due_date is None:  # how it was paid, if at all, is the note's to say
        payment = labels["charged"].format(amount=amount)
    elif doc.due_date is not None:
        payment = labels["due"].format(amount=amount, date=day(doc.due_date, lang))
    else:
        payment = labels["due_now"].format(amount=amount)
    footer = brand.footer or doc.seller.name
    logo = Path(brand.logo).resolve().as_uri() if brand.logo else None
    return {
        "lang": lang, "labels": labels, "doc": doc, "brand": brand, "seller": doc.seller, "buyer": doc.buyer,
        "title": labels[doc.kind], "seller_lines": _address_lines(doc.seller, doc.seller.country),
        "buyer_lines": _address_lines(doc.buyer, doc.seller.country),
        "issue_date": day(doc.issue_date, lang),
        "due_date": day(doc.due_date, lang) if doc.due_date else "",
        "period": (f"{day(doc.period_start, lang)} – {day(doc.period_end, lang)}"
                   if doc.period_start and doc.period_end else ""),
        "rows": rows, "vat_rows": vat_rows, "transparency": transparency, "public_keys": keys,
        "times_note": labels["times"].format(zone=zone_name) if transparency else "",
        "total_net": m(doc.total_net), "total_tax": m(doc.total_tax), "total_gross": m(doc.total_gross),
        "payment_text": payment,
        "vat_note": labels["no_vat_note"] if all(ln.vat_bp is None for ln in doc.lines) else "",
        "einvoice": doc.kind != "receipt", "footer_css": _css_string(footer), "logo": logo,
    }


def _row(pos: int, line: Line, lang: str, zone, m, energy: bool) -> dict:
    s = line.session
    row = {"pos": pos, "kind": line.kind, "title": line_name(line, lang), "description": "",
           "session": s, "energy": "", "net": m(line.net), "rate": rate(line.vat_bp, lang),
           "gross": m(line.gross)}
    if s is not None:
        row["description"] = line.description if line.description != row["title"] else ""
        row["energy"] = kwh(s.energy_wh, lang) if energy else ""
        row["start"] = moment(s.start_t, zone, lang)
        stop = moment(s.stop_t, zone, lang)
        same_day = stop[:10] == row["start"][:10]
        row["stop"] = stop[11:] if same_day else stop
    return row


def render_html(doc: Document, brand: Brand) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                      undefined=StrictUndefined)
    ctx = context(doc, brand)
    from markupsafe import Markup

    ctx["footer_css"] = Markup(ctx["footer_css"])  # already CSS-escaped: no quote or < left in it
    return env.get_template("document.html").render(**ctx)


def _weasyprint():
    try:
        import weasyprint
    except (ImportError, OSError) as e:  # OSError: Pango missing from the system
        raise RenderError(f"WeasyPrint cannot run here ({e}); install weasyprint and Pango (see docs/billing.md)") from e
    return weasyprint


def plain_pdf(doc: Document, brand: Brand) -> bytes:
    """The PDF/A-3b rendering of doc, without embedded XML."""
    weasyprint = _weasyprint()
    html = render_html(doc, brand)
    return weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf(pdf_variant="pdf/a-3b")


def render_pdf(doc: Document, brand: Brand) -> bytes:
    """The document as PDF bytes: invoices and credit notes PDF/A-3b with factur-x.xml (EN 16931),
    receipts PDF/A-3b alone. RenderError / FacturxError name what is wrong with doc or brand."""
    xml = facturx_xml(doc, brand) if doc.kind != "receipt" else None  # fail on bad input before rendering
    pdf = plain_pdf(doc, brand)
    if xml is None:
        return pdf
    from facturx import generate_from_binary

    title = f"{LABELS[doc.language][doc.kind]} {doc.number}"
    meta = {"author": doc.seller.name, "keywords": "Factur-X, EN 16931", "title": title,
            "subject": f"{title}, {doc.issue_date.isoformat()}, {doc.seller.name}"}
    try:
        return generate_from_binary(pdf, xml, flavor="factur-x", level="en16931", check_xsd=True,
                                    pdf_metadata=meta, lang="de-DE" if doc.language == "de" else "en-GB")
    except Exception as e:  # the library raises plain Exception on an XSD failure
        raise FacturxError(str(e)) from e
