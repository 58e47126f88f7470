"""The dashboard's reads: SQL aggregations in SQLAlchemy core that run the same on SQLite and
PostgreSQL (integer arithmetic on epoch seconds for days, weeks, hours and weekdays; one small
dialect-specific function for calendar months). Times are UTC. Money in minor units, energy in Wh.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import BigInteger, String, and_, case, cast, func, literal, literal_column, or_, select, text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from backend.models import (Anomaly, Card, CardOwner, Contract, Device, DevicePresence, DeviceState, Invoice,
                            InvoiceLine, Pending, Session)

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
    """Every device with its reported state (and its last status as received) and its latest
    session's firmware and currency (one index lookup per device)."""
    pending = select(Pending.dev, func.count().label("n")).group_by(Pending.dev).subquery()
    latest = lambda col: (select(col).where(S.dev == Device.id).order_by(S.seq.desc()).limit(1)  # noqa: E731
                          .correlate(Device).scalar_subquery())
    q = (select(Device.id, Device.head_seq, DeviceState.online, DeviceState.seen_at, DeviceState.tariff_ver,
                DeviceState.list_ver, DeviceState.pushed_tariff_ver, DeviceState.pushed_list_ver,
                DeviceState.refused_reason, DeviceState.status, latest(S.fw).label("fw"),
                latest(S.currency).label("currency"), func.coalesce(pending.c.n, 0).label("pending"))
         .outerjoin(DeviceState, DeviceState.dev == Device.id)
         .outerjoin(pending, pending.c.dev == Device.id)
         .order_by(Device.id))
    return db.execute(q).all()


def live(status: str | None) -> dict:
    """What the dashboard shows of a device's last status (docs/protocol.md, "Status (retained)"):
    online, state, fault, fw, records pending on the device, and while charging wh (energy so far),
    w (power, W; firmware that does not send it: None), cost (incl. VAT, minor units) and since.
    Only well-typed fields: anything else is None (a device's status is its own to get wrong)."""
    try:
        doc = json.loads(status) if status else None
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        return {"online": False, "state": None, "fault": None, "fw": None, "pending": None, "w": None, "wh": None,
                "cost": None, "since": None}

    def num(k: str) -> int | None:
        v = doc.get(k)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def txt(k: str, n: int) -> str | None:
        v = doc.get(k)
        return v[:n] if isinstance(v, str) else None

    return {"online": doc.get("online") is True, "state": txt("state", 16), "fault": txt("fault", 200),
            "fw": txt("fw", 32), "pending": num("pending"), "w": num("w"), "wh": num("wh"), "cost": num("cost"),
            "since": num("since")}


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


# Whole-table aggregations at scale (a million sessions, docs/dashboard.md "Benchmark"): no pass
# over the table that sorts. The trend groups by the UTC day number start_t / 86400 in the order of
# the index ix_sessions_currency_day (currency, start_t / 86400, start_t, energy_wh, cost_incl;
# migration 0009), then the days into weeks or months; the expression is written exactly as indexed.
_DAY_NO = Session.__table__.c.start_t.op("/", return_type=BigInteger)(literal_column("86400"))
_NO_END = 1 << 62


