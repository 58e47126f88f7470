"""The document commands of python -m backend, in-process: invoice pdf|xml, credit-note pdf|xml,
export --format safe-xml. What they write (PDF/A-3 with factur-x.xml that passes the EN 16931
checks, XML, S.A.F.E. export whose OCMF verifies), and that every bad input is refused with a
clear error, exit status 2, no file written and the database unchanged. Also the billing core's
texts in the customer's language and its integer formatting."""
from __future__ import annotations

import io
import os

import pytest
from defusedxml import ElementTree as SafeET

from backend.__main__ import main
from backend.billing import runs
from backend.billing.facturx import check_facturx
from host_tests.billing.conftest import DEC, SELLER, T0, Charger, Clock, fields, ingest, token
from host_tests.billing.test_cli import snapshot
from host_tests.documents.conftest import weasyprint_or_skip
from host_tests.documents.test_safe import verify_ocmf

DAY = 86400


@pytest.fixture(scope="module")
def billed(tmp_path_factory):
    """November on SQLite: ACME (German, contract with 12.5 % off per invoice) with two sessions, an
    anonymous card's receipt; credit notes for one ACME session and for the receipt."""
    from backend.billing import registry
    from backend.billing.refunds import Refunds
    from backend.billing.runs import Runner
    from backend.db import open_db

    tmp = tmp_path_factory.mktemp("doc-cli")
    db = str(tmp / "b.db")
    sessions = open_db(db)
    registry.set_seller(sessions, **SELLER)
    registry.add_customer(sessions, "ACME", kind="company", name="ACME Fleet GmbH", address="Werkstr. 5", postcode="80331",
                          city="München", country="DE", vat_id="DE999999999", email=None, language="de", currency="EUR")
    registry.add_contract(sessions, "ACME-1", "ACME", cycle="monthly", payment_days=14, late_fee=0, tariff_id=None,
                          valid_from=0, valid_to=None, rules=["percent:1250:invoice"])
    registry.assign_card(sessions, token(0), "ACME", "ACME-1")
    ch = Charger("evc-doc", tmp)
    ch.make([fields(ch.dev, 1, token(0), T0 + DAY, 5000, 1000, 1190),
             fields(ch.dev, 2, token(0), T0 + 2 * DAY, 11434, 2000, 2380),
             fields(ch.dev, 3, token(5), T0 + 3 * DAY, 2500, 300, 357)])
    ingest(sessions, ch, ch.records)
    issued = Runner(sessions, Clock(DEC + 1)).run("2026-11").issued
    inv = next(n for n in issued if n.startswith("INV-"))
    rc = next(n for n in issued if n.startswith("RC-"))
    cn = Refunds(sessions, Clock(DEC + DAY)).refund(inv, [("evc-doc", 2)])
    cn_rc = Refunds(sessions, Clock(DEC + DAY)).refund(rc)
    return {"db": db, "sessions": sessions, "tmp": tmp, "inv": inv, "rc": rc, "cn": cn, "cn_rc": cn_rc, "charger": ch}


