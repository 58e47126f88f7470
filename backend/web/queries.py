"""The dashboard's reads: SQL aggregations in SQLAlchemy core that run the same on SQLite and
PostgreSQL (integer arithmetic on epoch seconds for days, weeks, hours and weekdays; one small
dialect-specific function for calendar months). Times are UTC. Money in minor units, energy in Wh.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import String, and_, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from backend.models import (Anomaly, Card, CardOwner, Contract, Device, DeviceState, Invoice, InvoiceLine,
                            Pending, Session)

DAY, WEEK = 86400, 7 * 86400
MONDAY0 = 4 * DAY  # 1970-01-05, the first Monday after the epoch (a Thursday)
PAGE = 50
PERIODS = ("day", "week", "month")
FLAGS = ("void", "meter-fault", "power-loss", "time-unsynced")
S = Session.__table__.c


class month_of(FunctionElement):
    """'YYYY-MM' (UTC) of an epoch-seconds column."""
    type = String()
    inherit_cache = True


@compiles(month_of, "sqlite")
def _month_sqlite(element, compiler, **kw):
    return "strftime('%Y-%m', " + compiler.process(element.clauses, **kw) + ", 'unixepoch')"


@compiles(month_of, "postgresql")
def _month_pg(element, compiler, **kw):
    return "to_char(to_timestamp(%s) AT TIME ZONE 'UTC', 'YYYY-MM')" % compiler.process(element.clauses, **kw)


def bucket(period: str, col=S.start_t):
    """The start of the day or week (epoch s, weeks from Monday) or the month ('YYYY-MM') of col."""
    if period == "day":
        return col - col % DAY
    if period == "week":
        return col - (col - MONDAY0) % WEEK
    if period == "month":
        return month_of(col)
    raise ValueError(f"period must be one of {PERIODS}")


def _has_flag(flag: str):
    return (literal(",") + S.flags + literal(",")).like(f"%,{flag},%")


@dataclass(frozen=True)
class SessionFilter:
    dev: str | None = None
    token: str | None = None
    customer: str | None = None
    contract: str | None = None
    start: int | None = None  # start_t >= start
    end: int | None = None  # start_t < end
    flag: str | None = None

    def where(self) -> list:
        w = []
        if self.dev:
            w.append(S.dev == self.dev)
        if self.token:
            w.append(S.token == self.token)
        if self.contract:
            w.append(S.contract == self.contract)
        if self.customer:
            cards = select(CardOwner.token).where(CardOwner.customer_id == self.customer)
            contracts = select(Contract.id).where(Contract.customer_id == self.customer)
            w.append(or_(S.token.in_(cards), S.contract.in_(contracts)))
        if self.start is not None:
            w.append(S.start_t >= self.start)
        if self.end is not None:
            w.append(S.start_t < self.end)
        if self.flag:
            w.append(_has_flag(self.flag))
        return w


def sessions_page(db, f: SessionFilter, page: int = 1, size: int = PAGE) -> tuple[list, bool]:
    """One page of sessions, newest first, and whether there is a next page."""
    q = (select(S.dev, S.seq, S.token, S.contract, S.start_t, S.stop_t, S.energy_wh, S.currency, S.cost_incl,
                S.flags, S.stop_reason)
         .where(*f.where()).order_by(S.start_t.desc(), S.dev, S.seq.desc())
         .limit(size + 1).offset((max(page, 1) - 1) * size))
    rows = db.execute(q).all()
    return rows[:size], len(rows) > size


def invoice_of(db, dev: str, seq: int) -> str | None:
    return db.scalar(select(InvoiceLine.invoice).where(InvoiceLine.dev == dev, InvoiceLine.seq == seq)
                     .order_by(InvoiceLine.invoice).limit(1))


def chargers(db) -> list:
    """Every device with its reported state and its latest session's firmware."""
    last = (select(S.dev, func.max(S.seq).label("seq")).group_by(S.dev).subquery())
    pending = select(Pending.dev, func.count().label("n")).group_by(Pending.dev).subquery()
    q = (select(Device.id, Device.head_seq, DeviceState.online, DeviceState.seen_at, DeviceState.tariff_ver,
                DeviceState.list_ver, DeviceState.pushed_tariff_ver, DeviceState.pushed_list_ver,
                DeviceState.refused_reason, S.fw, func.coalesce(pending.c.n, 0).label("pending"))
         .outerjoin(DeviceState, DeviceState.dev == Device.id)
         .outerjoin(last, last.c.dev == Device.id)
         .outerjoin(Session, and_(S.dev == last.c.dev, S.seq == last.c.seq))
         .outerjoin(pending, pending.c.dev == Device.id)
         .order_by(Device.id))
    return db.execute(q).all()


def cards(db) -> list:
    owner = aliased(CardOwner)
    latest = select(func.max(CardOwner.valid_from)).where(CardOwner.token == owner.token).scalar_subquery()
    q = (select(Card.token, Card.status, Card.balance, Card.contract, Card.exp, Card.updated_at, owner.customer_id)
         .outerjoin(owner, and_(owner.token == Card.token, owner.valid_from == latest))
         .order_by(Card.token))
    return db.execute(q).all()


def invoices(db, limit: int = 500) -> list:
    q = (select(Invoice.number, Invoice.kind, Invoice.customer_id, Invoice.contract_id, Invoice.issued_at,
                Invoice.currency, Invoice.total_net, Invoice.total_tax, Invoice.paid_at, Invoice.refers_to)
         .order_by(Invoice.issued_at.desc(), Invoice.number.desc()).limit(limit))
    return db.execute(q).all()


