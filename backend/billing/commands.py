"""What each billing command does (backend/billing/cli.py declares them)."""
from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.billing import registry, terms
from backend.billing.issued import document_for
from backend.billing.refunds import Refunds, parse_session
from backend.billing.runs import Runner, mark_paid, money, percent
from backend.billing.terms import BillingError
from backend.models import CardOwner, Invoice


def _day(t: int | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def _version_args(args: argparse.Namespace) -> dict:
    return dict(cycle=args.cycle, payment_days=args.payment_days, late_fee=args.late_fee, tariff_id=args.tariff,
                valid_to=None if args.valid_to is None else terms.when(args.valid_to, "--valid-to"),
                rules=args.discount)


def run(args: argparse.Namespace, sessions: sessionmaker, clock: Callable[[], float]) -> int:
    cmd, action = args.command, getattr(args, "action", None)
    if cmd == "customer" and action == "add":
        registry.add_customer(sessions, args.id, clock, kind=args.kind, name=args.name, address=args.address,
                              postcode=args.postcode, city=args.city, country=args.country, vat_id=args.vat_id,
                              email=args.email, language=args.language, currency=args.currency)
        print(f"customer {args.id} added")
    elif cmd == "customer":
        show_customer(sessions, args.id)
    elif cmd == "contract" and action == "add":
        values = _version_args(args)
        values["rules"] = values["rules"] or []
        start = terms.when(args.valid_from, "--valid-from") if args.valid_from else int(clock())
        registry.add_contract(sessions, args.id, args.customer, clock, valid_from=start, **values)
        print(f"contract {args.id} version 1 valid from {_day(start)}")
    elif cmd == "contract" and action == "set":
        values = _version_args(args)
        if args.no_end and args.valid_to:
            raise BillingError("--no-end and --valid-to contradict each other")
        if args.no_discounts and args.discount:
            raise BillingError("--no-discounts and --discount contradict each other")
        if args.no_discounts:
            values["rules"] = []
        v = registry.set_contract(sessions, args.id, terms.when(args.valid_from, "--from"), clock,
                                  clear_valid_to=args.no_end or None, **values)
        print(f"contract {args.id} version {v.version} valid from {_day(v.valid_from)}")
    elif cmd == "contract":
        show_contract(sessions, args.id)
    elif cmd == "card":
        token = args.token
        if args.uid is not None:
            from backend.keys import Keys, card_token  # noqa: PLC0415

            try:
                uid = bytes.fromhex(args.uid)
            except ValueError:
                raise BillingError(f"--uid {args.uid!r} is not hex") from None
            token = card_token(Keys(args.keys).site_secret(), uid)
        o = registry.assign_card(sessions, token, args.customer, args.contract, terms.when(args.valid_from, "--from"), clock)
        print(f"card {o.token} belongs to {o.customer_id} from {_day(o.valid_from)}"
              + (f" under {o.contract_id}" if o.contract_id else ""))
    elif cmd == "billing" and action == "run":
        res = Runner(sessions, clock).run(args.period, args.customer)
        for number in res.issued + res.credit_notes:
            with sessions() as db:
                doc = document_for(db, number)
            print(f"{number}\t{doc.kind}\t{doc.customer_ref or '-'}\t{len(doc.sessions)} sessions\t"
                  f"{money(doc.total_gross, doc.currency)}")
        print(f"{len(res.issued)} documents issued, {len(res.credit_notes)} automatic credit notes")
    elif cmd == "billing" and action == "seller":
        p = registry.set_seller(sessions, name=args.name, address=args.address, postcode=args.postcode, city=args.city,
                                country=args.country, vat_id=args.vat_id, email=args.email)
        print(f"seller: {p.name}, {p.country}")
    elif cmd == "billing":
        if args.void is None and args.meter_fault is None:
            raise BillingError("say which rule: --void on|off and/or --meter-fault on|off")
        print(json.dumps(registry.set_auto_refund(sessions, args.void, args.meter_fault)))
    elif cmd == "invoice" and action == "list":
        list_documents(sessions, args.customer, args.period, args.kind)
    elif cmd == "invoice" and action == "show":
        with sessions() as db:
            print(render_text(document_for(db, args.number)))
    elif cmd == "invoice":
        at = terms.when(args.at, "--at") if args.at else int(clock())
        mark_paid(sessions, args.number, at)
        print(f"{args.number} paid {_day(at)}")
    elif cmd == "refund":
        only = [parse_session(s) for s in args.session] if args.session else None
        cn = Refunds(sessions, clock).refund(args.number, only, args.amount, args.note)
        with sessions() as db:
            doc = document_for(db, cn)
        print(f"{cn}\tcredit note for {args.number}\t{money(doc.total_gross, doc.currency)}")
    else:
        raise BillingError(f"unknown billing command {cmd} {action}")
    return 0


def show_customer(sessions: sessionmaker, cid: str) -> None:
    with sessions() as db:
        c = registry.customer(db, cid)
        print(f"{c.id}\t{c.kind}\t{c.name}\t{c.country}\t{c.vat_id or '-'}\t{c.email or '-'}\t{c.language}\t{c.currency}")
        for line in [*c.address.splitlines(), f"{c.postcode} {c.city}".strip()]:
            if line:
                print(f"  {line}")
        for o in db.scalars(select(CardOwner).where(CardOwner.customer_id == cid).order_by(CardOwner.token, CardOwner.valid_from)):
            print(f"card\t{o.token}\tfrom {_day(o.valid_from)}\t{o.contract_id or '-'}")
        from backend.models import Contract  # noqa: PLC0415

        for k in db.scalars(select(Contract).where(Contract.customer_id == cid).order_by(Contract.id)):
            v = registry.versions(db, k.id)[-1]
            print(f"contract\t{k.id}\tversion {v.version}\t{v.cycle}\tfrom {_day(v.valid_from)}")
        for inv in db.scalars(select(Invoice).where(Invoice.customer_id == cid).order_by(Invoice.issued_at, Invoice.number)):
            print(f"{inv.kind}\t{inv.number}\t{_day(inv.issued_at)}\t{money(inv.total_net + inv.total_tax, inv.currency)}")


def show_contract(sessions: sessionmaker, contract_id: str) -> None:
    with sessions() as db:
        vs = registry.versions(db, contract_id)
        if not vs:
            raise BillingError(f"contract {contract_id!r} is unknown")
        from backend.models import Contract  # noqa: PLC0415

        print(f"{contract_id}\tcustomer {db.get(Contract, contract_id).customer_id}")
        for v in vs:
            print(f"version {v.version}\tfrom {_day(v.valid_from)}\tto {_day(v.valid_to)}\t{v.cycle}\t"
                  f"{v.payment_days} days\tlate fee {v.late_fee}\ttariff {v.tariff_id or '-'}\tdiscounts {v.discounts}")


def list_documents(sessions: sessionmaker, customer: str | None, period: str | None, kind: str | None) -> None:
    q = select(Invoice).order_by(Invoice.series, Invoice.seq)
    if customer:
        q = q.where(Invoice.customer_id == customer)
    if period:
        q = q.where(Invoice.billing_period == period)
    if kind:
        q = q.where(Invoice.kind == kind)
    with sessions() as db:
        for inv in db.scalars(q):
            state = "paid" if inv.paid_at else (f"due {_day(inv.due_at)}" if inv.due_at else "")
            print(f"{inv.number}\t{inv.kind}\t{_day(inv.issued_at)}\t{inv.customer_id or '-'}\t"
                  f"{money(inv.total_net + inv.total_tax, inv.currency)}\t{state}\t{inv.refers_to or ''}".rstrip())


def render_text(doc) -> str:
    """A document as plain text for the terminal (the PDF is the renderer's)."""
    cur = doc.currency
    out = [f"{doc.kind} {doc.number}  issued {doc.issue_date}" + (f"  due {doc.due_date}" if doc.due_date else ""),
           f"seller: {doc.seller.name}, {doc.seller.country} {doc.seller.vat_id or ''}".rstrip(),
           f"buyer:  {doc.buyer.name} {doc.customer_ref}".rstrip()]
    if doc.period_start:
        out.append(f"period: {doc.period_start} .. {doc.period_end}")
    if doc.references:
        out.append(f"corrects: {', '.join(doc.references)}")
    for x in doc.lines:
        rate = "-" if x.vat_bp is None else percent(x.vat_bp).replace(" ", "")
        ref = f"  [{x.session.record_hash[:16]}]" if x.session else ""
        out.append(f"  {x.kind:8} {money(x.net, cur):>14} {rate:>6} {money(x.tax, cur):>12}  {x.description}{ref}")
    for vt in doc.vat_totals:
        rate = percent(vt.vat_bp)
        out.append(f"VAT {rate}: base {money(vt.base, cur)}, tax {money(vt.tax, cur)}")
    out.append(f"total: net {money(doc.total_net, cur)}, VAT {money(doc.total_tax, cur)}, gross {money(doc.total_gross, cur)}")
    if doc.note:
        out.append(doc.note)
    if doc.payment_terms:
        out.append(doc.payment_terms)
    return "\n".join(out)
