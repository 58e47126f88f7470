"""What the tests check about a prepaid card in the backend's database (backend/prepaid.py)."""
from __future__ import annotations

from sqlalchemy import func, select

from backend import prepaid
from backend.models import Card, Reservation, Session


def charged(sessions, token: str) -> list[int]:
    with sessions() as db:
        return list(db.scalars(select(Session.charged).where(Session.token == token).order_by(Session.stored_at,
                                                                                             Session.dev, Session.seq)))


def balance(sessions, token: str) -> int:
    with sessions() as db:
        return db.get(Card, token).balance


def reservations(sessions, token: str) -> list[Reservation]:
    with sessions() as db:
        return list(db.scalars(select(Reservation).where(Reservation.token == token).order_by(Reservation.id)))


def check(sessions, token: str, opening: int) -> int:
    """The invariants, always: balance = opening - the signed charges, never below zero, and
    covering every amount still held for chargers. Returns the total charged."""
    with sessions() as db:
        total = db.scalar(select(func.coalesce(func.sum(Session.charged), 0)).where(Session.token == token))
        bal, held, out = prepaid.holdings(db, token)
    assert bal == opening - total, (bal, opening, total)
    assert 0 <= total <= opening
    assert bal >= held + out >= 0, (bal, held, out)
    return total
