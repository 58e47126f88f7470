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
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

import paho.mqtt.client as paho

from backend import acks, authorize, converge
from backend.ingest import Ingestor, Outcome
from backend.keys import KeyMaterialError, sign_document
from backend.mqtt import connect, make_client

log = logging.getLogger("backend.worker")

CONVERGE_ENV = "EVC_CONVERGE_RETRY_S"  # seconds before a version a device lacks is sent again, or "off"
FAULT_ENV = "EVC_BACKEND_FAULT"  # test hook: "exit-after-store:N" dies after the Nth commit, before acking


class Worker:
    def __init__(self, ingestor: Ingestor, broker: str, prefix: str = "evc", group: str | None = "evc-backend",
                 batch: int = 64, sweep_s: float = 1.0, key=None, auth_ttl_s: int = authorize.TTL_S,
                 converge_retry_s: int | None = -1, converge_sweep_s: float = 5.0, linger_s: float = 0.005):
        self.ingestor = ingestor
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
        return f"$share/{self.group}/{rec}" if self.group else rec

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
        log.info("listening on %s", self.topic)
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
            self.inbox.put(msg)
        except Exception as exc:  # noqa: BLE001
            log.exception("message not handled")
            self._note("internal-error", f"{type(exc).__name__}: {exc}", msg)
            client.ack(msg.mid, msg.qos)

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

    def _handle_safely(self, client: paho.Client, msgs: list[paho.MQTTMessage]) -> None:
        """_handle, and whatever it raises (the database away: ingest_many raises nothing else) is
        logged; the messages are acked to the broker all the same (it would stop delivering with
        its in-flight window full) but not to their devices, which send them again."""
        try:
            self._handle(client, msgs)
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
        try:
            while not stop.is_set():
                try:
                    first = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    first = None
                if first is not None:
                    self._handle_safely(client, self._collect(first))
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
            client.disconnect()
            client.loop_stop()

    def _collect(self, first: paho.MQTTMessage) -> list[paho.MQTTMessage]:
        """A batch: what is queued already, then what comes within linger_s of the first message,
        at most `batch` messages (the broker holds back the rest of its in-flight window until
        they are acked, so waiting longer than that cannot fill a batch anyway)."""
        msgs = [first]
        deadline = time.monotonic() + self.linger_s
        while len(msgs) < self.batch:
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

    def _handle(self, client: paho.Client, msgs: list[paho.MQTTMessage]) -> None:
        outcomes = self.ingestor.ingest_many([(m.topic, m.payload) for m in msgs])
        self.stored += sum(o.kind == "stored" for o in outcomes)
        if self._fault_after is not None and self.stored >= self._fault_after:
            log.error("fault injection: exiting after %d stored records, before acknowledging", self.stored)
            os._exit(70)
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
