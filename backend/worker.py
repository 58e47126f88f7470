"""The ingest worker: MQTT in, verify and store in one transaction, then acknowledge.

Several workers share the load through an MQTT shared subscription ($share/<group>/<prefix>/+/rec).
A message is acknowledged to the broker (QoS 1 PUBACK, manual) and to the device ({"seq": N}) only
after the transaction that stored it has committed. Messages that queue up while a transaction runs
go into the next one together, which is what keeps the rate up when the database syncs to disk.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time

import paho.mqtt.client as paho

from backend import authorize
from backend.ingest import Ingestor, Outcome
from backend.mqtt import connect, make_client

log = logging.getLogger("backend.worker")

FAULT_ENV = "EVC_BACKEND_FAULT"  # test hook: "exit-after-store:N" dies after the Nth commit, before acking


class Worker:
    def __init__(self, ingestor: Ingestor, broker: str, prefix: str = "evc", group: str | None = "evc-backend",
                 batch: int = 64, sweep_s: float = 1.0):
        self.ingestor = ingestor
        self.broker = broker
        self.prefix = prefix
        self.group = group
        self.batch = batch
        self.sweep_s = sweep_s
        self.inbox: queue.Queue[paho.MQTTMessage] = queue.Queue()
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
        if msg.topic.endswith("/auth/req"):
            self._answer_auth(client, msg)  # a driver is waiting at the charger: answer now
            return
        self.inbox.put(msg)

    def _answer_auth(self, client: paho.Client, msg: paho.MQTTMessage) -> None:
        try:
            res = authorize.answer(self.ingestor.sessions, msg.payload)
        except Exception:  # a database hiccup must not kill the MQTT thread; the device falls back
            log.exception("auth request failed")
            res = None
        if res is not None:
            dev = msg.topic[len(self.prefix) + 1:].split("/", 1)[0]
            client.publish(f"{self.prefix}/{dev}/auth/res", json.dumps(res), qos=1)
        client.ack(msg.mid, msg.qos)

    def run(self, stop: threading.Event) -> None:
        client = make_client(self.broker, "evc-backend", manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        connect(client, self.broker)
        next_sweep = time.monotonic() + self.sweep_s
        try:
            while not stop.is_set():
                try:
                    first = self.inbox.get(timeout=0.2)
                except queue.Empty:
                    first = None
                if first is not None:
                    msgs = [first]
                    while len(msgs) < self.batch:
                        try:
                            msgs.append(self.inbox.get_nowait())
                        except queue.Empty:
                            break
                    self._handle(client, msgs)
                if time.monotonic() >= next_sweep:
                    self.ingestor.sweep_gaps()
                    next_sweep = time.monotonic() + self.sweep_s
        finally:
            client.disconnect()
            client.loop_stop()

    def _handle(self, client: paho.Client, msgs: list[paho.MQTTMessage]) -> None:
        outcomes = self.ingestor.ingest_many([(m.topic, m.payload) for m in msgs])
        self.stored += sum(o.kind == "stored" for o in outcomes)
        if self._fault_after is not None and self.stored >= self._fault_after:
            log.error("fault injection: exiting after %d stored records, before acknowledging", self.stored)
            os._exit(70)
        for dev, seq in self._acks(outcomes).items():
            client.publish(f"{self.prefix}/{dev}/ack", json.dumps({"seq": seq}), qos=1)
        for m in msgs:
            client.ack(m.mid, m.qos)
        for o in outcomes:
            if o.kind != "stored":
                log.info("%s dev=%s seq=%s %s", o.kind, o.dev, o.seq, o.detail)

    @staticmethod
    def _acks(outcomes: list[Outcome]) -> dict[str, int]:
        """One cumulative ack per device per batch: the highest head any outcome reported."""
        acks: dict[str, int] = {}
        for o in outcomes:
            if o.dev is not None and o.ack is not None:
                acks[o.dev] = max(acks.get(o.dev, 0), o.ack)
        return acks
