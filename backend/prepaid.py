"""Prepaid funds that never go below zero, online or offline, on any number of chargers
(docs/prepaid.md).

A prepaid card's balance (cards.balance) is only ever debited with the `charged` amount of its
records, as the charger signed it (settle). Whatever a charger may still spend without asking
again is held against that balance:

- online: a reservation (table `reservations`) for each prepaid authorization answer: good for
  one session on one charger, named there by (dev, token, exp); settled by that session's record;
- offline: each charger's allowance from its list (table `allowances`): what its list entry says,
  less what its records after the entry's bal_seq charged.

free = balance - held reservations - outstanding allowances. A reservation, or an allowance larger
than what the charger still holds, only ever comes out of free, so every debit still to come is
covered: the balance never goes below zero. Allocations (reserve, allowance) are serialized per
card (_lock) and read balance and holdings in one statement; a record only ever increases free.
"""
from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import case, func, literal, select, text
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import object_session

from backend import guard
from backend.models import Allowance, Card, Device, Reservation, Session

log = logging.getLogger("backend.prepaid")

HELD, SETTLED, RELEASED = "held", "settled", "released"


def _lock(db: DbSession, token: str) -> None:
    """One allocation at a time per card. SQLite: every write transaction already runs alone
    (BEGIN IMMEDIATE, backend/db.py). PostgreSQL: a transaction-scoped advisory lock, which
    records (ingest) never take, so it cannot deadlock with them."""
    if db.get_bind().dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"evc-prepaid:" + token.encode()).digest()[:8], "big", signed=True)
        db.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _charged_since(dev: Any, token: Any, seq: Any):
    """SQL: what dev's records of token after seq charged."""
    return (select(func.coalesce(func.sum(Session.charged), 0))
            .where(Session.dev == dev, Session.token == token, Session.seq > seq).scalar_subquery())


def holdings(db: DbSession, token: str) -> tuple[int | None, int, int]:
    """(balance, held by reservations, outstanding in allowances) of card token, read in one
    statement (one snapshot: a record stored in between cannot be counted half)."""
    out = Allowance.amount - _charged_since(Allowance.dev, Allowance.token, Allowance.bal_seq)
    outstanding = (select(func.coalesce(func.sum(case((out > 0, out), else_=literal(0))), 0))
                   .where(Allowance.token == token).scalar_subquery())
    held = (select(func.coalesce(func.sum(Reservation.amount), 0))
            .where(Reservation.token == token, Reservation.state == HELD).scalar_subquery())
    balance = select(Card.balance).where(Card.token == token).scalar_subquery()
    row = db.execute(select(balance, held, outstanding)).one()
    return row[0], int(row[1]), int(row[2])


def outstanding(db: DbSession, dev: str, token: str) -> int:
    """What dev may still spend of card token from its list entry (0 without one)."""
    row = db.get(Allowance, (dev, token))
    if row is None:
        return 0
    return max(0, row.amount - int(db.scalar(select(_charged_since(dev, token, row.bal_seq)))))


def free(db: DbSession, token: str) -> int:
    balance, held, out = holdings(db, token)
    return (balance or 0) - held - out


def release_expired(db: DbSession, token: str, now: int) -> list[Reservation]:
    """Release held reservations of token past their exp that no session can use any more: the
    charger has stored a record that started, by a set clock, at or after the exp. A session on
    the reservation would have started before that one (one connector; seqs follow time), so its
    record would be stored already and would have settled it."""
    out = []
    # not locked: a reservation released here has no record still to come that could settle it
    rows = db.scalars(select(Reservation).where(Reservation.token == token, Reservation.state == HELD,
                                                Reservation.exp <= now)).all()
    for r in rows:
        later = db.scalar(select(Session.seq).where(Session.dev == r.dev, Session.start_t >= r.exp,
                                                    Session.start_tq != "U").limit(1))
        if later is not None:
            r.state, r.closed_at = RELEASED, now
            out.append(r)
    return out


def release(db: DbSession, reservation_id: int, now: int) -> bool:
    """An operator's release of a held reservation (e.g. its charger is gone for good); the
    operator vouches that no session used it. True when it was held."""
    r = db.get(Reservation, reservation_id, with_for_update=True)
    if r is None or r.state != HELD:
        return False
    r.state, r.closed_at = RELEASED, now
    return True


def release_allowance(db: DbSession, dev: str, token: str) -> int:
    """Forget dev's allowance for card token once it is known that dev no longer holds a list
    entry for it (an operator, or a device reporting a list version without the card). Returns
    what it still held (now free). Never on the strength of a push alone: dev may not have it."""
    row = db.get(Allowance, (dev, token), with_for_update=True)
    if row is None:
        return 0
    held = outstanding(db, dev, token)
    db.delete(row)
    return held


