"""Billing runs: the verified sessions of a period become invoices (customers with a contract) and
per-session receipts (everyone else), each issued exactly once with a gapless number.

A run for period P (a calendar month, UTC) takes every session that started before P ended and is
on no document yet: P's own sessions and late arrivals from earlier periods (a record that arrives
after its period was billed goes on the next run, never into an issued document). Each document is
issued in its own transaction: lock the series counter, read which of its sessions are still
unbilled (a concurrent run may have taken them meanwhile), write document, lines and
`billed_sessions`, take the number. Running again issues nothing new.

Amounts: a session line bills the signed totals (net = cost.excl, VAT = cost.incl - cost.excl),
split by the VAT rates of the record's cost lines when it has several (amounts.session_parts), so
a document's totals are the sum of the signed totals minus discounts plus fees, per rate.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select, tuple_
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.billing import amounts, numbering, registry, terms
from backend.billing.amounts import Part
from backend.billing.document import Party
from backend.billing.terms import BillingError
from backend.models import (BilledSession, CardOwner, Contract, ContractVersion, Customer, Invoice, InvoiceLine,
                            Session)

log = logging.getLogger("backend.billing")
RETRIES = 8
WEEK = 7 * 86400
_MONDAY = 4 * 86400  # 1970-01-05T00:00Z was a Monday
_PERIOD = re.compile(r"([0-9]{4})-([0-9]{2})")
MINOR_UNITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}  # ISO 4217 exponents; default 2


def money(minor: int, currency: str) -> str:
    exp = MINOR_UNITS.get(currency, 2)
    sign, v = ("-" if minor < 0 else ""), abs(minor)
    return f"{sign}{v // 10**exp}.{v % 10**exp:0{exp}d} {currency}" if exp else f"{sign}{v} {currency}"


# What the billing code writes on documents, in the customer's language (Customer.language); the
# renderers' labels are pdf.LABELS. Numbers are formatted from integers (no floats in billing).
TEXTS = {
    "en": {
        "session": "Charging {ref}, {when} UTC, {kwh} kWh", "share": " (share at {rate})", "no_vat": "no VAT",
        "discount": "Discount {what}", "tier": " above {kwh} kWh/month", "on": "{rule} on {ref}",
        "late_fee": "Late-payment fee: {number}, due {date}, unpaid",
        "prepaid": "Paid from a prepaid balance: {amount}.",
        "terms": "Payable within {days} days of the invoice date.",
        "refund": "Refund {ref} of {number}",
        "returned": "{amount} returned to the prepaid balance of card ...{card}.",
        "card_refund": "{amount} refunded to the payment card of {ref}.",
        "no_account": "Card ...{card} has no prepaid account any more: {amount} not returned to a balance.",
        "auto": "Automatic refund (void or meter-fault session).",
        "date": "%Y-%m-%d", "point": ".",
    },
    "de": {
        "session": "Ladevorgang {ref}, {when} UTC, {kwh} kWh", "share": " (Anteil zu {rate})", "no_vat": "ohne USt",
        "discount": "Rabatt {what}", "tier": " ab {kwh} kWh/Monat", "on": "{rule} auf {ref}",
        "late_fee": "Mahngebühr: {number}, fällig am {date}, unbezahlt",
        "prepaid": "Aus Prepaid-Guthaben bezahlt: {amount}.",
        "terms": "Zahlbar innerhalb von {days} Tagen ab Rechnungsdatum.",
        "refund": "Erstattung {ref} aus {number}",
        "returned": "{amount} dem Prepaid-Guthaben der Karte ...{card} gutgeschrieben.",
        "card_refund": "{amount} auf die Zahlungskarte von {ref} erstattet.",
        "no_account": "Karte ...{card} hat kein Prepaid-Konto mehr: {amount} nicht auf ein Guthaben erstattet.",
        "auto": "Automatische Erstattung (ungültiger Ladevorgang oder Zählerfehler).",
        "date": "%d.%m.%Y", "point": ",",
    },
}


def say(lang: str, key: str, **values) -> str:
    """TEXTS[lang][key] filled in; an unknown language falls back to English."""
    return TEXTS.get(lang, TEXTS["en"])[key].format(**values)


def kwh(wh: int, lang: str = "en") -> str:
    """Integer Wh as kWh with three decimals: 11434 -> "11.434" ("11,434" in German)."""
    sign, wh = ("-" if wh < 0 else ""), abs(wh)
    return f"{sign}{wh // 1000}{say(lang, 'point')}{wh % 1000:03d}"


def kwh_short(wh: int, lang: str = "en") -> str:
    """Like kwh() without trailing zeros: 500000 -> "500", 1500 -> "1.5"."""
    text = kwh(wh, lang)
    return text.rstrip("0").rstrip(say(lang, "point"))


def percent(bp: int | None, lang: str = "en") -> str:
    """Basis points as a percentage: 1900 -> "19 %", 750 -> "7.5 %" ("7,5 %"); None -> no VAT."""
    if bp is None:
        return say(lang, "no_vat")
    whole, frac = divmod(abs(bp), 100)
    tail = f"{say(lang, 'point')}{frac:02d}".rstrip("0") if frac else ""
    return f"{'-' if bp < 0 else ''}{whole}{tail} %"


def money_in(minor: int, currency: str, lang: str = "en") -> str:
    """money() with the language's decimal sign (no thousands separators)."""
    text = money(minor, currency)
    return text.replace(".", ",") if say(lang, "point") == "," else text


