"""The ingest worker: MQTT in, verify and store in one transaction, then acknowledge.

Several workers share the load through an MQTT shared subscription ($share/<group>/<prefix>/+/rec).
A message is acknowledged to the broker (QoS 1 PUBACK, manual) and to the device (an ack signed by
the backend key: {"type": "ack", "dev", "seq": N, "hash"}, backend/acks.py) only after the transaction
that stored it has committed. Messages that queue up while a transaction runs go into the next one
together, which is what keeps the rate up when the database syncs to disk: a batch is what is
queued plus what arrives within linger_s of its first message, at most `batch` messages (every wait
has its deadline). The ack names the hash the committed transaction reported for the device's head
(no read back). A batch whose commit fails is not acknowledged to any device (the broker gets its
PUBACKs so that its window does not fill); the devices send the records again and they are stored
then, or recognised as stored (duplicates) and acknowledged again. Online authorization
answers (backend/authorize.py) are signed with the same key.

Two threads share the work (issue #23): one collects a batch and verifies it (Ingestor.prepare,
no transaction) while the other stores and acknowledges the batch before (Ingestor.store). ECDSA
and SQLite's commit let go of the GIL, so the two overlap on a second core.

Device affinity (issue #23, `Partition`): with $EVC_BACKEND_PARTITION=I/N the worker owns the
devices whose CRC-32 of the id, modulo N, is I. Every worker then subscribes to all records (no
$share) and takes only its own devices' (the others' are PUBACKed at once), so each device's
records reach one worker in order. With a shared subscription the broker deals them round robin:
a record often came before its predecessor, waited in `pending`, and 2 workers stored less than 1.

When a worker is down nothing is lost: its devices' records are not acknowledged, and a device
sends its unacknowledged records again after a reconnect or `uplink.resend_s` (30 s) without an
ack (docs/protocol.md). The other workers watch the seqs of the devices they do not own: a round of
resends at least QUIET_S after the device's last new record is a sign that its owner did not store
them. On the first such round the next worker after the owner takes the resent records (on the
second round the one after that, and so on: someone takes over even when several are down); when
one of them is stored (not a duplicate: the owner had not stored it) that worker adopts the owner's
partition for ADOPT_S, i.e. takes all its records. So a down worker's devices are late by about one
resend period, never lost; an adoption lapses after ADOPT_S (the owner may be back) and, if the
owner is still down, comes back with the next round of resends. Two workers taking one device at
once (an adoption while the owner is back, a restart) is safe: the database is the arbiter between
workers, as with shared subscriptions (device rows locked, `pending`, the (dev, seq) key).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import zlib

import paho.mqtt.client as paho

from backend import acks, authorize, converge, verify
from backend.ingest import Ingestor, Outcome
from backend.keys import KeyMaterialError, sign_document
from backend.mqtt import connect, make_client

log = logging.getLogger("backend.worker")

CONVERGE_ENV = "EVC_CONVERGE_RETRY_S"  # seconds before a version a device lacks is sent again, or "off"
FAULT_ENV = "EVC_BACKEND_FAULT"  # test hook: "exit-after-store:N" dies after the Nth commit, before acking
PARTITION_ENV = "EVC_BACKEND_PARTITION"  # "I/N": this worker owns partition I of N (device affinity)
# The broker hands a client at most this many unacknowledged QoS 1 messages (max_inflight_messages in
# the config `broker files` writes, and the test broker's); records are PUBACKed after their commit.
BROKER_WINDOW = 100
ADOPT_S = 300  # seconds a worker keeps a partition it adopted from a worker that seemed down
QUIET_S = 10  # a resend counts as a sign of a down worker only this long after the device's last new record
MAX_TRACKED = 100_000  # devices of other partitions whose seqs are followed (a flood of made-up ids resets it)


class Partition:
    """Which records a worker of a partitioned group takes (module docstring: device affinity)."""

    def __init__(self, index: int, count: int, quiet_s: float = QUIET_S):
        if not 0 <= index < count:
            raise ValueError(f"partition {index}/{count}: want 0 <= I < N")
        self.index, self.count, self.quiet_s = index, count, quiet_s
        self.adopted: dict[int, float] = {}  # partition -> monotonic time its adoption lapses
        # other partitions' devices: (top seq, when it came, last seq, rounds of resends since)
        self._seen: dict[str, tuple[int, float, int, int]] = {}
        self._probes: set[tuple[str, int]] = set()  # resent records taken to learn whether their owner is down

    @classmethod
    def parse(cls, spec: str) -> "Partition":
        index, sep, count = spec.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"partition {spec!r}: want I/N, e.g. 0/2")
        return cls(int(index), int(count))

    def owner(self, dev: str) -> int:
        return zlib.crc32(dev.encode("utf-8", "surrogatepass")) % self.count

    def takes(self, dev: str, seq: int | None, now: float) -> bool:
        """Whether this worker takes a record of `dev` naming `seq` (unverified: it only steers).
        Runs on the MQTT thread."""
        owner = self.owner(dev)
        if owner == self.index:
            return True
        if self.adopted.get(owner, 0) > now:
            self._rounds(dev, seq, now)
            return True
        rounds = self._rounds(dev, seq, now)
        if rounds and rounds >= (self.index - owner) % self.count and seq is not None:
            # my turn (the workers before me did not ack it either): a probe, see settled()
            if len(self._probes) >= MAX_TRACKED:
                self._probes.clear()
            self._probes.add((dev, seq))
            return True
        return False

    def settled(self, dev: str, seq: int | None, kind: str, now: float) -> None:
        """What became of a record this worker took; a probe that was not stored before (anything
        but a duplicate) means its owner is down: adopt the owner's partition. Runs after the commit."""
        if seq is None or (dev, seq) not in self._probes:
            return
        self._probes.discard((dev, seq))
        if kind in ("duplicate", "internal-error"):  # the owner stored it (or nobody did): no verdict on the owner
            return
        owner = self.owner(dev)
        if self.adopted.get(owner, 0) <= now:
            log.warning("adopting partition %d/%d: its worker left seq %d of %s unstored", owner, self.count, seq, dev)
        self.adopted[owner] = now + ADOPT_S

    def _rounds(self, dev: str, seq: int | None, now: float) -> int:
        """Rounds of resends from a device since it last sent a new seq, counted only once quiet_s
        have passed since then (a resend at once, after a reconnect, says nothing about the owner):
        a seq not above the last one seen starts a round (a device resends in seq order)."""
        if seq is None:
            return 0
        if len(self._seen) >= MAX_TRACKED and dev not in self._seen:
            self._seen.clear()
        top, top_at, last, rounds = self._seen.get(dev, (0, now, 0, 0))
        if seq > top:
            top, top_at, rounds = seq, now, 0
        elif seq <= last and now - top_at >= self.quiet_s:
            rounds += 1
        self._seen[dev] = (top, top_at, seq, rounds)
        return rounds