@pytest.fixture
def call(billed, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--db", billed["db"], "--keys", str(billed["tmp"] / "keys")])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def pdf_parts(path) -> tuple[str, dict]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(path.read_bytes()))
    return " ".join(" ".join(p.extract_text().split()) for p in reader.pages), reader.attachments


# -- what the commands write --------------------------------------------------------------------

def test_invoice_pdf_embeds_checked_einvoice_and_xml_is_written_alone(billed, call, tmp_path):
    weasyprint_or_skip()
    out = tmp_path / "inv.pdf"
    code, text, err = call("invoice", "pdf", billed["inv"], "--out", str(out))
    assert code == 0, err
    assert billed["inv"] in text and "factur-x.xml" in text
    body, files = pdf_parts(out)
    assert out.read_bytes().startswith(b"%PDF-")
    assert billed["inv"] in body and "Rechnung" in body and "ACME Fleet GmbH" in body
    embedded = files["factur-x.xml"][0]
    check_facturx(embedded)
    assert f"<ram:ID>{billed['inv']}</ram:ID>".encode() in embedded

    xml = tmp_path / "inv.xml"
    code, _, err = call("invoice", "xml", billed["inv"], "--out", str(xml))
    assert code == 0, err
    check_facturx(xml.read_bytes())
    assert SafeET.fromstring(xml.read_bytes()).tag.endswith("CrossIndustryInvoice")
    assert "Ladevorgang evc-doc #2" in xml.read_text()


def test_receipt_is_pdf_only(billed, call, tmp_path):
    weasyprint_or_skip()
    out = tmp_path / "rc.pdf"
    assert call("invoice", "pdf", billed["rc"], "--out", str(out))[0] == 0
    body, files = pdf_parts(out)
    assert billed["rc"] in body and "Receipt" in body and "factur-x.xml" not in files
    code, _, err = call("invoice", "xml", billed["rc"], "--out", str(tmp_path / "rc.xml"))
    assert code == 2 and "receipts are PDF only" in err and f"invoice pdf {billed['rc']}" in err
    assert not (tmp_path / "rc.xml").exists()


def test_credit_notes(billed, call, tmp_path):
    weasyprint_or_skip()
    pdf, xml = tmp_path / "cn.pdf", tmp_path / "cn.xml"
    assert call("credit-note", "pdf", billed["cn"], "--out", str(pdf))[0] == 0
    body, files = pdf_parts(pdf)
    assert billed["cn"] in body and billed["inv"] in body and "Rechnungskorrektur" in body
    check_facturx(files["factur-x.xml"][0])
    assert call("credit-note", "xml", billed["cn"], "--out", str(xml))[0] == 0
    check_facturx(xml.read_bytes())
    assert "<ram:TypeCode>381</ram:TypeCode>" in xml.read_text()

    # the credit note of an anonymous driver's receipt: a buyer without country, so PDF only
    anon = tmp_path / "cn-rc.pdf"
    assert call("credit-note", "pdf", billed["cn_rc"], "--out", str(anon))[0] == 0
    body, files = pdf_parts(anon)
    assert billed["cn_rc"] in body and "factur-x.xml" not in files
    code, _, err = call("credit-note", "xml", billed["cn_rc"], "--out", str(tmp_path / "x.xml"))
    assert code == 2 and "PDF only" in err and not (tmp_path / "x.xml").exists()


def test_brand_file_is_used(billed, call, tmp_path):
    weasyprint_or_skip()
    brand = tmp_path / "brand.toml"
    brand.write_text('footer = "Amtsgericht Berlin HRB 4711"\nprimary_colour = "#113355"\n'
                     '[seller]\nname = "EVC Charging GmbH"\ncountry = "DE"\nvat_id = "DE123456789"\n')
    out = tmp_path / "branded.pdf"
    code, _, err = call("invoice", "pdf", billed["rc"], "--out", str(out), "--brand", str(brand))
    assert code == 0, err
    assert "HRB 4711" in pdf_parts(out)[0]


def test_safe_xml_export_of_named_sessions_verifies(billed, call, tmp_path):
    out = tmp_path / "safe.xml"
    code, _, err = call("export", "--format", "safe-xml", "--session", "evc-doc:1", "--session", "evc-doc:3",
                        "--out", str(out))
    assert code == 0, err
    root = SafeET.fromstring(out.read_bytes())
    values = root.findall("value")
    assert [v.find("signedData").get("transactionId") for v in values] == ["1", "3"]
    for v in values:
        payload = verify_ocmf(v.find("signedData").text, v.find("publicKey").text)
        assert payload["GS"] == "evc-doc"
    # by time range, to stdout; the other formats still work
    code, text, _ = call("export", "--format", "safe-xml", "--from", str(T0), "--to", str(T0 + 2 * DAY + 1))
    assert code == 0 and text.count("<value ") == 2
    code, text, _ = call("export", "--format", "csv")
    assert code == 0 and text.count("evc-doc") == 3


# -- refusals: exit 2, a clear message, no file, nothing changed ----------------------------------

BAD = [
    (("invoice", "pdf", "INV-2026-999999"), "no invoice, receipt or credit note"),
    (("invoice", "xml", "nope"), "no invoice, receipt or credit note"),
    (("invoice", "pdf", "{cn}"), "use credit-note pdf"),
    (("credit-note", "xml", "{inv}"), "use invoice xml"),
    (("credit-note", "pdf", "{rc}"), "is a receipt, not a credit note: use invoice pdf"),
    (("invoice", "pdf", "{inv}", "--brand", "{tmp}/missing.toml"), "cannot read brand file"),
    (("invoice", "pdf", "{inv}", "--brand", "{tmp}/bad.toml"), "not valid TOML"),
    (("invoice", "pdf", "{inv}", "--brand", "{tmp}/typo.json"), "unknown brand keys: colour"),
    (("export", "--format", "safe-xml", "--session", "evc-doc:99"), "no stored session evc-doc:99"),
    (("export", "--format", "safe-xml", "--session", "evc-doc"), "DEV:SEQ expected"),
    (("export", "--format", "csv", "--session", "evc-doc:1"), "for --format safe-xml only"),
    (("export", "--format", "safe-xml", "--session", "evc-doc:1", "--device", "evc-doc"), "not both"),
    (("export", "--format", "safe-xml", "--device", "nobody"), "nothing to export"),
]


@pytest.mark.parametrize("argv, message", BAD)
def test_bad_input_is_refused_and_changes_nothing(billed, call, tmp_path, argv, message):
    (tmp_path / "bad.toml").write_text("[seller\nname=")
    (tmp_path / "typo.json").write_text('{"colour": "#000000", "seller": {"name": "X", "country": "DE"}}')
    names = {k: billed[k] for k in ("inv", "rc", "cn")} | {"tmp": tmp_path}
    out = tmp_path / "out.file"
    before = snapshot(billed["sessions"])
    code, _, err = call(*[a.format(**names) for a in argv], "--out", str(out))
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not out.exists()
    assert snapshot(billed["sessions"]) == before


def test_unwritable_out_is_refused_before_rendering(billed, call, tmp_path):
    cases = [(tmp_path / "no-such-folder" / "x.pdf", "does not exist"), (tmp_path, "is a folder")]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        cases.append((locked / "x.pdf", "not writable"))
    for out, message in cases:
        for argv in (("invoice", "pdf", billed["inv"]), ("credit-note", "xml", billed["cn"]),
                     ("export", "--format", "safe-xml", "--session", "evc-doc:1")):
            code, _, err = call(*argv, "--out", str(out))
            assert code == 2 and message in err, err
    assert not (tmp_path / "no-such-folder").exists()


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    from backend.billing import doc_cli

    target = tmp_path / "keep.pdf"
    target.write_bytes(b"old")

    def boom(*_a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        doc_cli.write_file(target, b"new contents")
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["keep.pdf"]


# -- the billing core's texts: the customer's language, integer formatting -------------------------

def test_documents_speak_the_customers_language(billed):
    from backend.billing.issued import document_for

    with billed["sessions"]() as db:
        inv, rc, cn = (document_for(db, billed[k]) for k in ("inv", "rc", "cn"))
    assert inv.language == "de" and inv.payment_terms == "Zahlbar innerhalb von 14 Tagen ab Rechnungsdatum."
    assert inv.lines[1].description == "Ladevorgang evc-doc #2, 03.11.2026 00:00 UTC, 11,434 kWh"
    assert [x.description for x in inv.lines if x.kind == "discount"] == ["Rabatt 12,5 %"]
    assert cn.lines[0].description == f"Erstattung evc-doc #2 aus {billed['inv']}"
    assert rc.language == "en" and rc.lines[0].description == "Charging evc-doc #3, 2026-11-04 00:00 UTC, 2.500 kWh"


def test_integer_formatting():
    assert [runs.kwh(w) for w in (0, 7, 11434, 1_000_000)] == ["0.000", "0.007", "11.434", "1000.000"]
    assert runs.kwh(11434, "de") == "11,434"
    assert [runs.kwh_short(w) for w in (500000, 1500, 1, 0)] == ["500", "1.5", "0.001", "0"]
    assert [runs.percent(b) for b in (1900, 750, 550, 1, 0, 10000)] == ["19 %", "7.5 %", "5.5 %", "0.01 %", "0 %", "100 %"]
    assert runs.percent(750, "de") == "7,5 %" and runs.percent(None, "de") == "ohne USt"
    assert runs.money_in(123456, "EUR", "de") == "1234,56 EUR" and runs.money_in(-5, "EUR") == "-0.05 EUR"
    assert runs._rule({"type": "percent", "value": 500, "per": "session", "above_wh": 500_500}, "EUR", "de") \
        == "Rabatt 5 % ab 500,5 kWh/Monat"
    assert runs._rule({"type": "fixed", "value": 250, "per": "invoice", "above_wh": 0}, "EUR") == "Discount 2.50 EUR"
