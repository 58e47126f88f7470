"""The billing commands of `python -m backend`: customer, contract, card assign, billing, invoice,
refund. add_parsers() only declares arguments (argparse alone, so a bad argument is reported
before anything heavy is imported); run() does the work. Every refusal is a BillingError (a
ValueError: `error: ...`, exit status 2) raised before anything is written."""
from __future__ import annotations

import argparse
from collections.abc import Callable

COMMANDS = ("customer", "contract", "billing", "invoice", "refund")
Leaf = Callable[[object, str, str], argparse.ArgumentParser]


def _onoff(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("on or off")
    return text == "on"


def _terms(p: argparse.ArgumentParser, new: bool) -> None:
    p.add_argument("--cycle", choices=("per_session", "weekly", "monthly"), default="monthly" if new else None,
                   help="billing cycle" + (" (default %(default)s)" if new else ""))
    p.add_argument("--payment-days", type=int, default=14 if new else None, help="payment terms: days until due")
    p.add_argument("--late-fee", type=int, default=0 if new else None, help="minor units charged once an invoice is overdue")
    p.add_argument("--tariff", help="the contract's tariff id (as pushed with tariff push --contract)")
    p.add_argument("--valid-to", help="end of the contract's validity (epoch or ISO date, exclusive)")
    p.add_argument("--discount", action="append", metavar="TYPE:VALUE:PER[:above=WH]",
                   help="percent:1000:invoice (10 %% off per invoice), fixed:200:session (2.00 net off each session), "
                        "percent:500:session:above=500000 (5 %% once the month passed 500 kWh); repeatable")


def add_parsers(sub, leaf: Leaf) -> dict[str, object]:
    """Declare the commands on the top-level subparsers; returns the groups (the `invoice` group
    takes more actions from other modules)."""
    customer = sub.add_parser("customer", help="billing customers").add_subparsers(dest="action", required=True)
    cadd = leaf(customer, "add", "register a customer (a driver or a company/fleet)")
    cadd.add_argument("id")
    cadd.add_argument("--name", required=True)
    cadd.add_argument("--kind", choices=("driver", "company"), default="driver")
    cadd.add_argument("--address", default="", help=r"street lines, separated by \n")
    cadd.add_argument("--postcode", default="")
    cadd.add_argument("--city", default="")
    cadd.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    cadd.add_argument("--vat-id")
    cadd.add_argument("--email")
    cadd.add_argument("--language", default="en", help="en or de (default %(default)s)")
    cadd.add_argument("--currency", default="EUR")
    leaf(customer, "show", "a customer, its cards, contracts and documents").add_argument("id")

    contract = sub.add_parser("contract", help="billing contracts (versioned)").add_subparsers(dest="action", required=True)
    kadd = leaf(contract, "add", "a new contract (version 1) for a customer")
    kadd.add_argument("id", help="the contract id the card list and the records carry")
    kadd.add_argument("--customer", required=True)
    kadd.add_argument("--valid-from", help="start of validity (epoch or ISO date; default: now)")
    _terms(kadd, new=True)
    kset = leaf(contract, "set", "a new version of a contract's terms, valid from --from")
    kset.add_argument("id")
    kset.add_argument("--from", dest="valid_from", required=True, help="the new version's start (epoch or ISO date)")
    _terms(kset, new=False)
    kset.add_argument("--no-end", action="store_true", help="no end of validity")
    kset.add_argument("--no-discounts", action="store_true", help="no discount rules")
    leaf(contract, "show", "a contract's versions").add_argument("id")

    billing = sub.add_parser("billing", help="billing runs and settings").add_subparsers(dest="action", required=True)
    brun = leaf(billing, "run", "invoice the sessions of a month (idempotent)")
    brun.add_argument("--period", required=True, help="YYYY-MM (UTC)")
    brun.add_argument("--customer", help="only this customer")
    bsell = leaf(billing, "seller", "the operator's details printed on every document from now on")
    bsell.add_argument("--name", required=True)
    bsell.add_argument("--address", default="", help=r"street lines, separated by \n")
    bsell.add_argument("--postcode", default="")
    bsell.add_argument("--city", default="")
    bsell.add_argument("--country", required=True)
    bsell.add_argument("--vat-id")
    bsell.add_argument("--email")
    bauto = leaf(billing, "auto-refund", "switch the automatic refund rules (applied by every billing run)")
    bauto.add_argument("--void", type=_onoff, help="credit billed sessions flagged void: on/off")
    bauto.add_argument("--meter-fault", type=_onoff, help="credit billed sessions with a meter fault: on/off")

    invoice = sub.add_parser("invoice", help="issued invoices, receipts and credit notes").add_subparsers(dest="action", required=True)
    ilist = leaf(invoice, "list", "issued documents")
    ilist.add_argument("--customer")
    ilist.add_argument("--period", help="billing period YYYY-MM")
    ilist.add_argument("--kind", choices=("invoice", "receipt", "credit_note"))
    leaf(invoice, "show", "one document with its lines and VAT totals").add_argument("number")
    ipaid = leaf(invoice, "paid", "record an invoice's payment (no late fee from then on)")
    ipaid.add_argument("number")
    ipaid.add_argument("--at", help="when it was paid (epoch or ISO; default: now)")

    refund = leaf(sub, "refund", "credit note for an invoice or receipt (all of it, a session, or an amount)")
    refund.add_argument("number", metavar="INVOICE_OR_RECEIPT")
    refund.add_argument("--session", action="append", metavar="DEV:SEQ", help="only this session (repeatable)")
    refund.add_argument("--amount", type=int, help="gross minor units to credit (one session)")
    refund.add_argument("--note", default="", help="reason, printed on the credit note")
    return {"customer": customer, "contract": contract, "billing": billing, "invoice": invoice}


def add_card_assign(card_actions, leaf: Leaf) -> None:
    assign = leaf(card_actions, "assign", "give a card to a customer (and a contract) from a time on")
    who = assign.add_mutually_exclusive_group(required=True)
    who.add_argument("--token")
    who.add_argument("--uid", help="card UID in hex (token computed with the site secret)")
    assign.add_argument("--customer", required=True)
    assign.add_argument("--contract", help="the contract its sessions are billed under when the record names none")
    assign.add_argument("--from", dest="valid_from", default="0", help="epoch or ISO date (default: always)")


def handles(args: argparse.Namespace) -> bool:
    return args.command in COMMANDS and not (args.command == "invoice" and args.action not in ("list", "show", "paid")) \
        or (args.command == "card" and args.action == "assign")


def run(args: argparse.Namespace) -> int:
    import time  # noqa: PLC0415

    from backend.billing import commands  # noqa: PLC0415
    from backend.db import open_db  # noqa: PLC0415

    return commands.run(args, open_db(args.db), time.time)
