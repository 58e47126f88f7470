"""Billing runs: the verified sessions of a period become invoices (customers with a contract) and
per-session receipts (everyone else), each issued exactly once with a gapless number.

A run for period P (a calendar month, UTC) takes every session that started before P ended and is
on no document yet: P's own sessions and late arrivals from earlier periods (a record that arrives
after its period was billed goes on the next run, never into an issued document). The documents
are issued in order, in batches of up to BATCH_DOCS documents / BATCH_SESSIONS sessions, each batch
in one transaction: lock the series counters, read which of its sessions are still unbilled (a
concurrent run may have taken them meanwhile), build the documents, write documents, lines and
`billed_sessions` with a few bulk statements, take the numbers. Running again issues nothing new.

Scale: a run issues a bounded number of statements per batch, never per session or per document:
plan() reads the unbilled sessions in one query; per batch one VALUES join on the primary keys
(PAIRS_PER_QUERY pairs each), one query each for customers, contract versions, overdue invoices and
the energy billed per contract and month (volume tiers), three executemany inserts and one commit.
A billing run holds the write lock of a SQLite database for one batch at a time (a few tenths of a
second at 200 documents), so ingest goes on between batches.

Amounts: a session line bills the signed totals (net = cost.excl, VAT = cost.incl - cost.excl),
split by the VAT rates of the record's cost lines when it has several (amounts.session_parts), so
a document's totals are the sum of the signed totals minus discounts plus fees, per rate.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlalchemy import (BigInteger, Row, Select, String, and_, bindparam, case, column, func, insert, literal_column,
                        or_, select, update, values)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.billing import amounts, numbering, registry, terms
from backend.billing.amounts import Part
from backend.billing.document import Party
from backend.billing.terms import BillingError
from backend.models import (BilledSession, CardOwner, Contract, ContractVersion, Customer, Invoice, InvoiceLine,
                            Payment, Session)

log = logging.getLogger("backend.billing")
RETRIES = 8
BATCH_DOCS = 200  # documents per transaction (a billing run issues them in batches)
BATCH_SESSIONS = 2000  # sessions per transaction; a document with more goes alone
PAIRS_PER_QUERY = 1024  # (dev, seq) pairs (or ids) per SELECT
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
        "card_paid": "Paid by card through {gateway} (payment {ref}): {amount}.",
        "over_hold": "Above the card hold on {ref}: not charged",
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
        "card_paid": "Mit Karte über {gateway} bezahlt (Zahlung {ref}): {amount}.",
        "over_hold": "Über der Kartenreservierung bei {ref}: nicht berechnet",
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


def overdue(db: DbSession, now: int, customer: str | None, lock: bool = False, customers: list[str] | None = None,
            **match) -> list[Invoice]:
    """Unpaid invoices past their due date whose contract version has a late fee not charged yet
    (of one customer, or of the customers listed)."""
    q = (select(Invoice).join(ContractVersion, and_(ContractVersion.contract_id == Invoice.contract_id,
                                                    ContractVersion.version == Invoice.contract_ver))
         .where(Invoice.kind == "invoice", Invoice.paid_at.is_(None), Invoice.due_at < now,
                Invoice.late_fee_by.is_(None), ContractVersion.late_fee > 0))
    if customer is not None:
        q = q.where(Invoice.customer_id == customer)
    if customers is not None:
        q = q.where(Invoice.customer_id.in_(customers))
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
        for batch in batches(sorted(groups), groups):
            result.issued += self._retry(lambda: self._issue(batch, groups, period, start, end, charge_fees))
        from backend.billing import refunds  # noqa: PLC0415 - refunds import this module

        result.credit_notes = refunds.Refunds(self.sessions, self.clock).apply_rules(customer)
        return result

    def receipt_for(self, dev: str, seq: int) -> str | None:
        """The number of the document that bills session (dev, seq). A session under no contract and
        on no document yet gets its receipt now, from the receipt series, as the period's run would
        issue it (a driver who paid by card asks right after the capture; the run then finds it
        billed): one number per session, whoever asks first. None: nothing to pay, or the session
        goes on its contract's invoice, which the period's run issues."""
        for _ in range(3):  # again when a concurrent run or request billed it meanwhile
            with self.sessions() as db:
                billed = db.get(BilledSession, (dev, seq))
                if billed is not None:
                    return billed.invoice
                s = db.get(Session, (dev, seq))
                if s is None:
                    raise BillingError(f"no stored session {dev} #{seq}")
                cust, version = Who(db)(s.token, s.contract, s.start_t)
                if version is not None or s.cost_incl == 0:
                    return None
                registry.seller(db)
                period = dt.datetime.fromtimestamp(s.start_t, dt.timezone.utc).strftime("%Y-%m")
                start, end = period_bounds(period)
                key = Key("receipt", cust or "", "", s.currency, (start, end), (dev, seq))
            groups = {key: [(dev, seq, 0)]}
            issued = self._retry(lambda: self._issue([key], groups, period, start, end, set()))
            if issued:
                return issued[0]
        raise BillingError(f"session {dev} #{seq}: no document after three tries")

    def _retry(self, work: Callable[[], list[str]]) -> list[str]:
        for attempt in range(RETRIES):
            try:
                return work()
            except (OperationalError, IntegrityError) as exc:  # a lost lock wait or a concurrent run's insert
                if attempt == RETRIES - 1:
                    raise
                log.warning("billing transaction retried (%s)", exc.orig.__class__.__name__)
                time.sleep(0.02 * (attempt + 1))
        raise AssertionError("unreachable")

    # -- one transaction: a batch of documents ----------------------------------------------------

    def _issue(self, keys: list[Key], groups: dict[Key, list[tuple[str, int, int]]], period: str, start: int,
               end: int, charge_fees: set[Key]) -> list[str]:
        """Issue the documents of `keys` (in this order) in one transaction: lock the series counters,
        read which of their sessions are still unbilled, build every document, write them all with
        a few bulk statements, take the numbers. Returns the numbers issued."""
        with self.sessions.begin() as db:
            now = int(self.clock())
            counters = {kind: numbering.lock(db, numbering.series(kind, now))  # always INV before RC
                        for kind in sorted({k.kind for k in keys}, key=lambda k: numbering.series(k, now))}
            rows = unbilled(db, [(d, s) for k in keys for d, s, _ in groups[k]])
            fee_keys = {k for k in keys if k in charge_fees and k.kind == "invoice"}
            ctx = _Batch(db, keys, rows, groups, fee_keys, now)
            issued = []
            for key in keys:
                members = groups[key]
                mine = sorted((rows[(d, s)] for d, s, _ in members if (d, s) in rows),
                              key=lambda s: (s.start_t, s.dev, s.seq))
                late = ctx.late.get((key.customer, key.contract, key.currency), []) if key in fee_keys else []
                if not mine and not late:
                    continue
                doc = _Builder(ctx, key, mine, {(d, s): v for d, s, v in members}, now)
                doc.sessions()
                doc.invoice_discounts()
                doc.fees(late)
                seq, number = numbering.take(counters[key.kind])
                doc.write(number, seq, counters[key.kind].series, period, start, end, late)
                issued.append(number)
                log.info("issued %s: %d sessions, %s", number, len(mine), money(doc.total, key.currency))
            ctx.flush()
            return issued


def batches(keys: list[Key], groups: dict[Key, list]) -> Iterator[list[Key]]:
    """The documents in issue order, cut into transactions of at most BATCH_DOCS documents and
    BATCH_SESSIONS sessions (a bigger document goes alone)."""
    batch: list[Key] = []
    size = 0
    for key in keys:
        n = len(groups[key])
        if batch and (len(batch) >= BATCH_DOCS or size + n > BATCH_SESSIONS):
            yield batch
            batch, size = [], 0
        batch.append(key)
        size += n
    if batch:
        yield batch


# the columns of a session that billing reads (not the raw JWS and OCMF string)
_BILLED_COLUMNS = (Session.dev, Session.seq, Session.hash, Session.token, Session.auth, Session.start_t,
                   Session.stop_t, Session.energy_wh, Session.cost_excl, Session.cost_incl, Session.payload,
                   Session.charged)


def unbilled(db: DbSession, pairs: list[tuple[str, int]]) -> dict[tuple[str, int], Row]:
    """The sessions of `pairs` that are on no document: (dev, seq) -> row of _BILLED_COLUMNS. A join
    of the pairs (a VALUES list) with the primary keys, at most PAIRS_PER_QUERY at a time: each pair
    is an index lookup (SQLite scans the whole table for `(dev, seq) IN (VALUES ...)`)."""
    out: dict[tuple[str, int], Row] = {}
    for part in _chunks(pairs):
        size = min(PAIRS_PER_QUERY, 1 << (len(part) - 1).bit_length())  # a few statement sizes, compiled once each
        part = part + [part[0]] * (size - len(part))  # padded with a pair already asked for
        params = {}
        for i, (dev, seq) in enumerate(part):
            params[f"d{i}"], params[f"s{i}"] = dev, seq
        for r in db.execute(_unbilled_query(size), params):
            out[(r.dev, r.seq)] = r
    return out


@functools.lru_cache(maxsize=None)
def _unbilled_query(size: int) -> Select:
    """unbilled()'s statement for `size` pairs, bound as d0, s0, d1, s1, ...: the same statement for
    every batch, so SQLAlchemy compiles it once (building a VALUES list of literals compiles every time)."""
    want = values(column("dev", String), column("seq", BigInteger), name="want").data(
        [(bindparam(f"d{i}", type_=String), bindparam(f"s{i}", type_=BigInteger)) for i in range(size)]).cte("want")
    return (select(*_BILLED_COLUMNS).select_from(want)
            .join(Session, and_(Session.dev == want.c.dev, Session.seq == want.c.seq))
            .outerjoin(BilledSession, and_(BilledSession.dev == Session.dev, BilledSession.seq == Session.seq))
            .where(BilledSession.dev.is_(None)))


def _chunks(items: list, n: int | None = None) -> Iterator[list]:
    n = n or PAIRS_PER_QUERY
    for i in range(0, len(items), n):
        yield items[i:i + n]


class _Batch:
    """What the documents of one transaction share, read with one query each: customers, contract
    versions, the seller, the overdue invoices whose late fees they charge, the energy already
    billed per contract and month (volume tiers); and the rows they write, inserted in bulk."""

    def __init__(self, db: DbSession, keys: list[Key], rows: dict, groups: dict, fee_keys: set[Key], now: int):
        self.db = db
        cids = sorted({k.customer for k in keys if k.customer})
        self.customers = {c.id: c for part in _chunks(cids)
                          for c in db.scalars(select(Customer).where(Customer.id.in_(part)))}
        contracts = sorted({k.contract for k in keys if k.contract})
        self.versions: dict[str, dict[int, ContractVersion]] = defaultdict(dict)
        for part in _chunks(contracts):
            for v in db.scalars(select(ContractVersion).where(ContractVersion.contract_id.in_(part))
                                .order_by(ContractVersion.contract_id, ContractVersion.version)):
                self.versions[v.contract_id][v.version] = v
        self.rules = {(v.contract_id, v.version): json.loads(v.discounts)
                      for vs in self.versions.values() for v in vs.values()}
        self.seller = terms.party_json(registry.seller(db))
        self.late: dict[tuple, list[Invoice]] = defaultdict(list)
        fee_customers = sorted({k.customer for k in fee_keys})
        for part in _chunks(fee_customers):
            for inv in overdue(db, now, None, lock=True, customers=part):
                self.late[(inv.customer_id, inv.contract_id, inv.currency)].append(inv)
        # energy of earlier documents per (contract, month): of contracts with a volume tier, in the
        # months of this batch's sessions; documents of this batch are added as they are built
        tiered = {c for (c, _), rules in self.rules.items()
                  if any(r["above_wh"] for r in rules if r["per"] == "session")}
        months = {month_of(rows[(d, s)].start_t) for k in keys if k.contract in tiered
                  for d, s, _ in groups[k] if (d, s) in rows}
        self.energy = _billed_energy(db, sorted(tiered), sorted(months))
        # the card payments of ad-hoc sessions (the record's token is the payment's id): their
        # receipts say so, are paid, and never charge more than the card was
        ids = sorted({r.token for r in rows.values() if r.auth == "adhoc"})
        self.payments = {p.id: p for part in _chunks(ids)
                         for p in db.scalars(select(Payment).where(Payment.id.in_(part), Payment.state == "captured"))}
        self.invoices: list[dict] = []
        self.lines: list[dict] = []
        self.billed: list[dict] = []
        self.fee_marks: list[dict] = []

    def version(self, contract: str, version: int) -> ContractVersion | None:
        v = self.versions.get(contract, {}).get(version)
        return v if v is not None else self.db.get(ContractVersion, (contract, version))

    def flush(self) -> None:
        """Write the batch: documents first (lines and billed sessions point at them)."""
        db = self.db  # Core executemany on the tables (the ORM's bulk insert splits at every None)
        for model, rows in ((Invoice, self.invoices), (InvoiceLine, self.lines), (BilledSession, self.billed)):
            for part in _chunks(rows, 5000):
                db.execute(insert(model.__table__), part)
        if self.fee_marks:
            t = Invoice.__table__
            db.execute(update(t).where(t.c.number == bindparam("b_number")).values(late_fee_by=bindparam("b_by")),
                       self.fee_marks)


def _billed_energy(db: DbSession, contracts: list[str], months: list[int]) -> dict[tuple[str, int], int]:
    """(contract, month) -> energy of the contract's sessions on issued documents that started in
    that calendar month: one grouped query (invoices by contract, their billed sessions, those)."""
    out: dict[tuple[str, int], int] = defaultdict(int)
    if not contracts or not months:
        return out
    spans = [(m, month_of(m + 32 * 86400)) for m in months]
    which = case(*[(and_(Session.start_t >= a, Session.start_t < b), literal_column(str(int(a)))) for a, b in spans])
    for part in _chunks(contracts):
        inner = (select(Invoice.contract_id.label("contract"), which.label("month"), Session.energy_wh.label("wh"))
                 .select_from(Invoice)
                 .join(BilledSession, BilledSession.invoice == Invoice.number)
                 .join(Session, and_(Session.dev == BilledSession.dev, Session.seq == BilledSession.seq))
                 .where(Invoice.contract_id.in_(part),
                        or_(*[and_(Session.start_t >= a, Session.start_t < b) for a, b in spans]))).subquery()
        q = select(inner.c.contract, inner.c.month, func.sum(inner.c.wh)).group_by(inner.c.contract, inner.c.month)
        for contract, month, wh in db.execute(q):
            out[(contract, int(month))] += int(wh or 0)
    return out


@dataclass
class _Line:
    kind: str
    description: str
    part: Part
    session: Row | None = None
    main: bool = False


class _Builder:
    """The lines of one document and what it charges per session (for refunds)."""

    def __init__(self, ctx: _Batch, key: Key, rows: list[Row], ver_of: dict, now: int):
        self.ctx, self.key, self.rows, self.ver_of, self.now = ctx, key, rows, ver_of, now
        self.lines: list[_Line] = []
        self.left: dict[tuple[str, int], list[Part]] = {}  # per session: its parts after its discounts
        self.versions = dict(ctx.versions.get(key.contract, {})) if key.contract else {}
        self.version = self._invoice_version()
        self.cust = ctx.customers.get(key.customer) if key.customer else None
        self.lang = self.cust.language if self.cust is not None else "en"

    def _invoice_version(self) -> ContractVersion | None:
        """Invoice-wide terms (payment days, per-invoice discounts): the version of the latest session."""
        if not self.versions:
            return None
        if self.rows:
            return self.versions[self.ver_of[(self.rows[-1].dev, self.rows[-1].seq)]]
        return registry.version_at(list(self.versions.values()), self.now) or self.versions[max(self.versions)]

    def sessions(self) -> None:
        earlier: dict[int, int] = {}  # month -> energy on earlier documents (read only for a volume tier)
        here: dict[int, int] = defaultdict(int)  # month -> energy of this document's sessions so far
        for s in self.rows:
            parts = amounts.session_parts(s.payload, s.cost_excl, s.cost_incl)
            lang, ref = self.lang, f"{s.dev} #{s.seq}"
            label = say(lang, "session", ref=ref, when=date_in(s.start_t, lang, clock=True), kwh=kwh(s.energy_wh, lang))
            for i, p in enumerate(parts):
                extra = "" if i == 0 else say(lang, "share", rate=percent(p.vat_bp, lang))
                self.lines.append(_Line("session", label + extra, p, s, main=i == 0))
            paid = self.ctx.payments.get(s.token) if s.auth == "adhoc" else None
            if paid is not None and paid.captured < s.cost_incl:
                # above the card hold (the charger stops before it): the driver is not charged for it
                off = amounts.gross_off(parts, s.cost_incl - paid.captured)
                for d in off:
                    if d.net or d.tax:
                        self.lines.append(_Line("discount", say(lang, "over_hold", ref=ref), d, s))
                parts = [Part(p.vat_bp, p.net + d.net, p.tax + d.tax) for p, d in zip(parts, off)]
            if self.key.kind == "invoice":
                ver = self.ver_of[(s.dev, s.seq)]
                rules = [r for r in self.ctx.rules[(self.key.contract, ver)] if r["per"] == "session"]
                month = month_of(s.start_t)
                used = 0
                if any(r["above_wh"] for r in rules):
                    if month not in earlier:
                        earlier[month] = self.ctx.energy[(self.key.contract, month)]
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
        for rule in self.ctx.rules[(self.version.contract_id, self.version.version)]:
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
            version = self.ctx.version(inv.contract_id, inv.contract_ver)
            fee = version.late_fee if version is not None else 0
            if fee > 0:  # a fee is not a supply: no VAT (docs/billing-runs.md)
                text = say(self.lang, "late_fee", number=inv.number, date=date_in(inv.due_at, self.lang))
                self.lines.append(_Line("fee", text, Part(None, fee, 0)))

    @property
    def total(self) -> int:
        return sum(x.part.gross for x in self.lines)

    def write(self, number: str, seq: int, series: str, period: str, start: int, end: int, late: list[Invoice]) -> None:
        """The document's rows, queued in the batch (_Batch.flush inserts them)."""
        ctx, key, cust = self.ctx, self.key, self.cust
        cards = [ctx.payments[s.token] for s in self.rows if s.auth == "adhoc" and s.token in ctx.payments]
        buyer = terms.party_json(registry.customer_party(cust) if cust else
                                 Party(name="Ad-hoc payment by card") if cards else _anonymous(self.rows[0].token))
        # the service period: the cycle window, from an earlier day when a late session is on it
        first = min((s.start_t for s in self.rows), default=key.window[0])
        p_start, p_end = min(key.window[0], first - first % 86400), key.window[1]
        if key.session != ("", 0) and self.rows:
            s = self.rows[0]
            p_start, p_end = s.start_t - s.start_t % 86400, s.stop_t - s.stop_t % 86400 + 86400
        days = self.version.payment_days if self.version is not None else None
        prepaid = sum(s.charged for s in self.rows)
        note = say(self.lang, "prepaid", amount=money_in(prepaid, key.currency, self.lang)) if prepaid else ""
        if cards:  # a receipt of an ad-hoc session: paid when the gateway captured it
            note = " ".join(say(self.lang, "card_paid", gateway=p.gateway, ref=p.id,
                                amount=money_in(p.captured, key.currency, self.lang)) for p in cards)
        paid_at = self.now if prepaid and prepaid >= self.total else None  # the prepaid balance paid it all
        if cards and sum(p.captured for p in cards) >= self.total:
            paid_at = max(p.updated_at for p in cards)
        ctx.invoices.append(dict(
            number=number, kind=key.kind, series=series, seq=seq, customer_id=cust.id if cust else None,
            contract_id=key.contract or None, contract_ver=self.version.version if self.version else None,
            currency=key.currency, issued_at=self.now, period_start=p_start, period_end=p_end,
            due_at=self.now + days * 86400 if key.kind == "invoice" and days is not None else None,
            billing_period=period, refers_to=None, buyer=buyer, seller=ctx.seller, language=self.lang,
            total_net=sum(x.part.net for x in self.lines), total_tax=sum(x.part.tax for x in self.lines), note=note,
            payment_terms=say(self.lang, "terms", days=days) if key.kind == "invoice" and days is not None else "",
            paid_at=paid_at,
            late_fee_by=None))
        for pos, x in enumerate(self.lines, start=1):
            s = x.session
            ctx.lines.append(dict(invoice=number, pos=pos, kind=x.kind, description=x.description[:255], net=x.part.net,
                                  vat_bp=x.part.vat_bp, tax=x.part.tax, dev=s.dev if s else None,
                                  seq=s.seq if s else None, record_hash=s.hash if s else None, main=x.main))
        for s in self.rows:
            charged = sum(p.gross for p in self.left[(s.dev, s.seq)])
            ctx.billed.append(dict(dev=s.dev, seq=s.seq, invoice=number, amount=max(0, charged), refunded=0))
            if key.contract:  # later documents of this contract in the batch count this energy (volume tiers)
                ctx.energy[(key.contract, month_of(s.start_t))] += s.energy_wh
        for inv in late:
            ctx.fee_marks.append({"b_number": inv.number, "b_by": number})


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
