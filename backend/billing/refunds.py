"""Refunds: a credit note (series CN, gapless) that references the invoice or receipt and the
sessions it credits.

A session can be credited up to what its document charged for it (billed_sessions.amount: its
signed total after its discounts) minus what was credited before. The document's row is locked
FOR UPDATE first, then its billed sessions: two refunds of one document run one after the other,
and the second sees what the first credited. For a prepaid card (the session was taken from its
balance, sessions.charged) the credited amount returns to the card's balance, up to what was
taken, in the same transaction; the next card-list push carries the new balance to the chargers.

Automatic rules the operator switches on (billing auto-refund): sessions flagged `void`, and
sessions with `meter-fault` (flag or stop reason), are credited in full once billed.
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import sessionmaker

from backend.billing import amounts, numbering, registry
from backend.billing.runs import RETRIES, money, money_in, say
from backend.billing.terms import BillingError
from backend.models import BilledSession, Card, Invoice, InvoiceLine, Session

log = logging.getLogger("backend.billing")
SessionId = tuple[str, int]


def parse_session(text: str) -> SessionId:
    """DEV:SEQ -> (dev, seq)."""
    dev, sep, seq = (text or "").rpartition(":")
    if not sep or not dev or not seq.isdigit() or not 0 < int(seq) < 2**63:
        raise BillingError(f"session {text!r}: DEV:SEQ expected, e.g. evc-a1:17")
    return dev, int(seq)


class Refunds:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.clock = clock

    def refund(self, number: str, only: list[SessionId] | None = None, amount: int | None = None, note: str = "",
               auto: bool = False) -> str:
        """Credit `amount` (gross, minor units) of the one session named (or of the document's only
        session), or without amount everything still creditable of the sessions named (all of
        the document's when none are). Returns the credit note's number. auto: an automatic rule's
        refund (its note in the document's language)."""
        if amount is not None and (type(amount) is not int or amount <= 0):
            raise BillingError(f"refund amount {amount!r}: a positive whole number of minor units")
        for attempt in range(RETRIES):
            try:
                return self._refund(number, only, amount, note, auto)
            except (OperationalError, IntegrityError) as exc:
                if attempt == RETRIES - 1:
                    raise
                log.warning("refund transaction retried (%s)", exc.orig.__class__.__name__)
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    def _refund(self, number: str, only: list[SessionId] | None, amount: int | None, note: str, auto: bool = False) -> str:
        with self.sessions.begin() as db:
            doc = db.execute(select(Invoice).where(Invoice.number == number).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one_or_none()
            if doc is None:
                raise BillingError(f"no invoice or receipt {number!r}")
            if doc.kind == "credit_note":
                raise BillingError(f"{number} is a credit note: refund the invoice or receipt it corrects")
            billed = {(b.dev, b.seq): b for b in db.scalars(
                select(BilledSession).where(BilledSession.invoice == number)
                .order_by(BilledSession.dev, BilledSession.seq).with_for_update().execution_options(populate_existing=True))}
            if not billed:
                raise BillingError(f"{number} bills no session: nothing to refund")
            targets = list(billed) if not only else list(dict.fromkeys(only))  # a session named twice is one
            for sid in targets:
                if sid not in billed:
                    raise BillingError(f"session {sid[0]}:{sid[1]} is not on {number}")
            if amount is not None:
                if len(targets) != 1:
                    raise BillingError(f"{number} bills {len(targets)} sessions: name one with --session DEV:SEQ to refund an amount")
                b = billed[targets[0]]
                left = b.amount - b.refunded
                if amount > left:
                    raise BillingError(f"refund of {money(amount, doc.currency)} for {b.dev}:{b.seq} exceeds what is left: "
                                       f"{money(left, doc.currency)} (charged {money(b.amount, doc.currency)}, "
                                       f"refunded {money(b.refunded, doc.currency)})")
                plan = [(b, amount)]
            else:
                plan = [(billed[t], billed[t].amount - billed[t].refunded) for t in targets]
                plan = [(b, g) for b, g in plan if g > 0]
                if not plan:
                    raise BillingError(f"everything charged for these sessions on {number} is refunded already")
            now = int(self.clock())
            counter = numbering.lock(db, numbering.series("credit_note", now))
            lines, notes = self._lines(db, number, plan, doc.currency, doc.language)
            if auto:
                note = say(doc.language, "auto")
            seq, cn = numbering.take(counter)
            db.add(Invoice(
                number=cn, kind="credit_note", series=counter.series, seq=seq, customer_id=doc.customer_id,
                contract_id=doc.contract_id, contract_ver=doc.contract_ver, currency=doc.currency, issued_at=now,
                period_start=doc.period_start, period_end=doc.period_end, due_at=None, billing_period="",
                refers_to=number, buyer=doc.buyer, seller=doc.seller, language=doc.language,
                total_net=sum(x.net for x in lines), total_tax=sum(x.tax for x in lines),
                note=" ".join(x for x in [note.strip()[:500], *notes] if x), payment_terms="", paid_at=None, late_fee_by=None))
            db.flush()
            for pos, x in enumerate(lines, start=1):
                x.invoice, x.pos = cn, pos
                db.add(x)
            log.info("issued %s for %s: %s", cn, number, money(sum(x.net + x.tax for x in lines), doc.currency))
            return cn

    def _lines(self, db, number: str, plan: list[tuple[BilledSession, int]], currency: str,
               lang: str = "en") -> tuple[list[InvoiceLine], list[str]]:
        lines: list[InvoiceLine] = []
        notes: list[str] = []
        returned: dict[str, int] = defaultdict(int)
        for b, gross in plan:
            s = db.get(Session, (b.dev, b.seq))
            # the refund splits over the VAT rates as the document charged this session
            weights: dict[int | None, int] = defaultdict(int)
            for line in db.scalars(select(InvoiceLine).where(InvoiceLine.invoice == number, InvoiceLine.dev == b.dev,
                                                             InvoiceLine.seq == b.seq)):
                weights[line.vat_bp] += line.net + line.tax
            rates = sorted(weights, key=lambda r: -weights[r])
            shares = amounts.split(gross, [max(0, weights[r]) for r in rates])
            for i, (rate, g) in enumerate(zip(rates, shares)):
                if g == 0 and i:
                    continue
                net = amounts.net_of_gross(g, rate)
                lines.append(InvoiceLine(kind="refund", description=say(lang, "refund", ref=f"{s.dev} #{s.seq}", number=number)[:255],
                                         net=-net, vat_bp=rate, tax=-(g - net), dev=s.dev, seq=s.seq,
                                         record_hash=s.hash, main=i == 0))
            before = b.refunded
            b.refunded += gross
            if s.auth == "adhoc":  # paid by card through a gateway hold: the card gets it back, in this transaction
                from backend.payments.service import PaymentError, queue_refund

                try:
                    queued = queue_refund(db, s.dev, s.seq, gross, int(self.clock()))
                except PaymentError as exc:  # e.g. refunded at the gateway already (pay refund)
                    raise BillingError(str(exc)) from None
                if queued is not None:
                    notes.append(say(lang, "card_refund", ref=f"{s.dev} #{s.seq}",
                                     amount=money_in(gross, currency, lang)))
            back = min(b.refunded, s.charged) - min(before, s.charged)
            if back > 0:
                returned[s.token] += back
        for token in sorted(returned):
            card = db.get(Card, token, with_for_update=True)
            if card is None or card.balance is None:
                notes.append(say(lang, "no_account", card=token[-8:], amount=money_in(returned[token], currency, lang)))
                continue
            card.balance += returned[token]
            card.updated_at = int(self.clock())
            notes.append(say(lang, "returned", card=token[-8:], amount=money_in(returned[token], currency, lang)))
        return lines, notes

    # -- automatic rules ----------------------------------------------------------------------------

    def candidates(self, customer: str | None = None) -> dict[str, list[SessionId]]:
        """Billed sessions the switched-on rules credit, not yet credited in full: document -> sessions."""
        with self.sessions() as db:
            rules = registry.auto_refund(db)
            if not (rules.get("void") or rules.get("meter_fault")):
                return {}
            q = (select(BilledSession.invoice, Session.dev, Session.seq, Session.flags, Session.stop_reason)
                 .join(Session, and_(Session.dev == BilledSession.dev, Session.seq == BilledSession.seq))
                 .join(Invoice, Invoice.number == BilledSession.invoice)
                 .where(BilledSession.refunded < BilledSession.amount,
                        or_(Session.flags.contains("void"), Session.flags.contains("meter-fault"),
                            Session.stop_reason == "meter-fault")))
            if customer is not None:
                q = q.where(Invoice.customer_id == customer)
            out: dict[str, list[SessionId]] = defaultdict(list)
            for number, dev, seq, flags, reason in db.execute(q.order_by(BilledSession.invoice, Session.dev, Session.seq)):
                f = set(flags.split(","))
                if (rules.get("void") and "void" in f) or (rules.get("meter_fault") and ("meter-fault" in f or reason == "meter-fault")):
                    out[number].append((dev, seq))
            return dict(out)

    def apply_rules(self, customer: str | None = None) -> list[str]:
        issued = []
        for number, sids in self.candidates(customer).items():
            try:
                issued.append(self.refund(number, sids, auto=True))
            except BillingError as exc:  # a concurrent refund took it first
                log.info("automatic refund of %s skipped: %s", number, exc)
        return issued
