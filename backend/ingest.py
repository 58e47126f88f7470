"""Store each record exactly once, in a transaction, and say what may be acknowledged.

Per device the table `devices` keeps the head of the verified chain (head_seq, head_hash). A record
that extends the head is checked against it (prev = SHA-256 of the predecessor's payload) and stored
as a billable session, or as an anomaly that still fills its seq when the device itself signed
something wrong. A record beyond the head waits in `pending` (another worker may hold its
predecessor) and is placed when the gap closes. The cumulative ack is head_seq: every seq up to it
is stored. Forged, unknown and malformed messages are anomalies that never move the head.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend import verify
from backend.models import Anomaly, Card, Device, Pending, Session

log = logging.getLogger("backend.ingest")

RETRIES = 8  # a transaction that lost a deadlock or a lock wait is simply run again


@dataclass(frozen=True)
class Outcome:
    dev: str | None
    ack: int | None  # publish {"seq": ack} on <prefix>/<dev>/ack when set
    kind: str  # stored | duplicate | pending | <anomaly kind>
    seq: int | None = None
    detail: str = ""


def topic_device(topic: str) -> str | None:
    """<prefix>/<dev>/rec -> dev (the prefix may itself contain slashes)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "rec" or not 1 <= len(parts[-2]) <= 32:
        return None
    return parts[-2]


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", "backslashreplace")