def gaps(db) -> list:
    """Per device with records waiting: acknowledged head, the first waiting seq, how many wait."""
    q = (select(Pending.dev, Device.head_seq, func.min(Pending.seq).label("first"), func.count().label("n"),
                func.min(Pending.received_at).label("since"))
         .join(Device, Device.id == Pending.dev).group_by(Pending.dev, Device.head_seq).order_by(Pending.dev))
    return db.execute(q).all()


def anomalies(db, limit: int = 200) -> list:
    return db.execute(select(Anomaly.id, Anomaly.received_at, Anomaly.kind, Anomaly.dev, Anomaly.seq, Anomaly.detail)
                      .order_by(Anomaly.id.desc()).limit(limit)).all()


# -- analytics ----------------------------------------------------------------------------------

def _window(q, start: int | None, end: int | None):
    if start is not None:
        q = q.where(S.start_t >= start)
    if end is not None:
        q = q.where(S.start_t < end)
    return q


def trend(db, period: str, start: int | None = None, end: int | None = None) -> list:
    """(bucket, sessions, energy Wh, revenue incl. VAT, currency) per period and currency."""
    b = bucket(period).label("bucket")
    q = select(b, func.count().label("sessions"), func.sum(S.energy_wh).label("energy_wh"),
               func.sum(S.cost_incl).label("revenue"), S.currency).group_by(b, S.currency).order_by(b, S.currency)
    return db.execute(_window(q, start, end)).all()


def heatmap(db, start: int | None = None, end: int | None = None) -> list[list[int]]:
    """Sessions started per weekday (0 Monday) x hour of day (UTC): 7 rows of 24."""
    wd = ((S.start_t // DAY + 3) % 7).label("wd")
    hr = ((S.start_t % DAY) // 3600).label("hr")
    grid = [[0] * 24 for _ in range(7)]
    for w, h, n in db.execute(_window(select(wd, hr, func.count()).group_by(wd, hr), start, end)):
        grid[int(w)][int(h)] = int(n)
    return grid


def utilization(db, start: int, end: int) -> list:
    """Per charger: sessions, seconds charging (of the sessions starting in the window) and energy."""
    cond = and_(S.dev == Device.id, S.start_t >= start, S.start_t < end)
    q = (select(Device.id, func.count(S.seq).label("sessions"),
                func.coalesce(func.sum(S.stop_t - S.start_t), 0).label("busy_s"),
                func.coalesce(func.sum(S.energy_wh), 0).label("energy_wh"))
         .outerjoin(Session, cond).group_by(Device.id).order_by(Device.id))
    return db.execute(q).all()


def revenue_by(db, what: str, start: int | None = None, end: int | None = None) -> list:
    """(contract or tariff, currency, sessions, energy Wh, revenue) ordered by revenue."""
    col = {"contract": func.coalesce(S.contract, ""), "tariff": S.tariff_id}[what].label(what)
    rev = func.sum(S.cost_incl).label("revenue")
    q = (select(col, S.currency, func.count().label("sessions"), func.sum(S.energy_wh).label("energy_wh"), rev)
         .group_by(col, S.currency).order_by(rev.desc(), col))
    return db.execute(_window(q, start, end)).all()


def averages(db, start: int | None = None, end: int | None = None):
    q = select(func.count().label("sessions"), func.coalesce(func.sum(S.stop_t - S.start_t), 0).label("seconds"),
               func.coalesce(func.sum(S.energy_wh), 0).label("energy_wh"))
    return db.execute(_window(q, start, end)).one()


# -- anomaly detection --------------------------------------------------------------------------

def overpowered(db, max_power_w: int, limit: int = 200) -> list:
    """Sessions whose energy per hour exceeds the charger's power: Wh * 3600 > W * seconds."""
    q = (select(S.dev, S.seq, S.start_t, S.stop_t, S.energy_wh)
         .where(S.energy_wh * 3600 > max_power_w * (S.stop_t - S.start_t)).order_by(S.start_t.desc()).limit(limit))
    return db.execute(q).all()


def faulty(db, limit: int = 200) -> list:
    """Void and meter-fault sessions."""
    q = (select(S.dev, S.seq, S.start_t, S.flags, S.stop_reason)
         .where(or_(_has_flag("void"), _has_flag("meter-fault"), S.stop_reason == "meter-fault"))
         .order_by(S.start_t.desc()).limit(limit))
    return db.execute(q).all()


def unsynced(db, limit: int = 200) -> list:
    """Records whose time was not synchronized (tq I or U, or flagged)."""
    q = (select(S.dev, S.seq, S.start_t, S.start_tq, S.stop_tq, S.flags)
         .where(or_(S.start_tq != "S", S.stop_tq != "S", _has_flag("time-unsynced")))
         .order_by(S.start_t.desc()).limit(limit))
    return db.execute(q).all()


def concurrent_cards(db, limit: int = 200) -> list:
    """Pairs of overlapping sessions of one card on two chargers (each pair once)."""
    a, b = aliased(Session), aliased(Session)
    q = (select(a.token, a.dev.label("dev_a"), a.seq.label("seq_a"), b.dev.label("dev_b"), b.seq.label("seq_b"),
                a.start_t)
         .join(b, and_(b.token == a.token, a.dev < b.dev, a.start_t < b.stop_t, b.start_t < a.stop_t))
         .order_by(a.start_t.desc()).limit(limit))
    return db.execute(q).all()


def offline(db, now: int, longer_than_s: int) -> list:
    """Chargers reported offline (or silent) for longer than longer_than_s."""
    q = (select(DeviceState.dev, DeviceState.online, DeviceState.seen_at)
         .where(DeviceState.seen_at < now - longer_than_s).order_by(DeviceState.seen_at))
    return db.execute(q).all()