def date_in(t: int, lang: str = "en", clock: bool = False) -> str:
    fmt = say(lang, "date") + (" %H:%M" if clock else "")
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime(fmt)


def period_bounds(period: str) -> tuple[int, int]:
    """"2026-11" -> [start, end) in epoch seconds (UTC)."""
    m = _PERIOD.fullmatch(period or "")
    if not m or not 2000 <= int(m[1]) <= 2999 or not 1 <= int(m[2]) <= 12:
        raise BillingError(f"period {period!r}: YYYY-MM expected, e.g. 2026-11")
    y, mo = int(m[1]), int(m[2])
    start = dt.datetime(y, mo, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=dt.timezone.utc)
    return int(start.timestamp()), int(end.timestamp())


def month_of(t: int) -> int:
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return int(dt.datetime(d.year, d.month, 1, tzinfo=dt.timezone.utc).timestamp())


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


@dataclass(frozen=True, order=True)
class Key:
    """One document to issue: an invoice (customer, contract, currency, cycle window) or a receipt."""

    kind: str  # invoice | receipt
    customer: str  # "" for a receipt of a card nobody owns
    contract: str
    currency: str
    window: tuple[int, int]
    session: tuple[str, int] = ("", 0)  # per-session documents


@dataclass
class Result:
    issued: list[str] = field(default_factory=list)
    credit_notes: list[str] = field(default_factory=list)


class Who:
    """Who pays for a session: contract version and customer, from the signed contract id or the
    card's owner at the session start (both loaded once per run)."""

    def __init__(self, db: DbSession):
        self.contracts = {c.id: c for c in db.scalars(select(Contract))}
        self.versions: dict[str, list[ContractVersion]] = defaultdict(list)
        for v in db.scalars(select(ContractVersion).order_by(ContractVersion.contract_id, ContractVersion.version)):
            self.versions[v.contract_id].append(v)
        self.owners: dict[str, list[CardOwner]] = defaultdict(list)
        for o in db.scalars(select(CardOwner).order_by(CardOwner.token, CardOwner.valid_from)):
            self.owners[o.token].append(o)

    def __call__(self, token: str, contract: str | None, start_t: int) -> tuple[str | None, ContractVersion | None]:
        owner = registry.owner_at(self.owners.get(token, []), start_t)
        cid = contract if contract in self.contracts else (owner.contract_id if owner else None)
        version = registry.version_at(self.versions.get(cid, []), start_t) if cid else None
        if version is not None:
            return self.contracts[cid].customer_id, version  # type: ignore[index]
        return (owner.customer_id if owner else None), None