def reserve(db: DbSession, card: Card, dev: str, exp: int, now: int, cap: int | None = None) -> Reservation | None:
    """Hold what is free of a prepaid card (at most cap) for one online session on dev. The
    reservation is named on the device by (dev, token, exp): exp is moved earlier by a second
    while that name is taken. None: nothing free (or no exp left)."""
    _lock(db, card.token)
    release_expired(db, card.token, now)
    amount = free(db, card.token)
    if cap is not None:
        amount = min(amount, cap)
    if amount < 1:
        return None
    taken = set(db.scalars(select(Reservation.exp).where(Reservation.dev == dev, Reservation.token == card.token,
                                                         Reservation.exp <= exp)))
    while exp in taken:
        exp -= 1
    if exp <= now:
        return None
    r = Reservation(token=card.token, dev=dev, amount=amount, exp=exp, created_at=now, state=HELD)
    db.add(r)
    db.flush()
    return r


def allowance(db: DbSession, card: Card, dev: str, bal_seq: int, now: int, shares: int | None = None) -> int | None:
    """The amount dev's list entry for card carries (with bal_seq = dev's stored head), recorded
    as handed out; None for a postpaid card.

    Split: the balance less held reservations, cut into `shares` equal parts (default: one per
    registered charger); a charger's allowance grows towards its part out of what is free, and
    never below what it may still spend from its current entry (that is never taken back until
    spent: the charger may not have the new list yet)."""
    if card.balance is None:
        return None
    _lock(db, card.token)
    release_expired(db, card.token, now)
    mine = outstanding(db, dev, card.token)
    share = 0
    if card.status == "accepted":
        balance, held, out = holdings(db, card.token)
        spendable = (balance or 0) - held
        parts = shares or db.scalar(select(func.count()).select_from(Device)) or 1
        share = max(0, min(max(0, spendable) // parts - mine, spendable - out))
    amount = min(mine + share, (1 << 31) - 1)  # what a list entry holds (firmware/billing/authlist.py)
    row = db.get(Allowance, (dev, card.token))
    if row is None:
        db.add(Allowance(dev=dev, token=card.token, amount=amount, bal_seq=bal_seq, updated_at=now))
    else:
        row.amount, row.bal_seq, row.updated_at = amount, bal_seq, now
    db.flush()
    return amount


def entry_balance(card: Card, dev: Device, now: int) -> int | None:
    """The `balance` of dev's list entry for card (backend/downlink.py): its allowance, with
    bal_seq = dev's stored head (dev locked by the caller: no record of it moves that head)."""
    db = object_session(card)
    assert db is not None, "a card loaded in the caller's transaction"
    return allowance(db, card, dev.id, dev.head_seq, now)


def settle(db: DbSession, card: Card | None, dev: str, seq: int, record: dict[str, Any], now: int) -> int | str:
    """What a newly stored record takes from its card: its signed `charged` for a prepaid card (0
    without one, and for a postpaid card), debited here; its reservation ("rsv": the exp that
    names it) is settled with it, which releases the rest. A str: why the record cannot be billed
    (the caller keeps it as an anomaly; nothing was changed). Called once per (dev, seq)."""
    charged = record.get("charged", 0)
    if isinstance(charged, bool) or not isinstance(charged, int) or not 0 <= charged <= guard.INT64_MAX:
        return f"charged {charged!r} is not a non-negative integer"
    rsv = record.get("rsv")
    if rsv is not None and (isinstance(rsv, bool) or not isinstance(rsv, int) or not 0 < rsv <= guard.INT64_MAX):
        return f"rsv {rsv!r} is not a reservation's exp"
    if card is None or card.balance is None:
        if charged:
            log.warning("%s seq %d charged %d to a card that is not prepaid here: not debited", dev, seq, charged)
        charged = 0
    elif card.balance - charged < guard.INT64_MIN:
        return f"charged {charged} would take the card's balance {card.balance} below the 64-bit range"
    if rsv is not None:
        r = db.scalars(select(Reservation).where(Reservation.dev == dev, Reservation.token == record.get("token"),
                                                 Reservation.exp == rsv).with_for_update()).first()
        if r is None:
            log.warning("%s seq %d names reservation %d, which is not known", dev, seq, rsv)
        elif r.state != HELD:
            log.warning("%s seq %d settles reservation %d, already %s", dev, seq, r.id, r.state)
        else:
            if charged > r.amount:
                log.warning("%s seq %d charged %d beyond reservation %d of %d", dev, seq, charged, r.id, r.amount)
            r.state, r.seq, r.charged, r.closed_at = SETTLED, seq, charged, now
    if charged:
        assert card is not None and card.balance is not None
        card.balance -= charged
        card.updated_at = now
    return charged