class Worker:
    def __init__(self, ingestor: Ingestor, broker: str, prefix: str = "evc", group: str | None = "evc-backend",
                 batch: int = 64, sweep_s: float = 1.0, key=None, auth_ttl_s: int = authorize.TTL_S,
                 converge_retry_s: int | None = -1, converge_sweep_s: float = 5.0, linger_s: float = 0.005,
                 partition: Partition | None | str = "env"):
        self.ingestor = ingestor
        # device affinity: None takes every record it is given (shared subscription); by default
        # $EVC_BACKEND_PARTITION
        if partition == "env":
            env = os.environ.get(PARTITION_ENV, "").strip()
            partition = Partition.parse(env) if env else None
        self.partition: Partition | None = partition  # type: ignore[assignment]
        # downlink convergence (backend/converge.py): device statuses in, what a device lacks out;
        # None: off (a worker that only ingests); by default converge.RETRY_S, or $EVC_CONVERGE_RETRY_S
        # (seconds, or "off")
        if converge_retry_s == -1:
            env = os.environ.get(CONVERGE_ENV, "").strip()
            converge_retry_s = None if env == "off" else int(env) if env.isdigit() else converge.RETRY_S
        self.converge_retry_s = converge_retry_s
        self.converge_sweep_s = converge_sweep_s
        self.statuses: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=10000)
        self.converger: converge.Converger | None = None
        self.key = key  # the backend's private key (keys.Keys.private_key()): signs acks and auth answers
        self.auth_ttl_s = auth_ttl_s
        self.broker = broker
        self.prefix = prefix
        self.group = group
        self.batch = max(1, batch)
        self.linger_s = linger_s  # how long a batch may wait for more records once its first is in
        self.sweep_s = sweep_s
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
        # (kind, detail, topic, raw, dev) found on the MQTT thread; run() stores them (Ingestor.note)
        self.problems: queue.Queue[tuple[str, str, str, bytes, str | None]] = queue.Queue()
        self.subscribed = threading.Event()
        self.stored = 0
        self._fault_after = self._fault()

    @staticmethod
    def _fault() -> int | None:
        spec = os.environ.get(FAULT_ENV, "")
        if spec.startswith("exit-after-store:"):
            return int(spec.split(":", 1)[1])
        return None

    @property
    def topic(self) -> str:
        rec = f"{self.prefix}/+/rec"
        return f"$share/{self.group}/{rec}" if self.group and self.partition is None else rec

    def _on_connect(self, client: paho.Client, _userdata, _flags, reason, _props) -> None:
        if reason.is_failure:
            log.error("broker refused the connection: %s", reason)
            return
        client.subscribe(self.topic, qos=1)
        client.subscribe(self.auth_topic, qos=1)
        if self.converge_retry_s is not None:  # plain, not shared: the retained statuses come on subscribe
            client.subscribe(f"{self.prefix}/+/status", qos=1)

    @property
    def auth_topic(self) -> str:
        req = f"{self.prefix}/+/auth/req"
        return f"$share/{self.group}/{req}" if self.group else req

    def _on_subscribe(self, _client, _userdata, _mid, reasons, _props) -> None:
        if any(r.is_failure for r in reasons):
            log.error("subscription to %s refused (%s): does the broker support shared subscriptions?", self.topic, reasons)
            return
        part = f" (partition {self.partition.index}/{self.partition.count})" if self.partition is not None else ""
        log.info("listening on %s%s", self.topic, part)
        self.subscribed.set()

    def _on_message(self, client, _userdata, msg: paho.MQTTMessage) -> None:
        # Nothing a message holds may stop the MQTT thread (paho ends its loop on a callback's
        # exception): whatever goes wrong is logged, kept as an anomaly, and the message acked.
        try:
            if msg.topic.endswith("/status"):  # state, retained and idempotent: acked at once
                if self.converge_retry_s is not None:
                    try:
                        self.statuses.put_nowait((msg.topic, bytes(msg.payload)))
                    except queue.Full:  # the next status or the sweep catches up
                        pass
                client.ack(msg.mid, msg.qos)
                return
            if msg.topic.endswith("/auth/req"):
                why = authorize.unreadable(msg.payload)
                if why is not None:  # no answer (as before), but on record, counted like any anomaly
                    self._note("bad-auth-req", why, msg)
                    client.ack(msg.mid, msg.qos)
                    return
                self._answer_auth(client, msg)  # a driver is waiting at the charger: answer now
                return
            if self.partition is not None and not self._mine(msg):
                client.ack(msg.mid, msg.qos)  # another worker's device: the broker may forget it
                return
            self.inbox.put(msg)
        except Exception as exc:  # noqa: BLE001
            log.exception("message not handled")
            self._note("internal-error", f"{type(exc).__name__}: {exc}", msg)
            client.ack(msg.mid, msg.qos)

    def _mine(self, msg: paho.MQTTMessage) -> bool:
        """Whether this worker's partition takes the record (any topic: whoever owns a made-up
        device id keeps its anomaly)."""
        assert self.partition is not None
        parts = msg._topic.split(b"/")  # noqa: SLF001 - bytes: msg.topic raises on a topic that is not UTF-8
        dev = parts[-2] if len(parts) >= 3 else msg._topic  # noqa: SLF001
        return self.partition.takes(dev.decode("utf-8", "surrogateescape"), verify.named_seq(msg.payload),
                                    time.monotonic())

    def _note(self, kind: str, detail: str, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # paho raises on a topic that is not UTF-8 (brokers should refuse it)
            topic = msg._topic.decode("utf-8", "backslashreplace")  # noqa: SLF001
        parts = topic.split("/")
        dev = parts[-3] if len(parts) >= 3 and topic.endswith("/auth/req") else None
        self.problems.put((kind, detail, topic, bytes(msg.payload), dev))

    def _store_problems(self) -> None:
        found = []
        while len(found) < 1000:
            try:
                found.append(self.problems.get_nowait())
            except queue.Empty:
                break
        if found:
            self.ingestor.note(found)

    def _handle_safely(self, client: paho.Client, msgs: list[paho.MQTTMessage], prepared=None) -> None:
        """_handle, and whatever it raises (the database away: ingest_many raises nothing else) is
        logged; the messages are acked to the broker all the same (it would stop delivering with
        its in-flight window full) but not to their devices, which send them again."""
        try:
            self._handle(client, msgs, prepared)
        except Exception:  # noqa: BLE001
            log.exception("%d messages not stored; their devices will send them again", len(msgs))
            for m in msgs:
                client.ack(m.mid, m.qos)
            time.sleep(1)  # a database that is away: do not spin

    def _answer_auth(self, client: paho.Client, msg: paho.MQTTMessage) -> None:
        dev = msg.topic[len(self.prefix) + 1:].split("/", 1)[0]
        try:
            res = authorize.answer(self.ingestor.sessions, msg.payload, dev, ttl_s=self.auth_ttl_s)
            signed = sign_document(self._key(), res) if res is not None else None
        except Exception:  # a database hiccup must not kill the MQTT thread; the device falls back
            log.exception("auth request failed")
            signed = None
        if signed is not None:
            client.publish(f"{self.prefix}/{dev}/auth/res", signed, qos=1)
        client.ack(msg.mid, msg.qos)

    def run(self, stop: threading.Event) -> None:
        self._key()  # no key, no acks a device would believe: say so before taking any record
        client = make_client(self.broker, "evc-backend", manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.suppress_exceptions = True  # a callback's exception is logged, never the end of the loop
        connect(client, self.broker)
        if self.converge_retry_s is not None:
            from backend.downlink import Downlinks

            self.converger = converge.Converger(
                self.ingestor.sessions, Downlinks(self.ingestor.sessions, converge.PinnedKey(self._key()), self.prefix),
                retry_s=self.converge_retry_s)
        next_converge = time.monotonic() + self.converge_sweep_s
        next_sweep = time.monotonic() + self.sweep_s
        done = threading.Event()
        ready: queue.Queue = queue.Queue(maxsize=1)  # one batch verified ahead of the one being stored
        verifier = threading.Thread(target=self._prepare_batches, args=(stop, done, ready), name="evc-verify",
                                    daemon=True)
        verifier.start()
        try:
            while not stop.is_set():
                try:
                    batch = ready.get(timeout=0.2)
                except queue.Empty:
                    batch = None
                if batch is not None:
                    self._handle_safely(client, *batch)
                self._converge(client)
                if self.converger is not None and time.monotonic() >= next_converge:
                    try:
                        self.converger.sweep(self._publisher(client))
                    except Exception:  # noqa: BLE001 - the database away; the next sweep tries again
                        log.exception("convergence sweep failed")
                    next_converge = time.monotonic() + self.converge_sweep_s
                if time.monotonic() >= next_sweep:
                    try:
                        self._store_problems()
                        self.ingestor.sweep_gaps()
                    except Exception:  # noqa: BLE001 - the database away; the next sweep tries again
                        log.exception("sweep failed")
                    next_sweep = time.monotonic() + self.sweep_s
        finally:
            done.set()
            verifier.join(5)
            client.disconnect()
            client.loop_stop()

    def _prepare_batches(self, stop: threading.Event, done: threading.Event, ready: queue.Queue) -> None:
        """The verifying thread: collect a batch, verify it, hand it to run() to store."""
        while not (stop.is_set() or done.is_set()):
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            msgs = self._collect(first)
            try:
                prepared = self.ingestor.prepare([(m.topic, m.payload) for m in msgs])
            except Exception:  # noqa: BLE001 - e.g. the database away: run() meets it again and copes
                prepared = None
            while not (stop.is_set() or done.is_set()):
                try:
                    ready.put((msgs, prepared), timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _collect(self, first: paho.MQTTMessage) -> list[paho.MQTTMessage]:
        """A batch: what is queued already, then what comes within linger_s of the first message,
        at most `batch` messages and half the broker's in-flight window (it holds back the rest
        until they are acked, so waiting longer than that cannot fill a batch anyway)."""
        msgs = [first]
        deadline = time.monotonic() + self.linger_s
        # half the broker's window at most: the next batch fills while this one is stored
        limit = min(self.batch, max(1, BROKER_WINDOW // 2))
        while len(msgs) < limit:
            try:
                msgs.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msgs.append(self.inbox.get(timeout=left))
            except queue.Empty:
                break
        return msgs

    @staticmethod
    def _publisher(client: paho.Client):
        def publish(msgs: list[tuple[str, str, bool]]) -> None:
            for topic, payload, retain in msgs:
                info = client.publish(topic, payload, qos=1, retain=retain)
                if info.rc != paho.MQTT_ERR_SUCCESS:
                    raise ConnectionError(f"broker did not take {topic}: {paho.error_string(info.rc)}")
        return publish

    def _converge(self, client: paho.Client) -> None:
        """Device statuses that came in: record what each holds, send what it lacks."""
        if self.converger is None:
            return
        for _ in range(100):
            try:
                topic, payload = self.statuses.get_nowait()
            except queue.Empty:
                return
            try:
                self.converger.on_status(topic, payload, self._publisher(client))
            except converge.StatusError as exc:
                log.info("status on %s ignored: %s", topic[:80], exc)
            except Exception:  # noqa: BLE001 - the database or the broker away: the sweep tries again
                log.exception("convergence failed for %s", topic[:80])

    def _handle(self, client: paho.Client, msgs: list[paho.MQTTMessage], prepared=None) -> None:
        if prepared is not None:  # verified by the other thread
            outcomes = self.ingestor.store(prepared)
        else:
            outcomes = self.ingestor.ingest_many([(m.topic, m.payload) for m in msgs])
        self.stored += sum(o.kind == "stored" for o in outcomes)
        if self._fault_after is not None and self.stored >= self._fault_after:
            log.error("fault injection: exiting after %d stored records, before acknowledging", self.stored)
            os._exit(70)
        if self.partition is not None:
            now = time.monotonic()
            for o in outcomes:
                if o.dev is not None:
                    self.partition.settled(o.dev, o.seq, o.kind, now)
        for topic, payload in self._ack_messages(*self._acks(outcomes)):
            client.publish(topic, payload, qos=1)
        for m in msgs:
            client.ack(m.mid, m.qos)
        for o in outcomes:
            if o.kind in ("pending", "duplicate"):  # the ordinary course with shared subscriptions and re-sends
                log.debug("%s dev=%s seq=%s", o.kind, o.dev, o.seq)
            elif o.kind != "stored" and not o.quiet:
                log.info("%s dev=%s seq=%s %s", o.kind, o.dev, o.seq, o.detail)

    def _key(self):
        if self.key is None:
            raise KeyMaterialError("the worker signs acks and authorization answers: give it the backend key")
        return self.key

    def _ack_messages(self, heads: dict[str, int], known: dict[str, str] | None = None) -> list[tuple[str, str]]:
        """The signed ack for each device's head: seq and the stored payload hash of that record
        (as the committed transaction reported it, else read back from the database)."""
        key = self._key()
        found = dict(known or {})
        missing = {dev: seq for dev, seq in heads.items() if dev not in found}
        if missing:
            found.update(acks.hashes(self.ingestor.sessions, missing))
        return [(f"{self.prefix}/{dev}/ack", acks.sign(key, dev, seq, found[dev])) for dev, seq in heads.items() if found.get(dev)]

    @staticmethod
    def _acks(outcomes: list[Outcome]) -> tuple[dict[str, int], dict[str, str]]:
        """One cumulative ack per device per batch: the highest head any outcome reported, and the
        payload hash of that record when the outcome carried it."""
        heads: dict[str, int] = {}
        hashes: dict[str, str] = {}
        for o in outcomes:
            if o.dev is not None and o.ack is not None and o.ack >= heads.get(o.dev, 0):
                heads[o.dev] = o.ack
                if o.ack_hash:
                    hashes[o.dev] = o.ack_hash
                else:
                    hashes.pop(o.dev, None)
        return heads, hashes