def _window(cycle: str, t: int, start: int, end: int) -> tuple[int, int]:
    if cycle != "weekly":
        return start, end
    t = max(t, start)
    week = t - (t - _MONDAY) % WEEK
    return max(week, start), min(week + WEEK, end)


def plan(db: DbSession, start: int, end: int, customer: str | None) -> dict[Key, list[tuple[str, int, int]]]:
    """The documents this run would issue: key -> [(dev, seq, contract version)] of unbilled sessions."""
    who = Who(db)
    groups: dict[Key, list[tuple[str, int, int]]] = defaultdict(list)
    q = (select(Session.dev, Session.seq, Session.token, Session.contract, Session.start_t, Session.currency,
                Session.cost_incl)
         .outerjoin(BilledSession, and_(BilledSession.dev == Session.dev, BilledSession.seq == Session.seq))
         .where(BilledSession.dev.is_(None), Session.start_t < end))
    for dev, seq, token, contract, start_t, currency, incl in db.execute(q).yield_per(2000):
        cust, version = who(token, contract, start_t)
        if customer is not None and cust != customer:
            continue
        if version is None and incl == 0:
            continue  # nothing to pay (a void session): no receipt; under a contract it is listed on the invoice
        if version is None:
            key = Key("receipt", cust or "", "", currency, (start, end), (dev, seq))
        else:
            one = (dev, seq) if version.cycle == "per_session" else ("", 0)
            key = Key("invoice", cust or "", version.contract_id, currency, _window(version.cycle, start_t, start, end), one)
        groups[key].append((dev, seq, version.version if version else 0))
    return groups


def overdue(db: DbSession, now: int, customer: str | None, lock: bool = False, **match) -> list[Invoice]:
    """Unpaid invoices past their due date whose contract version has a late fee not charged yet."""
    q = (select(Invoice).join(ContractVersion, and_(ContractVersion.contract_id == Invoice.contract_id,
                                                    ContractVersion.version == Invoice.contract_ver))
         .where(Invoice.kind == "invoice", Invoice.paid_at.is_(None), Invoice.due_at < now,
                Invoice.late_fee_by.is_(None), ContractVersion.late_fee > 0))
    if customer is not None:
        q = q.where(Invoice.customer_id == customer)
    for k, v in match.items():
        q = q.where(getattr(Invoice, k) == v)
    q = q.order_by(Invoice.number)
    if lock:
        q = q.with_for_update(of=Invoice).execution_options(populate_existing=True)
    return list(db.scalars(q))