class Ingestor:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time, gap_grace_s: int = 30):
        self.sessions = sessions
        self.clock = clock
        self.gap_grace_s = gap_grace_s

    # -- public -------------------------------------------------------------------------------

    def ingest(self, topic: str, raw: bytes | str) -> Outcome:
        return self.ingest_many([(topic, raw)])[0]

    def ingest_many(self, messages: Iterable[tuple[str, bytes | str]]) -> list[Outcome]:
        """One transaction for the lot; outcomes in the order given. Acks only after this returns."""
        items = list(messages)
        # Device rows are locked in a fixed order so two workers cannot deadlock on them.
        order = sorted(range(len(items)), key=lambda i: (topic_device(items[i][0]) or "", verify.peek(_text(items[i][1]))[1] or 0))
        for attempt in range(RETRIES):
            try:
                with self.sessions.begin() as db:
                    done = {i: self._one(db, *items[i]) for i in order}
                return [done[i] for i in range(len(items))]
            except OperationalError as exc:
                if attempt == RETRIES - 1:
                    raise
                log.warning("transaction retried (%s)", exc.orig.__class__.__name__)
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def sweep_gaps(self) -> list[Outcome]:
        """Report, once each, records that have waited gap_grace_s for a predecessor."""
        cutoff = int(self.clock()) - self.gap_grace_s
        out: list[Outcome] = []
        with self.sessions.begin() as db:
            rows = db.scalars(select(Pending).where(Pending.gap_reported.is_(False), Pending.received_at <= cutoff)).all()
            for p in rows:
                dev = db.get(Device, p.dev)
                assert dev is not None
                if p.seq - 1 <= dev.head_seq or db.get(Pending, (p.dev, p.seq - 1)) is not None:
                    continue  # its predecessor is here: not the first record after a hole
                below = db.scalars(select(Pending.seq).where(Pending.dev == p.dev, Pending.seq < p.seq).order_by(Pending.seq.desc())).first()
                first = max(dev.head_seq, below or 0) + 1
                detail = f"seq {first}..{p.seq - 1} missing; seq {p.seq} and later wait, unbilled"
                self._anomaly(db, "gap", detail, f"/{p.dev}/rec", p.raw, p.dev, p.seq)
                p.gap_reported = True
                out.append(Outcome(p.dev, None, "gap", p.seq, detail))
        return out

    # -- one message --------------------------------------------------------------------------

    def accept_gap(self, dev_id: str, through: int, reason: str) -> int:
        """An operator's decision that seqs head+1..through are lost for good (e.g. a record the
        device's journal found damaged and quarantined): each becomes a `lost` anomaly (never billed;
        a late arrival is a seq-conflict, never a step back), the chain resumes at the next waiting
        record's `prev`, and the records that waited behind the gap are placed. Returns the new head."""
        with self.sessions.begin() as db:
            dev = db.get(Device, dev_id, with_for_update=True)
            if dev is None:
                raise ValueError(f"device {dev_id!r} is not registered")
            if through <= dev.head_seq:
                raise ValueError(f"seq {through} is not beyond the stored head {dev.head_seq}: no gap there")
            nxt = db.get(Pending, (dev_id, through + 1))
            if nxt is None:
                raise ValueError(f"no record waits at seq {through + 1}: accept a gap only right before one")
            if db.scalars(select(Pending.seq).where(Pending.dev == dev_id, Pending.seq <= through)).first():
                raise ValueError(f"records at or below seq {through} are waiting: the gap ends earlier")
            for seq in range(dev.head_seq + 1, through + 1):
                self._anomaly(db, "lost", f"accepted as lost by an operator: {reason}", f"/{dev_id}/rec", "",
                              dev_id, seq, hash_="", slot=True)
            dev.head_seq = through
            dev.head_hash = nxt.prev
            self._advance(db, dev, f"/{dev_id}/rec")
            return dev.head_seq

    def _anomaly(self, db: DbSession, kind: str, detail: str, topic: str, raw: str, dev: str | None,
                 seq: int | None, hash_: str | None = None, slot: bool = False) -> None:
        log.warning("anomaly %s dev=%s seq=%s: %s", kind, dev, seq, detail)
        db.add(Anomaly(dev=dev, seq=seq, kind=kind, detail=detail, topic=topic[:255], raw=raw,
                       hash=hash_, slot=slot, received_at=int(self.clock())))

    def _one(self, db: DbSession, topic: str, raw_in: bytes | str) -> Outcome:
        raw = _text(raw_in)
        dev_id = topic_device(topic)
        _, seq_hint = verify.peek(raw)
        if dev_id is None:
            self._anomaly(db, "bad-topic", f"topic {topic!r} is not <prefix>/<dev>/rec", topic, raw, None, seq_hint)
            return Outcome(None, None, "bad-topic", seq_hint)
        dev = db.get(Device, dev_id, with_for_update=True)
        if dev is None:
            self._anomaly(db, "unknown-device", f"device {dev_id!r} is not registered", topic, raw, dev_id, seq_hint)
            return Outcome(dev_id, None, "unknown-device", seq_hint)
        try:
            opened = verify.open_record(raw, dev.pubkey, dev_id)
        except verify.Rejected as rej:
            self._anomaly(db, rej.kind, rej.detail, topic, raw, dev_id, seq_hint)
            return Outcome(dev_id, None, rej.kind, seq_hint, rej.detail)
        ack = dev.head_seq or None
        seq = opened.seq
        known = self._stored_hash(db, dev_id, seq) if seq <= dev.head_seq else None
        waiting = db.get(Pending, (dev_id, seq)) if seq > dev.head_seq else None
        if known is not None or waiting is not None:
            if (known if known is not None else waiting.hash) == opened.hash:  # type: ignore[union-attr]
                return Outcome(dev_id, ack, "duplicate", seq)
            detail = f"seq {seq} already stored with another payload hash"
            self._anomaly(db, "seq-conflict", detail, topic, raw, dev_id, seq, opened.hash)
            return Outcome(dev_id, ack, "seq-conflict", seq, detail)
        problem = opened.problem
        if seq > dev.head_seq + 1:
            db.add(Pending(dev=dev_id, seq=seq, hash=opened.hash, prev=opened.prev, raw=raw, problem=problem,
                           received_at=int(self.clock()), gap_reported=False))
            return Outcome(dev_id, ack, "pending", seq)
        kind = self._place(db, dev, topic, raw, opened, problem)
        self._advance(db, dev, topic)
        return Outcome(dev_id, dev.head_seq, kind, seq)

    def _stored_hash(self, db: DbSession, dev: str, seq: int) -> str | None:
        s = db.get(Session, (dev, seq))
        if s is not None:
            return s.hash
        return db.scalars(select(Anomaly.hash).where(Anomaly.dev == dev, Anomaly.seq == seq, Anomaly.slot.is_(True))).first()

    def _advance(self, db: DbSession, dev: Device, topic: str) -> None:
        """Place the waiting records that now follow the head."""
        while (p := db.get(Pending, (dev.id, dev.head_seq + 1))) is not None:
            opened = verify.reopen(p.raw, dev.id, p.hash, p.prev)  # verified on arrival
            self._place(db, dev, topic, p.raw, opened, p.problem)
            db.delete(p)

    def _place(self, db: DbSession, dev: Device, topic: str, raw: str, opened: verify.Opened, problem: str | None) -> str:
        if opened.prev != dev.head_hash:
            kind, detail = "chain-break", f"prev {opened.prev[:16]}... is not the hash of seq {opened.seq - 1} ({dev.head_hash[:16]}...)"
        elif problem is not None:
            kind, _, detail = problem.partition(": ")
        else:
            kind, detail = "stored", ""
        if kind == "stored":
            db.add(self._session(db, opened, raw))
        else:
            self._anomaly(db, kind, detail, topic, raw, dev.id, opened.seq, opened.hash, slot=True)
        dev.head_seq = opened.seq
        dev.head_hash = opened.hash
        return kind

    def _session(self, db: DbSession, opened: verify.Opened, raw: str) -> Session:
        r = opened.record
        start, stop, cost = r["start"], r["stop"], r["cost"]
        charged = 0
        card = db.get(Card, r["token"], with_for_update=True)
        if card is not None and card.balance is not None and "void" not in r["flags"]:
            charged = cost["incl"]
            card.balance -= charged  # applied once: the session row with this (dev, seq) is new
            card.updated_at = int(self.clock())
        return Session(
            dev=opened.dev, seq=opened.seq, hash=opened.hash, raw=raw, token=r["token"], auth=r["auth"],
            contract=r.get("contract"), tariff_id=str(r["tariff"].get("id")), tariff_ver=str(r["tariff"].get("ver")),
            start_t=start["t"], start_tq=start["tq"], start_wh=start["wh"],
            stop_t=stop["t"], stop_tq=stop["tq"], stop_wh=stop["wh"], stop_reason=str(stop.get("reason", "")),
            energy_wh=r["energy_wh"], currency=cost["currency"], cost_excl=cost["excl"], cost_incl=cost["incl"],
            flags=",".join(map(str, r["flags"])), meter_model=str(r["meter"].get("model", "")),
            meter_serial=str(r["meter"].get("serial", "")), fw=r["fw"], ocmf=r["ocmf"],
            payload=opened.payload.decode(), charged=charged, stored_at=int(self.clock()),
        )
