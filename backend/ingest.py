"""Store each record exactly once, in a transaction, and say what may be acknowledged.

Per device the table `devices` keeps the head of the verified chain (head_seq, head_hash). A record
that extends the head is checked against it (prev = SHA-256 of the predecessor's payload) and stored
as a billable session, or as an anomaly that still fills its seq when the device itself signed
something wrong. A record beyond the head waits in `pending` (another worker may hold its
predecessor) and is placed when the gap closes. The cumulative ack is head_seq: every seq up to it
is stored. Forged, unknown and malformed messages are anomalies that never move the head.

Batches (issue #23): ingest_many takes the messages a worker collected and first verifies them,
outside any transaction and lock (two ECDSA verifications a record, with the device's key as last
read; a record that names a seq this process has seen stored and is byte for byte the stored
message is a re-send and is not verified again). Then ONE transaction: the batch's device rows are
read and locked in id order in one statement (the database stays the arbiter between workers: a
worker that lost a race reads the head the winner committed, and the primary key (dev, seq) is the
last word), the seqs waiting in `pending` and the cards the records name in one statement each,
the chain is checked in memory from the locked head, and the new sessions go in with one multi-row
INSERT. A key that changed since it was read means verifying again inside. On SQLite, ingest
transactions queue on a file lock beside the database (_WriterLock) instead of SQLite's polling
busy wait. The caller acknowledges after ingest_many has returned, i.e. after the commit.

No message can stop ingest (issue #18): each is screened before it is parsed (verify.screen), every
value is checked against its column before the database sees it (guard.misfit: a device-signed
record that does not fit fills its seq as an `unstorable` anomaly and is acknowledged), a batch that
fails anyway is run again one message at a time and a message that fails alone becomes an
`internal-error` anomaly (not acknowledged: the device keeps the record and sends it again). Anomalies
that fill no seq are counted per source, kind and hour (anomaly_counts); only the first `samples` of
each are stored, raw cut to 4 KiB unless the device signed it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
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
    ack_hash: str | None = field(default=None, repr=False, compare=False)  # payload hash of record `ack`, when known

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


@dataclass
class _Msg:
    """A message as read before any transaction: screened, never parsed beyond the bounds; then
    verified, still outside the transaction, with its device's key as last seen (Ingestor._verify)."""

    topic: str  # storable, at most 255 characters
    data: bytes  # as received
    jws: str | None  # the screened JWS text; None when screening refused the message
    refused: verify.Rejected | None
    dev: str | None = None  # from the topic
    key: bytes | None = None  # the public key `opened` was checked with
    opened: verify.Opened | verify.Rejected | None = None  # its verdict under `key`
    again: int | None = None  # not verified: the seq it names was stored already (a re-send, most likely)
    _seq: int | None = field(default=None, repr=False)

    @property
    def seq(self) -> int | None:
        """The verified seq, else an unverified hint: labels anomalies, orders the batch."""
        if isinstance(self.opened, verify.Opened):
            return self.opened.seq
        if self.again is not None:
            return self.again
        if self._seq is None and self.jws is not None:
            self._seq = verify.peek(self.jws)[1] or 0
        return self._seq or None


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
    return _Msg(topic, data, jws, refused, topic_device(topic))


# Session.info keys of a batch's transaction (Ingestor._prepare): what one query per batch read, so
# that no record costs a round trip of its own
_DEVICES = "evc_devices"  # {dev: Device}, locked
_PENDING = "evc_pending"  # {dev: {seq, ...}} waiting in `pending`
_CARDS = "evc_cards"  # {token: Card | None}, locked
_PLACED = "evc_placed"  # {(dev, seq): hash} stored as sessions by this transaction
_ROWS = "evc_rows"  # session rows to insert, in one statement, before the commit
_LOADED = "evc_loaded"  # {(dev, seq): Pending} read ahead by a run (Ingestor._pending)
_SESSIONS = Session.__table__
RUN = 256  # waiting records read in one query when a gap closes


class _WriterLock:
    """SQLite has one writer at a time (BEGIN IMMEDIATE), and a writer that finds the database
    locked polls for it, sleeping up to 100 ms between tries: with several ingest workers on one
    file most of the time went to sleeping. Ingest transactions therefore queue on an advisory
    file lock (flock) beside the database first, which hands over the moment it is released; the
    database's own lock stays the arbiter (other writers, and a worker without the lock file, still
    wait on busy_timeout). Nothing for a server database, or where flock does not exist."""

    def __init__(self, sessions: sessionmaker):
        self._thread = threading.Lock()
        self._path: str | None = None
        self._fd: int | None = None
        try:
            import fcntl  # noqa: F401, PLC0415 - POSIX only
            url = sessions.kw["bind"].url
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                self._path = url.database + "-ingest.lock"
        except Exception:  # noqa: BLE001 - no lock, SQLite's busy wait alone
            self._path = None

    def __enter__(self) -> None:
        self._thread.acquire()
        if self._path is None:
            return
        import fcntl  # noqa: PLC0415

        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a read-only folder: SQLite's busy wait alone
            log.warning("no ingest lock file %s (%s): workers wait on SQLite's busy timeout", self._path, exc)
            self._path = None

    def __exit__(self, *exc) -> None:
        try:
            if self._path is not None and self._fd is not None:
                import fcntl  # noqa: PLC0415

                with contextlib.suppress(OSError):
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()