class Runner:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.clock = clock

    def run(self, period: str, customer: str | None = None) -> Result:
        start, end = period_bounds(period)
        now = int(self.clock())
        if now < end:
            raise BillingError(f"period {period} has not ended yet (it ends {day(end)}T00:00Z): bill it after that")
        with self.sessions() as db:
            if customer is not None:
                registry.customer(db, customer)
            registry.seller(db)
            groups = plan(db, start, end, customer)
            fees = {(i.customer_id, i.contract_id, i.currency) for i in overdue(db, now, customer)}
        # late fees go on the first invoice of their customer/contract/currency, else on one of their own
        firsts: dict[tuple, Key] = {}
        for key in sorted(groups):
            if key.kind == "invoice":
                firsts.setdefault((key.customer, key.contract, key.currency), key)
        for c, k, cur in sorted(fees, key=lambda x: tuple(v or "" for v in x)):
            if (c, k, cur) not in firsts and c is not None and k is not None:
                key = Key("invoice", c, k, cur, (start, end))
                groups[key] = []
                firsts[(c, k, cur)] = key
        result = Result()
        charge_fees = set(firsts.values())
        for key in sorted(groups):
            number = self._retry(lambda: self._issue(key, groups[key], period, start, end, key in charge_fees))
            if number is not None:
                result.issued.append(number)
        from backend.billing import refunds  # noqa: PLC0415 - refunds import this module

        result.credit_notes = refunds.Refunds(self.sessions, self.clock).apply_rules(customer)
        return result

    def _retry(self, work: Callable[[], str | None]) -> str | None:
        for attempt in range(RETRIES):
            try:
                return work()
            except (OperationalError, IntegrityError) as exc:  # a lost lock wait or a concurrent run's insert
                if attempt == RETRIES - 1:
                    raise
                log.warning("billing transaction retried (%s)", exc.orig.__class__.__name__)
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- one document -----------------------------------------------------------------------------

    def _issue(self, key: Key, members: list[tuple[str, int, int]], period: str, start: int, end: int,
               with_fees: bool) -> str | None:
        with self.sessions.begin() as db:
            now = int(self.clock())
            counter = numbering.lock(db, numbering.series(key.kind, now))
            pairs = [(d, s) for d, s, _ in members]
            rows: list[Session] = []
            if pairs:
                taken = set(tuple(r) for r in db.execute(select(BilledSession.dev, BilledSession.seq)
                                       .where(tuple_(BilledSession.dev, BilledSession.seq).in_(pairs))).all())
                todo = [p for p in pairs if p not in taken]
                if todo:
                    rows = list(db.scalars(select(Session).where(tuple_(Session.dev, Session.seq).in_(todo))))
            rows.sort(key=lambda s: (s.start_t, s.dev, s.seq))
            ver_of = {(d, s): v for d, s, v in members}
            late = overdue(db, now, key.customer, lock=True, contract_id=key.contract, currency=key.currency) \
                if with_fees and key.kind == "invoice" else []
            if not rows and not late:
                return None
            doc = _Builder(db, key, rows, ver_of, now)
            doc.sessions()
            doc.invoice_discounts()
            doc.fees(late)
            seq, number = numbering.take(counter)
            doc.write(number, seq, counter.series, period, start, end, late)
            log.info("issued %s: %d sessions, %s", number, len(rows), money(doc.total, key.currency))
            return number


@dataclass
class _Line:
    kind: str
    description: str
    part: Part
    session: Session | None = None
    main: bool = False


