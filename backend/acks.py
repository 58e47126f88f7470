"""Signed acknowledgements: what the worker publishes on <prefix>/<dev>/ack after a commit.

An ack is a JWS by the backend key (keys.sign_document, as downlink documents) of
`{"type": "ack", "dev", "seq", "hash"}`: every record of dev up to seq is stored, and `hash` is the
SHA-256 (hex) of record seq's payload bytes: the chain hash stored with it (sessions.hash, or the
slot anomaly's hash; verify.Opened.hash), the same digest the device's journal keeps in the
record's entry. The device trims its journal only when all of it checks out
(firmware/uplink/forward.py), so a forged, foreign or mismatched ack can never make it forget a
record.
"""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.keys import sign_document
from backend.models import Anomaly, Session


def stored_hash(db: DbSession, dev: str, seq: int) -> str | None:
    """The payload hash of stored record (dev, seq): a session's, or that of the anomaly that fills
    its seq (a record the device signed but the backend could not bill); None when not stored."""
    h = db.scalar(select(Session.hash).where(Session.dev == dev, Session.seq == seq))
    if h is not None:
        return h
    return db.scalars(select(Anomaly.hash).where(Anomaly.dev == dev, Anomaly.seq == seq, Anomaly.slot.is_(True))).first()


def hashes(sessions: sessionmaker, acks: dict[str, int]) -> dict[str, str]:
    """{dev: hash of record acks[dev]} for the devices whose acked record has a hash (a seq an
    operator accepted as lost has none: the next record's ack covers it)."""
    out: dict[str, str] = {}
    if not acks:
        return out
    with sessions() as db:
        for dev, seq in acks.items():
            h = stored_hash(db, dev, seq)
            if h:
                out[dev] = h
    return out


def document(dev: str, seq: int, hash_: str) -> dict:
    return {"type": "ack", "dev": dev, "seq": seq, "hash": hash_}


def sign(key: ec.EllipticCurvePrivateKey, dev: str, seq: int, hash_: str) -> str:
    return sign_document(key, document(dev, seq, hash_))
