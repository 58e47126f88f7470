"""Gapless document numbers: one counter row per series ("INV-2026"), locked FOR UPDATE in the
transaction that issues the document. A rolled-back issue rolls the counter back with it, so a
number is used exactly once and none is skipped; a second transaction waits for the lock."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session as DbSession

from backend.models import NumberSeries

PREFIX = {"invoice": "INV", "receipt": "RC", "credit_note": "CN"}


def series(kind: str, issued_at: int) -> str:
    return f"{PREFIX[kind]}-{dt.datetime.fromtimestamp(issued_at, dt.timezone.utc).year}"


def lock(db: DbSession, name: str) -> NumberSeries:
    """The series' counter row, created when new and locked until the transaction ends."""
    t = NumberSeries.__table__
    dialect = db.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(t).values(series=name, last=0)
        db.execute(ins.on_conflict_do_nothing(index_elements=[t.c.series]))
    elif db.get(NumberSeries, name) is None:
        db.add(NumberSeries(series=name, last=0))
        db.flush()
    return db.execute(select(NumberSeries).where(NumberSeries.series == name).with_for_update()
                      .execution_options(populate_existing=True)).scalar_one()


def take(counter: NumberSeries) -> tuple[int, str]:
    """The next number of a locked counter: (seq, "INV-2026-000017")."""
    counter.last += 1
    return counter.last, f"{counter.series}-{counter.last:06d}"
