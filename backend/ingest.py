"""Store each record exactly once, in a transaction, and say what may be acknowledged.

Per device the table `devices` keeps the head of the verified chain (head_seq, head_hash). A record
that extends the head is checked against it (prev = SHA-256 of the predecessor's payload) and stored
as a billable session, or as an anomaly that still fills its seq when the device itself signed
something wrong. A record beyond the head waits in `pending` (another worker may hold its
predecessor) and is placed when the gap closes. The cumulative ack is head_seq: every seq up to it
is stored. Forged, unknown and malformed messages are anomalies that never move the head.

No message can stop ingest (issue #18): each is screened before it is parsed (verify.screen), every
value is checked against its column before the database sees it (guard.misfit: a device-signed
record that does not fit fills its seq as an `unstorable` anomaly and is acknowledged), a batch that
fails anyway is run again one message at a time and a message that fails alone becomes an
`internal-error` anomaly (not acknowledged: the device keeps the record and sends it again). Anomalies
that fill no seq are counted per source, kind and hour (anomaly_counts); only the first `samples` of
each are stored, raw cut to 4 KiB unless the device signed it.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend import guard, prepaid, verify
from backend.models import Anomaly, AnomalyCount, Card, Device, Pending, Session

log = logging.getLogger("backend.ingest")

RETRIES = 8  # a transaction that lost a deadlock or a lock wait is simply run again
SAMPLES_PER_HOUR = 20  # anomalies of one source and kind stored per hour with their raw message; the rest are counted
_DEV = re.compile(r"[A-Za-z0-9._:-]{1,32}")  # a device id the firmware can sign as (crypto/jws.py kid, dev <= 32)
T = TypeVar("T")
_COUNTED = "evc_counted"  # Session.info key: the counted anomalies of the running transaction


@dataclass(eq=False)
class _Counted:
    """An anomaly that fills no seq, waiting for the end of its transaction to learn whether its
    hour still has room for a sample (Ingestor._settle)."""

    source: str
    kind: str
    row: Anomaly
    stored: bool = False


@dataclass(frozen=True)
class Outcome:
    dev: str | None
    ack: int | None  # publish {"seq": ack} on <prefix>/<dev>/ack when set
    kind: str  # stored | duplicate | pending | <anomaly kind>
    seq: int | None = None
    detail: str = ""
    counted: _Counted | None = field(default=None, repr=False, compare=False)

    @property
    def quiet(self) -> bool:
        """An anomaly only counted (beyond its hour's samples): not worth a log line."""
        return self.counted is not None and not self.counted.stored


def topic_device(topic: str) -> str | None:
    """<prefix>/<dev>/rec -> dev (the prefix may itself contain slashes)."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "rec" or not _DEV.fullmatch(parts[-2]):
        return None
    return parts[-2]


@dataclass(frozen=True)
class _Msg:
    """A message as read before any transaction: screened, never parsed beyond the bounds."""

    topic: str  # storable, at most 255 characters
    data: bytes  # as received
    jws: str | None  # the screened JWS text; None when screening refused the message
    refused: verify.Rejected | None
    seq: int | None  # unverified hint: labels anomalies, orders the batch


def _read(topic: Any, raw: Any) -> _Msg:
    topic = guard.storable(topic if isinstance(topic, str) else repr(topic), 255)
    try:
        data = guard.as_bytes(raw)
    except Exception:  # noqa: BLE001 - not bytes nor text: keep what it says it is
        data = guard.as_bytes(repr(raw)[: guard.KEEP_RAW_BYTES])
    try:
        jws, refused = verify.screen(data), None
    except verify.Rejected as rej:
        jws, refused = None, rej
    return _Msg(topic, data, jws, refused, verify.peek(jws)[1] if jws is not None else None)


class Ingestor:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time, gap_grace_s: int = 30,
                 samples: int = SAMPLES_PER_HOUR):
        self.sessions = sessions
        self.clock = clock
        self.gap_grace_s = gap_grace_s
        self.samples = samples

    # -- public -------------------------------------------------------------------------------

    def ingest(self, topic: str, raw: bytes | str) -> Outcome:
        return self.ingest_many([(topic, raw)])[0]

    def ingest_many(self, messages: Iterable[tuple[str, bytes | str]]) -> list[Outcome]:
        """One transaction for the lot; outcomes in the order given. Acks only after this returns.
        Whatever the messages hold, this returns an outcome for each; it raises only when the
        database itself is away (OperationalError after RETRIES): then nothing was stored."""
        items = [_read(topic, raw) for topic, raw in messages]
        # Device rows are locked in a fixed order so two workers cannot deadlock on them.
        order = sorted(range(len(items)), key=lambda i: (topic_device(items[i].topic) or "", items[i].seq or 0))
        try:
            done = self._transaction(lambda db: {i: self._one(db, items[i]) for i in order})
            return [done[i] for i in range(len(items))]
        except OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - one message broke the batch: find it, keep the others
            if len(items) == 1:
                return [self._failed(items[0], exc)]
            log.exception("a batch of %d messages failed; storing them one at a time", len(items))
        return [self._alone(m) for m in items]

    def note(self, problems: Iterable[tuple[str, str, str, bytes | str, str | None]]) -> None:
        """Store (kind, detail, topic, raw, dev) anomalies the worker found on other topics (auth
        requests, a message its handler could not take), counted and sampled like the rest."""
        def work(db: DbSession) -> None:
            for kind, detail, topic, raw, dev in problems:
                source = dev if dev is not None and _DEV.fullmatch(dev) and db.get(Device, dev) is not None else ""
                self._anomaly(db, kind, detail, guard.storable(topic, 255), raw, dev, None, source=source, count=True)

        self._transaction(work)

    def _transaction(self, work: Callable[[DbSession], T]) -> T:
        for attempt in range(RETRIES):
            try:
                with self.sessions.begin() as db:
                    result = work(db)
                    self._settle(db)
                    return result
            except OperationalError as exc:
                if attempt == RETRIES - 1:
                    raise
                log.warning("transaction retried (%s)", exc.orig.__class__.__name__)
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")

    def _alone(self, m: _Msg) -> Outcome:
        try:
            return self._transaction(lambda db: self._one(db, m))
        except OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001
            return self._failed(m, exc)

    def _failed(self, m: _Msg, exc: BaseException) -> Outcome:
        """A message that fails on its own, for a reason nobody foresaw: logged, kept as an
        `internal-error` anomaly, not acknowledged (a genuine record stays in its device's journal
        and comes again; the head does not move past it)."""
        log.error("message on %s failed", m.topic, exc_info=exc)
        detail = f"{type(exc).__name__}: {exc}"
        dev = topic_device(m.topic)

        def work(db: DbSession) -> _Counted | None:
            source = dev if dev is not None and db.get(Device, dev) is not None else ""
            return self._anomaly(db, "internal-error", detail, m.topic, m.data, dev, m.seq, source=source, count=True)

        counted = self._transaction(work)
        return Outcome(dev, None, "internal-error", m.seq, guard.detail(detail), counted)

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
                self._anomaly(db, "gap", detail, f"/{p.dev}/rec", p.raw, p.dev, p.seq, whole=True)
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

    def _anomaly(self, db: DbSession, kind: str, detail: str, topic: str, raw: bytes | str, dev: str | None,
                 seq: int | None, hash_: str | None = None, slot: bool = False, *, source: str = "",
                 whole: bool = False, count: bool = False) -> _Counted | None:
        """Keep an anomaly; raw whole when the device signed it (slot or whole), else its first 4 KiB.
        count: one that fills no seq, caused by a message: counted per (source, kind, hour) at the
        end of the transaction and stored only while that count is within self.samples (returned:
        .stored says which, once the transaction has settled)."""
        detail = guard.detail(detail)
        text, length, sha = guard.clip(raw, whole=whole or slot)
        if seq is not None and not 0 <= seq <= guard.INT64_MAX:
            seq = None
        row = Anomaly(dev=None if dev is None else guard.storable(dev, 64), seq=seq, kind=kind, detail=detail,
                      topic=guard.storable(topic, 255), raw=text, hash=hash_, slot=slot,
                      received_at=int(self.clock()), raw_len=length, raw_sha256=sha)
        if count:
            counted = _Counted(source, kind, row)
            db.info.setdefault(_COUNTED, []).append(counted)
            return counted
        log.warning("anomaly %s dev=%s seq=%s: %s", kind, dev, seq, detail)
        db.add(row)
        return None

    def _settle(self, db: DbSession) -> None:
        """Count the transaction's counted anomalies, one upsert per (source, kind) in a fixed order
        after every device row is locked (two workers cannot deadlock on the counters), and store
        those that are still within their hour's samples."""
        groups: dict[tuple[str, str], list[_Counted]] = {}
        for c in db.info.pop(_COUNTED, []):
            groups.setdefault((c.source, c.kind), []).append(c)
        for (source, kind), items in sorted(groups.items(), key=lambda kv: kv[0]):
            seen = self._count(db, source, kind, items[-1].row.topic, len(items))
            room = max(0, self.samples - (seen - len(items)))
            for c in items[:room]:
                c.stored = True
                log.warning("anomaly %s dev=%s seq=%s: %s", kind, c.row.dev, c.row.seq, c.row.detail)
                db.add(c.row)
            if len(items) > room:
                log.debug("%d more %s anomalies from %r counted, not stored (%d this hour)", len(items) - room, kind,
                          source, seen)

    def _count(self, db: DbSession, source: str, kind: str, topic: str, n: int) -> int:
        """Count n more anomalies of (source, kind) this hour; returns the hour's count (an upsert,
        so two workers counting at once never collide)."""
        now = int(self.clock())
        t = AnomalyCount.__table__
        values = {"source": source, "kind": kind, "hour": now - now % 3600, "seen": n, "last_at": now,
                  "last_topic": guard.storable(topic, 255)}
        dialect = db.get_bind().dialect.name
        if dialect in ("postgresql", "sqlite"):
            ins = (pg_insert if dialect == "postgresql" else sqlite_insert)(t).values(**values)
            stmt = ins.on_conflict_do_update(
                index_elements=[t.c.source, t.c.kind, t.c.hour],
                set_={"seen": t.c.seen + n, "last_at": ins.excluded.last_at, "last_topic": ins.excluded.last_topic},
            ).returning(t.c.seen)
            return db.execute(stmt).scalar_one()
        row = db.get(AnomalyCount, (source, kind, values["hour"]), with_for_update=True)
        if row is None:
            db.add(AnomalyCount(**values))
            return n
        row.seen, row.last_at, row.last_topic = row.seen + n, now, values["last_topic"]
        return row.seen

    def _one(self, db: DbSession, m: _Msg) -> Outcome:
        topic, seq_hint = m.topic, m.seq
        dev_id = topic_device(topic)
        if dev_id is None:
            counted = self._anomaly(db, "bad-topic", f"topic {topic!r} is not <prefix>/<dev>/rec", topic, m.data, None,
                                    seq_hint, count=True)
            return Outcome(None, None, "bad-topic", seq_hint, counted=counted)
        dev = db.get(Device, dev_id, with_for_update=True)
        if dev is None:
            counted = self._anomaly(db, "unknown-device", f"device {dev_id!r} is not registered", topic, m.data, dev_id,
                                    seq_hint, count=True)
            return Outcome(dev_id, None, "unknown-device", seq_hint, counted=counted)
        try:
            if m.refused is not None:
                raise m.refused
            assert m.jws is not None
            opened = verify.open_record(m.jws, dev.pubkey, dev_id)
        except verify.Rejected as rej:
            counted = self._anomaly(db, rej.kind, rej.detail, topic, m.data, dev_id, seq_hint, source=dev_id,
                                    whole=rej.signed, count=True)
            return Outcome(dev_id, None, rej.kind, seq_hint, rej.detail, counted)
        raw = m.jws
        ack = dev.head_seq or None
        seq = opened.seq
        known = self._stored_hash(db, dev_id, seq) if seq <= dev.head_seq else None
        waiting = db.get(Pending, (dev_id, seq)) if seq > dev.head_seq else None
        if known is not None or waiting is not None:
            if (known if known is not None else waiting.hash) == opened.hash:  # type: ignore[union-attr]
                return Outcome(dev_id, ack, "duplicate", seq)
            detail = f"seq {seq} already stored with another payload hash"
            counted = self._anomaly(db, "seq-conflict", detail, topic, raw, dev_id, seq, opened.hash, source=dev_id,
                                    whole=True, count=True)
            return Outcome(dev_id, ack, "seq-conflict", seq, detail, counted)
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
            opened = verify.reopen(p.raw, dev.id, p.hash, p.prev, p.seq)  # verified on arrival
            self._place(db, dev, topic, p.raw, opened, p.problem)
            db.delete(p)

    def _place(self, db: DbSession, dev: Device, topic: str, raw: str, opened: verify.Opened, problem: str | None) -> str:
        if opened.prev != dev.head_hash:
            kind, detail = "chain-break", f"prev {opened.prev[:16]}... is not the hash of seq {opened.seq - 1} ({dev.head_hash[:16]}...)"
            if problem is not None:
                detail += f"; also {problem}"
        elif problem is not None:
            kind, _, detail = problem.partition(": ")
        else:
            kind, detail = "stored", ""
        if kind == "stored":
            session = self._session(db, opened, raw)
            if isinstance(session, str):  # signed by the device, but a value does not fit its column
                kind, detail = "unstorable", session
            else:
                db.add(session)
        if kind != "stored":
            self._anomaly(db, kind, detail, topic, raw, dev.id, opened.seq, opened.hash, slot=True)
        dev.head_seq = opened.seq
        dev.head_hash = opened.hash
        return kind

    def _session(self, db: DbSession, opened: verify.Opened, raw: str) -> Session | str:
        """The billable session row, or why the record cannot be one (a value beyond its column:
        the caller keeps it as an `unstorable` anomaly that fills its seq)."""
        r = opened.record
        start, stop, cost = r["start"], r["stop"], r["cost"]
        values = dict(
            dev=opened.dev, seq=opened.seq, hash=opened.hash, raw=raw, token=r["token"], auth=r["auth"],
            contract=r.get("contract"), tariff_id=str(r["tariff"].get("id")), tariff_ver=str(r["tariff"].get("ver")),
            start_t=start["t"], start_tq=start["tq"], start_wh=start["wh"],
            stop_t=stop["t"], stop_tq=stop["tq"], stop_wh=stop["wh"], stop_reason=str(stop.get("reason", "")),
            energy_wh=r["energy_wh"], currency=cost["currency"], cost_excl=cost["excl"], cost_incl=cost["incl"],
            flags=",".join(map(str, r["flags"])), meter_model=str(r["meter"].get("model", "")),
            meter_serial=str(r["meter"].get("serial", "")), fw=r["fw"], ocmf=r["ocmf"],
            payload=opened.payload.decode("utf-8", "surrogatepass"),
        )
        why = guard.misfit(Session.__table__, values)
        if why is not None:
            return f"does not fit the sessions table: {why}"
        # the signed `charged`, debited once (this (dev, seq) is new); its reservation settled (backend/prepaid.py)
        card = db.get(Card, r["token"], with_for_update=True)
        charged = prepaid.settle(db, card, opened.dev, opened.seq, r, int(self.clock()))
        if isinstance(charged, str):
            return charged
        return Session(**values, charged=charged, stored_at=int(self.clock()))