class _Builder:
    """The lines of one document and what it charges per session (for refunds)."""

    def __init__(self, db: DbSession, key: Key, rows: list[Session], ver_of: dict, now: int):
        self.db, self.key, self.rows, self.ver_of, self.now = db, key, rows, ver_of, now
        self.lines: list[_Line] = []
        self.left: dict[tuple[str, int], list[Part]] = {}  # per session: its parts after its discounts
        self.versions = {v.version: v for v in registry.versions(db, key.contract)} if key.contract else {}
        self.version = self._invoice_version()
        cust = db.get(Customer, key.customer) if key.customer else None
        self.lang = cust.language if cust is not None else "en"

    def _invoice_version(self) -> ContractVersion | None:
        """Invoice-wide terms (payment days, per-invoice discounts): the version of the latest session."""
        if not self.versions:
            return None
        if self.rows:
            return self.versions[self.ver_of[(self.rows[-1].dev, self.rows[-1].seq)]]
        return registry.version_at(list(self.versions.values()), self.now) or self.versions[max(self.versions)]

    def _billed_energy(self, month: int) -> int:
        """Energy of this contract's sessions on earlier documents, started in a calendar month."""
        nxt = month_of(month + 32 * 86400)
        return self.db.scalar(
            select(func.coalesce(func.sum(Session.energy_wh), 0)).select_from(BilledSession)
            .join(Session, and_(Session.dev == BilledSession.dev, Session.seq == BilledSession.seq))
            .join(Invoice, Invoice.number == BilledSession.invoice)
            .where(Invoice.contract_id == self.key.contract, Session.start_t >= month, Session.start_t < nxt)) or 0

    def sessions(self) -> None:
        earlier: dict[int, int] = {}  # month -> energy on earlier documents (queried only for a volume tier)
        here: dict[int, int] = defaultdict(int)  # month -> energy of this document's sessions so far
        for s in self.rows:
            parts = amounts.session_parts(s.payload, s.cost_excl, s.cost_incl)
            lang, ref = self.lang, f"{s.dev} #{s.seq}"
            label = say(lang, "session", ref=ref, when=date_in(s.start_t, lang, clock=True), kwh=kwh(s.energy_wh, lang))
            for i, p in enumerate(parts):
                extra = "" if i == 0 else say(lang, "share", rate=percent(p.vat_bp, lang))
                self.lines.append(_Line("session", label + extra, p, s, main=i == 0))
            if self.key.kind == "invoice":
                version = self.versions[self.ver_of[(s.dev, s.seq)]]
                rules = [r for r in json.loads(version.discounts) if r["per"] == "session"]
                month = month_of(s.start_t)
                used = 0
                if any(r["above_wh"] for r in rules):
                    if month not in earlier:
                        earlier[month] = self._billed_energy(month)
                    used = earlier[month] + here[month]
                here[month] += s.energy_wh
                for rule in rules:
                    if used < rule["above_wh"]:
                        continue
                    off = amounts.percent_off(parts, rule["value"]) if rule["type"] == "percent" \
                        else amounts.fixed_off(parts, rule["value"])
                    for d in off:
                        if d.net or d.tax:
                            self.lines.append(_Line("discount", say(lang, "on", rule=_rule(rule, self.key.currency, lang),
                                                                     ref=ref), d, s))
                    parts = [Part(p.vat_bp, p.net + d.net, p.tax + d.tax) for p, d in zip(parts, off)]
            self.left[(s.dev, s.seq)] = parts

    def invoice_discounts(self) -> None:
        if self.version is None or not self.rows:
            return
        total_wh = sum(s.energy_wh for s in self.rows)
        for rule in json.loads(self.version.discounts):
            if rule["per"] != "invoice" or total_wh < rule["above_wh"]:
                continue
            base = amounts.by_rate([p for parts in self.left.values() for p in parts])
            rates = sorted(base, key=lambda r: -1 if r is None else r)
            bases = [base[r] for r in rates]
            off = amounts.percent_off(bases, rule["value"]) if rule["type"] == "percent" \
                else amounts.fixed_off(bases, rule["value"])
            for d in off:
                if not (d.net or d.tax):
                    continue
                self.lines.append(_Line("discount", _rule(rule, self.key.currency, self.lang), d))
            self._shrink(off)  # each session carries its share (refunds never exceed it); later rules see the rest

    def _shrink(self, off: list[Part]) -> None:
        """Take an invoice-wide discount off the per-session parts, so a next rule sees what is left."""
        for d in off:
            keys = [k for k in self.left if any(p.vat_bp == d.vat_bp for p in self.left[k])]
            nets = amounts.split(-d.net, [max(0, sum(p.net for p in self.left[k] if p.vat_bp == d.vat_bp)) for k in keys])
            taxes = amounts.split(-d.tax, [max(0, sum(p.tax for p in self.left[k] if p.vat_bp == d.vat_bp)) for k in keys])
            for k, n, t in zip(keys, nets, taxes):
                parts, done = [], False
                for p in self.left[k]:
                    if p.vat_bp == d.vat_bp and not done:
                        p, done = Part(p.vat_bp, p.net - n, p.tax - t), True
                    parts.append(p)
                self.left[k] = parts

    def fees(self, late: list[Invoice]) -> None:
        for inv in late:
            version = self.db.get(ContractVersion, (inv.contract_id, inv.contract_ver))
            fee = version.late_fee if version is not None else 0
            if fee > 0:  # a fee is not a supply: no VAT (docs/billing-runs.md)
                text = say(self.lang, "late_fee", number=inv.number, date=date_in(inv.due_at, self.lang))
                self.lines.append(_Line("fee", text, Part(None, fee, 0)))

    @property
    def total(self) -> int:
        return sum(x.part.gross for x in self.lines)

    def write(self, number: str, seq: int, series: str, period: str, start: int, end: int, late: list[Invoice]) -> None:
        db, key = self.db, self.key
        cust = db.get(Customer, key.customer) if key.customer else None
        buyer = registry.customer_party(cust) if cust else _anonymous(self.rows[0].token)
        # the service period: the cycle window, from an earlier day when a late session is on it
        first = min((s.start_t for s in self.rows), default=key.window[0])
        p_start, p_end = min(key.window[0], first - first % 86400), key.window[1]
        if key.session != ("", 0) and self.rows:
            s = self.rows[0]
            p_start, p_end = s.start_t - s.start_t % 86400, s.stop_t - s.stop_t % 86400 + 86400
        days = self.version.payment_days if self.version is not None else None
        prepaid = sum(s.charged for s in self.rows)
        note = say(self.lang, "prepaid", amount=money_in(prepaid, key.currency, self.lang)) if prepaid else ""
        db.add(Invoice(
            number=number, kind=key.kind, series=series, seq=seq, customer_id=cust.id if cust else None,
            contract_id=key.contract or None, contract_ver=self.version.version if self.version else None,
            currency=key.currency, issued_at=self.now, period_start=p_start, period_end=p_end,
            due_at=self.now + days * 86400 if key.kind == "invoice" and days is not None else None,
            billing_period=period, refers_to=None, buyer=terms.party_json(buyer),
            seller=terms.party_json(registry.seller(db)), language=self.lang,
            total_net=sum(x.part.net for x in self.lines), total_tax=sum(x.part.tax for x in self.lines), note=note,
            payment_terms=say(self.lang, "terms", days=days) if key.kind == "invoice" and days is not None else "",
            paid_at=self.now if prepaid and prepaid >= self.total else None,  # the prepaid balance paid it all
            late_fee_by=None))
        db.flush()  # the document row before the rows that point at it
        for pos, x in enumerate(self.lines, start=1):
            s = x.session
            db.add(InvoiceLine(invoice=number, pos=pos, kind=x.kind, description=x.description[:255], net=x.part.net,
                               vat_bp=x.part.vat_bp, tax=x.part.tax, dev=s.dev if s else None, seq=s.seq if s else None,
                               record_hash=s.hash if s else None, main=x.main))
        for s in self.rows:
            k = (s.dev, s.seq)
            charged = sum(p.gross for p in self.left[k])
            db.add(BilledSession(dev=s.dev, seq=s.seq, invoice=number, amount=max(0, charged), refunded=0))
        for inv in late:
            inv.late_fee_by = number


def _rule(rule: dict, currency: str, lang: str = "en") -> str:
    what = percent(rule["value"], lang) if rule["type"] == "percent" else money_in(rule["value"], currency, lang)
    tier = say(lang, "tier", kwh=kwh_short(rule["above_wh"], lang)) if rule["above_wh"] else ""
    return say(lang, "discount", what=what) + tier


def _anonymous(token: str) -> Party:
    return Party(name=f"Driver, card ...{token[-8:]}")


def mark_paid(sessions: sessionmaker, number: str, at: int) -> Invoice:
    """Record that an invoice was paid (no late fee is charged for it from then on)."""
    with sessions.begin() as db:
        inv = db.get(Invoice, number, with_for_update=True)
        if inv is None or inv.kind != "invoice":
            raise BillingError(f"no invoice {number!r}")
        if inv.paid_at is not None:
            raise BillingError(f"{number} is marked paid already (at {inv.paid_at})")
        if at < inv.issued_at:
            raise BillingError(f"{number} cannot be paid before it was issued ({day(inv.issued_at)})")
        inv.paid_at = at
    return inv