def trend(db, period: str, start: int | None = None, end: int | None = None) -> list:
    """(bucket, sessions, energy Wh, revenue incl. VAT, currency) per period and currency."""
    bucket(period)  # ValueError on an unknown period
    w = []
    if start is not None:
        w += [_DAY_NO >= start // DAY, S.start_t >= start]
    if end is not None:
        w += [_DAY_NO <= (end - 1) // DAY, S.start_t < end]
    whole = lambda x: cast(x, BigInteger)  # noqa: E731 - PostgreSQL's sum of bigints is numeric
    days = (select(S.currency.label("currency"), _DAY_NO.label("day"), func.count().label("n"),
                   func.sum(S.energy_wh).label("e"), func.sum(S.cost_incl).label("r"))
            .where(*w).group_by(S.currency, _DAY_NO).subquery("days"))
    b = bucket(period, days.c.day * DAY).label("bucket")
    q = (select(b, whole(func.sum(days.c.n)).label("sessions"), whole(func.sum(days.c.e)).label("energy_wh"),
                whole(func.sum(days.c.r)).label("revenue"), days.c.currency)
         .group_by(b, days.c.currency).order_by(b, days.c.currency))
    return db.execute(q).all()


# The heat map walks the hours that have sessions along ix_sessions_start_t (a loose index scan: the
# next hour is the one of the first start at or after the end of this one), counting each hour's
# sessions by an index range; the same text on SQLite and PostgreSQL.
_HOURS_SQL = """
WITH RECURSIVE h(lo) AS (
  SELECT (SELECT min(start_t) FROM sessions WHERE start_t >= :lo AND start_t < :hi) / 3600 * 3600
  UNION ALL
  SELECT (SELECT min(start_t) FROM sessions WHERE start_t >= h.lo + 3600 AND start_t < :hi) / 3600 * 3600
  FROM h WHERE h.lo IS NOT NULL)
SELECT (lo / 86400 + 3) % 7 AS wd, lo % 86400 / 3600 AS hr,
       SUM((SELECT count(*) FROM sessions WHERE start_t >= h.lo AND start_t < h.lo + 3600
            AND start_t >= :lo AND start_t < :hi)) AS n
FROM h WHERE lo IS NOT NULL GROUP BY (lo / 86400 + 3) % 7, lo % 86400 / 3600"""


def heatmap(db, start: int | None = None, end: int | None = None) -> list[list[int]]:
    """Sessions started per weekday (0 Monday) x hour of day (UTC): 7 rows of 24."""
    grid = [[0] * 24 for _ in range(7)]
    lo, hi = max(0, start or 0), _NO_END if end is None else end
    for w, h, n in db.execute(text(_HOURS_SQL), {"lo": lo, "hi": hi}):
        grid[int(w)][int(h)] = int(n)
    return grid


# Idle while plugged: a record carries `parking_s` (the firmware's measured time without energy
# flowing, docs/records.md); older records only their cost lines, where a PARKING_TIME line's qty is
# the idle time the tariff priced (docs/dashboard.md). Per session, one dialect-specific expression
# reads the payload's JSON only when it mentions either (the others: 0 without parsing).
_IDLE_SQL = {
    "sqlite": """CASE WHEN sessions.payload LIKE '%"parking_s":%'
  THEN max(0, coalesce(CAST(json_extract(sessions.payload, '$.parking_s') AS INTEGER), 0))
  WHEN sessions.payload LIKE '%"PARKING_TIME"%' THEN coalesce((
  SELECT SUM(CASE WHEN json_extract(l.value, '$.unit') = 'ms' THEN CAST(json_extract(l.value, '$.qty') AS INTEGER) / 1000
                  ELSE CAST(json_extract(l.value, '$.qty') AS INTEGER) END)
  FROM json_each(sessions.payload, '$.cost.lines') AS l WHERE json_extract(l.value, '$.dim') = 'PARKING_TIME'), 0)
  ELSE 0 END""",
    "postgresql": """CASE WHEN sessions.payload LIKE '%%"parking_s":%%'
  THEN CASE WHEN jsonb_typeof(CAST(sessions.payload AS jsonb) -> 'parking_s') = 'number'
            THEN greatest(0, CAST(trunc(CAST(CAST(sessions.payload AS jsonb) ->> 'parking_s' AS numeric)) AS bigint))
            ELSE 0 END
  WHEN sessions.payload LIKE '%%"PARKING_TIME"%%' THEN coalesce((
  SELECT CAST(SUM(CASE WHEN jsonb_typeof(l.value -> 'qty') <> 'number' THEN 0
                       WHEN l.value ->> 'unit' = 'ms' THEN div(CAST(l.value ->> 'qty' AS numeric), 1000)
                       ELSE trunc(CAST(l.value ->> 'qty' AS numeric)) END) AS bigint)
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof(CAST(sessions.payload AS jsonb) -> 'cost' -> 'lines') = 'array'
                                 THEN CAST(sessions.payload AS jsonb) -> 'cost' -> 'lines'
                                 ELSE CAST('[]' AS jsonb) END) AS l(value)
  WHERE l.value ->> 'dim' = 'PARKING_TIME'), 0)
  ELSE 0 END""",
}


def usage(db, start: int, end: int) -> list:
    """Per charger, of the sessions starting in [start, end): sessions, plugged_s (stop - start),
    idle_s (plugged without energy flowing: the record's parking_s, else its PARKING_TIME cost lines;
    at most plugged_s),
    idle_sessions (sessions whose record shows idle time), charging_s (plugged - idle), energy_wh,
    avg_w (energy over charging time) and max_w (the highest of a session), W. One pass over the
    window's sessions, grouped per charger, then joined to every registered charger."""
    idle = literal_column(_IDLE_SQL[db.get_bind().dialect.name], BigInteger)
    ps = (select(S.dev.label("dev"), (S.stop_t - S.start_t).label("plugged"), idle.label("idle"),
                 S.energy_wh.label("wh"))
          .where(S.start_t >= start, S.start_t < end)
          .cte("ps").prefix_with("MATERIALIZED"))  # the JSON read once per session, not once per use
    capped = case((ps.c.idle > ps.c.plugged, ps.c.plugged), else_=ps.c.idle)
    charging = ps.c.plugged - capped
    whole = lambda x: cast(x, BigInteger)  # noqa: E731 - PostgreSQL's sum of bigints is numeric
    pd = (select(ps.c.dev, func.count().label("sessions"), whole(func.sum(ps.c.plugged)).label("plugged_s"),
                 whole(func.sum(capped)).label("idle_s"), func.count(case((capped > 0, 1))).label("idle_sessions"),
                 whole(func.sum(charging)).label("charging_s"), whole(func.sum(ps.c.wh)).label("energy_wh"),
                 whole(func.max(case((charging > 0, ps.c.wh * 3600 // charging)))).label("max_w"))
          .group_by(ps.c.dev).subquery("pd"))
    z = lambda c: func.coalesce(c, 0)  # noqa: E731
    q = (select(Device.id, z(pd.c.sessions).label("sessions"), z(pd.c.plugged_s).label("plugged_s"),
                z(pd.c.idle_s).label("idle_s"), z(pd.c.idle_sessions).label("idle_sessions"),
                z(pd.c.charging_s).label("charging_s"), z(pd.c.energy_wh).label("energy_wh"),
                whole(case((pd.c.charging_s > 0, pd.c.energy_wh * 3600 // pd.c.charging_s), else_=0)).label("avg_w"),
                z(pd.c.max_w).label("max_w"))
         .outerjoin(pd, pd.c.dev == Device.id).order_by(Device.id))
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


def offline_periods(db, now: int, longer_than_s: int, start: int | None = None, end: int | None = None,
                    limit: int | None = None) -> list:
    """Periods a charger was offline (its last will, or a fault state) for at least longer_than_s,
    from the changes of its online flag (device_presence): dev, since, until (None: still offline),
    seconds (to now when still offline); those overlapping [start, end), longest first."""
    P = DevicePresence.__table__.c
    nxt = func.lead(P.at).over(partition_by=P.dev, order_by=(P.at, P.id)).label("until")
    sub = select(P.dev, P.at.label("since"), P.online, nxt).subquery()
    upto = func.coalesce(sub.c.until, now)
    q = (select(sub.c.dev, sub.c.since, sub.c.until, (upto - sub.c.since).label("seconds"))
         .where(sub.c.online.is_(False), upto - sub.c.since >= longer_than_s)
         .order_by((upto - sub.c.since).desc(), sub.c.dev, sub.c.since))
    if start is not None:
        q = q.where(upto > start)
    if end is not None:
        q = q.where(sub.c.since < end)
    if limit is not None:
        q = q.limit(limit)
    return db.execute(q).all()