class Ingestor:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time, gap_grace_s: int = 30,
                 samples: int = SAMPLES_PER_HOUR):
        self.sessions = sessions
        self.clock = clock
        self.gap_grace_s = gap_grace_s
        self.samples = samples
        # {dev: registered public key} as last read: records are verified before their transaction
        # (outside the write lock, so that workers verify side by side); the transaction compares
        # the key with the locked device row and verifies again in the rare case it changed.
        self._keys: dict[str, bytes] = {}
        # {dev: a head_seq this process has seen committed}: heads only grow, so a record naming a
        # seq at or below it is a re-send or a conflict; its signatures are checked only if it is
        # not byte for byte the stored record (Ingestor._one)
        self._heads: dict[str, int] = {}
        self._writer = _WriterLock(sessions)

    # -- public -------------------------------------------------------------------------------

    def ingest(self, topic: str, raw: bytes | str) -> Outcome:
        return self.ingest_many([(topic, raw)])[0]

    def ingest_many(self, messages: Iterable[tuple[str, bytes | str]]) -> list[Outcome]:
        """One transaction for the lot; outcomes in the order given. Acks only after this returns.
        Whatever the messages hold, this returns an outcome for each; it raises only when the
        database itself is away (OperationalError after RETRIES): then nothing was stored."""
        return self.store(self.prepare(messages))

    def prepare(self, messages: Iterable[tuple[str, bytes | str]]) -> list[_Msg]:
        """The first half of ingest_many, outside any transaction: screen and verify. A worker runs
        it for its next batch while store() commits the one before (ECDSA and SQLite both let go
        of the GIL). Raises only when the database is away (reading keys)."""
        items = [_read(topic, raw) for topic, raw in messages]
        self._verify(items)
        return items

    def store(self, items: list[_Msg]) -> list[Outcome]:
        """The second half of ingest_many: one transaction for the prepared messages."""
        # Device rows are locked in a fixed order so two workers cannot deadlock on them.
        order = sorted(range(len(items)), key=lambda i: (items[i].dev or "", items[i].seq or 0))
        try:
            done = self._transaction(lambda db: self._batch(db, [items[i] for i in order]))
            self._saw(done.values())
            return [done[id(items[i])] for i in range(len(items))]
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

    def _verify(self, items: list[_Msg]) -> None:
        """Check each record's signatures with its device's key, before any transaction: the
        expensive part (two ECDSA verifications a record), done without holding a lock. Keys are
        read once per device (one query for those not seen yet)."""
        wanted = {m.dev for m in items if m.jws is not None and m.dev is not None and m.dev not in self._keys}
        if wanted:
            with self.sessions() as db:
                for dev, key in db.execute(select(Device.id, Device.pubkey).where(Device.id.in_(sorted(wanted)))):
                    self._keys[dev] = bytes(key)
        for m in items:
            if m.jws is None or m.dev is None or (key := self._keys.get(m.dev)) is None:
                continue
            if (head := self._heads.get(m.dev)) and (seq := verify.named_seq(m.jws)) is not None and seq <= head:
                m.again = seq
                continue
            try:
                m.opened = verify.open_record(m.jws, key, m.dev)
            except verify.Rejected as rej:
                m.opened = rej
            except Exception:  # noqa: BLE001 - a verifier bug: met again in the transaction, which isolates it
                continue
            m.key = key

    def _saw(self, outcomes: Iterable[Outcome]) -> None:
        """Note the committed heads the outcomes report."""
        for o in outcomes:
            if o.dev is not None and o.ack is not None and o.ack > self._heads.get(o.dev, 0):
                self._heads[o.dev] = o.ack

    def _batch(self, db: DbSession, items: list[_Msg]) -> dict[int, Outcome]:
        """The messages in the order given (device, seq), in the caller's transaction."""
        self._prepare(db, items)
        return {id(m): self._one(db, m) for m in items}

    def _prepare(self, db: DbSession, items: list[_Msg]) -> None:
        """Read what the batch needs in a few statements instead of a few per record: its devices'
        rows (locked, in id order: the database stays the arbiter between workers), the seqs
        waiting in `pending` for them, and the cards its records name (locked, in token order)."""
        devs = sorted({m.dev for m in items if m.dev is not None})
        found = db.scalars(select(Device).where(Device.id.in_(devs)).order_by(Device.id).with_for_update()).all() if devs else []
        db.info[_DEVICES] = devices = {d.id: d for d in found}
        pending: dict[str, set[int]] = {d: set() for d in devices}
        if devices:
            for dev, seq in db.execute(select(Pending.dev, Pending.seq).where(Pending.dev.in_(sorted(devices)))):
                pending[dev].add(seq)
        db.info[_PENDING] = pending
        tokens = sorted({m.opened.record["token"] for m in items if isinstance(m.opened, verify.Opened)
                         and m.opened.problem is None and isinstance(m.opened.record.get("token"), str)})
        cards: dict[str, Card | None] = dict.fromkeys(tokens)
        if tokens:
            for card in db.scalars(select(Card).where(Card.token.in_(tokens)).order_by(Card.token).with_for_update()):
                cards[card.token] = card
        db.info[_CARDS] = cards
        db.info[_PLACED] = {}
        db.info[_ROWS] = []

    def _write_rows(self, db: DbSession) -> None:
        """The batch's new sessions in one INSERT (executemany / multi-row VALUES); the unique
        (dev, seq) key is the last word should two writers ever place the same record."""
        rows = db.info.pop(_ROWS, None)
        if rows:
            db.execute(_SESSIONS.insert(), rows)  # Core executemany: the ORM's bulk path costs more per row
        for k in (_DEVICES, _PENDING, _CARDS, _PLACED, _LOADED):
            db.info.pop(k, None)

    def _transaction(self, work: Callable[[DbSession], T]) -> T:
        for attempt in range(RETRIES):
            try:
                with self._writer, self.sessions.begin() as db:
                    result = work(db)
                    self._write_rows(db)
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
            out = self._transaction(lambda db: self._batch(db, [m]))[id(m)]
            self._saw([out])
            return out
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
        with self._writer, self.sessions.begin() as db:
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
        with self._writer, self.sessions.begin() as db:
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
            db.info[_ROWS] = []
            self._advance(db, dev, f"/{dev_id}/rec")
            self._write_rows(db)
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
        topic, seq_hint, dev_id = m.topic, m.seq, m.dev
        if dev_id is None:
            counted = self._anomaly(db, "bad-topic", f"topic {topic!r} is not <prefix>/<dev>/rec", topic, m.data, None,
                                    seq_hint, count=True)
            return Outcome(None, None, "bad-topic", seq_hint, counted=counted)
        devices = db.info.get(_DEVICES)
        dev = devices.get(dev_id) if devices is not None else db.get(Device, dev_id, with_for_update=True)
        if dev is None:
            counted = self._anomaly(db, "unknown-device", f"device {dev_id!r} is not registered", topic, m.data, dev_id,
                                    seq_hint, count=True)
            return Outcome(dev_id, None, "unknown-device", seq_hint, counted=counted)
        if m.again is not None and m.again <= dev.head_seq and m.opened is None:
            stored = db.get(Session, (dev_id, m.again))
            if stored is not None and stored.raw == m.jws:  # the very message verified and stored before
                return Outcome(dev_id, dev.head_seq or None, "duplicate", m.again, ack_hash=dev.head_hash)
        try:
            if m.refused is not None:
                raise m.refused
            assert m.jws is not None
            if m.opened is None or m.key != bytes(dev.pubkey):  # not verified yet, or the key changed since
                self._keys[dev_id] = bytes(dev.pubkey)
                m.key = bytes(dev.pubkey)
                try:
                    m.opened = verify.open_record(m.jws, m.key, dev_id)
                except verify.Rejected as rej:
                    m.opened = rej
            if isinstance(m.opened, verify.Rejected):
                raise m.opened
            opened = m.opened
        except verify.Rejected as rej:
            counted = self._anomaly(db, rej.kind, rej.detail, topic, m.data, dev_id, seq_hint, source=dev_id,
                                    whole=rej.signed, count=True)
            return Outcome(dev_id, None, rej.kind, seq_hint, rej.detail, counted)
        raw = m.jws
        ack, ack_hash = dev.head_seq or None, dev.head_hash
        seq = opened.seq
        known = self._stored_hash(db, dev_id, seq) if seq <= dev.head_seq else None
        waiting = self._pending(db, dev_id, seq) if seq > dev.head_seq else None
        if known is not None or waiting is not None:
            if (known if known is not None else waiting.hash) == opened.hash:  # type: ignore[union-attr]
                return Outcome(dev_id, ack, "duplicate", seq, ack_hash=ack_hash)
            detail = f"seq {seq} already stored with another payload hash"
            counted = self._anomaly(db, "seq-conflict", detail, topic, raw, dev_id, seq, opened.hash, source=dev_id,
                                    whole=True, count=True)
            return Outcome(dev_id, ack, "seq-conflict", seq, detail, counted, ack_hash=ack_hash)
        problem = opened.problem
        if seq > dev.head_seq + 1:
            db.add(Pending(dev=dev_id, seq=seq, hash=opened.hash, prev=opened.prev, raw=raw, problem=problem,
                           received_at=int(self.clock()), gap_reported=False))
            if (pending := db.info.get(_PENDING)) is not None:
                pending.setdefault(dev_id, set()).add(seq)
            return Outcome(dev_id, ack, "pending", seq, ack_hash=ack_hash)
        kind = self._place(db, dev, topic, raw, opened, problem)
        self._advance(db, dev, topic)
        return Outcome(dev_id, dev.head_seq, kind, seq, ack_hash=dev.head_hash)

    def _pending(self, db: DbSession, dev: str, seq: int) -> Pending | None:
        """The record waiting at (dev, seq), if any: a query only when the batch's read of `pending`
        (or, outside a batch, nothing) says one may be there; then the run of consecutive waiting
        records from seq on (up to RUN) comes in the same query, for _advance to place."""
        known = db.info.get(_PENDING)
        if known is None:
            return db.get(Pending, (dev, seq))
        seqs = known.get(dev, ())
        if seq not in seqs:
            return None
        last = seq
        while last + 1 in seqs and last - seq < RUN:
            last += 1
        rows = {p.seq: p for p in db.scalars(select(Pending).where(Pending.dev == dev, Pending.seq >= seq, Pending.seq <= last))}
        for p in rows.values():
            if p.seq != seq:
                db.info.setdefault(_LOADED, {})[(dev, p.seq)] = p
        return rows.get(seq)

    def _waiting(self, db: DbSession, dev: str, seq: int) -> Pending | None:
        """As _pending, taking a row a run read earlier in this transaction when there is one."""
        loaded = db.info.get(_LOADED)
        if loaded is not None and (p := loaded.pop((dev, seq), None)) is not None:
            return p
        return self._pending(db, dev, seq)

    def _stored_hash(self, db: DbSession, dev: str, seq: int) -> str | None:
        placed = db.info.get(_PLACED)
        if placed is not None and (dev, seq) in placed:
            return placed[(dev, seq)]
        s = db.get(Session, (dev, seq))
        if s is not None:
            return s.hash
        return db.scalars(select(Anomaly.hash).where(Anomaly.dev == dev, Anomaly.seq == seq, Anomaly.slot.is_(True))).first()

    def _advance(self, db: DbSession, dev: Device, topic: str) -> None:
        """Place the waiting records that now follow the head."""
        while (p := self._waiting(db, dev.id, dev.head_seq + 1)) is not None:
            opened = verify.reopen(p.raw, dev.id, p.hash, p.prev, p.seq)  # verified on arrival
            self._place(db, dev, topic, p.raw, opened, p.problem)
            db.delete(p)
            if (pending := db.info.get(_PENDING)) is not None:
                pending.get(dev.id, set()).discard(p.seq)

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
            elif (rows := db.info.get(_ROWS)) is not None:  # inserted with the batch's others
                rows.append(session)
                db.info.setdefault(_PLACED, {})[(opened.dev, opened.seq)] = opened.hash
            else:
                db.add(Session(**session))
        if kind != "stored":
            self._anomaly(db, kind, detail, topic, raw, dev.id, opened.seq, opened.hash, slot=True)
        dev.head_seq = opened.seq
        dev.head_hash = opened.hash
        return kind

    def _session(self, db: DbSession, opened: verify.Opened, raw: str) -> dict[str, Any] | str:
        """The billable session row's values, or why the record cannot be one (a value beyond its
        column: the caller keeps it as an `unstorable` anomaly that fills its seq)."""
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
        cards = db.info.get(_CARDS)
        if cards is not None and r["token"] in cards:
            card = cards[r["token"]]
        else:  # a token the batch did not name up front (a waiting record's): locked now, once
            card = db.get(Card, r["token"], with_for_update=True)
            if cards is not None:
                cards[r["token"]] = card
        charged = prepaid.settle(db, card, opened.dev, opened.seq, r, int(self.clock()))
        if isinstance(charged, str):
            return charged
        values.update(charged=charged, stored_at=int(self.clock()))
        return values
