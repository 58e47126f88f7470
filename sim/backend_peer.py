"""A minimal backend for uplink tests (paho-mqtt): stores records by (dev, seq), acks cumulatively.

Not the reference backend (backend/): it does not verify record signatures. It reads seq from the
JWS payload and, like the reference backend, stores each (dev, seq) once and in seq order: a record
that arrives ahead of a gap (the peer was offline while the device sent) waits until the gap
closes. It acks the highest stored seq with a signed ack ({"type": "ack", "dev", "seq", "hash"},
ES256 by its Signer: the key the device must pin as backend_key; default_signer() unless told).
It can misbehave on purpose (late, duplicated, out-of-order, bogus, held acks), answer online
authorization requests (signed answers carrying the request's nonce, or raw payloads a test
forges), sign and publish downlink documents (ES256 with `cryptography`), and collects status
messages and events.
"""
from __future__ import annotations

import base64
import hashlib
import json
import random
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(text: bytes | str) -> bytes:
    if isinstance(text, str):
        text = text.encode()
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


@dataclass
class Signer:
    """An ES256 key pair; .spki_hex is what the device pins as backend_key."""

    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    @property
    def spki_hex(self) -> str:
        der = self.key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return der.hex()

    def sign(self, payload: bytes | dict, kid: str = "backend") -> bytes:
        if isinstance(payload, dict):
            payload = json.dumps(payload, separators=(",", ":")).encode()
        signing_input = b64url(json.dumps({"alg": "ES256", "kid": kid}, separators=(",", ":")).encode()) + b"." + b64url(payload)
        r, s = decode_dss_signature(self.key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return signing_input + b"." + b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


_DEFAULT: Signer | None = None


def default_signer() -> Signer:
    """The backend key of this test process: what BackendPeer signs with and sim.uplink.DeviceRun
    pins unless a test gives its own."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Signer()
    return _DEFAULT


def payload_hash(jws: bytes) -> str:
    """SHA-256 (hex) of a JWS's payload bytes: what a signed ack names."""
    return hashlib.sha256(b64url_decode(jws.split(b".")[1])).hexdigest()


@dataclass
class AckFaults:
    """How the peer misbehaves when acknowledging."""

    delay_s: float = 0.0  # every ack waits this long
    duplicate: bool = False  # every ack is sent twice
    reorder: bool = False  # after each ack, also an older one
    bogus: bool = False  # now and then: acks for a seq far beyond anything sent, with a wrong hash, unsigned, garbage
    every: int = 1  # ack only every n-th stored record (and when idle)
    hold: bool = False  # acks wait until release_acks()


class BackendPeer:
    def __init__(self, host: str, port: int, prefix: str = "evc", faults: AckFaults | None = None,
                 auth: Callable[[str], dict | None] | None = None, signer: Signer | None = None,
                 auth_raw: Callable[[str, dict], list[bytes]] | None = None, auth_ttl_s: int = 300):
        self.host, self.port, self.prefix = host, port, prefix
        self.faults = faults or AckFaults()
        self.auth = auth  # token -> answer fields ({"ok", "contract", "allowance", ...}) or None (silence)
        self.auth_raw = auth_raw  # (dev, request) -> payloads published as they are (forgeries)
        self.auth_ttl_s = auth_ttl_s
        self.signer = signer or default_signer()
        self.sent_acks: list[tuple[str, bytes]] = []  # (dev, payload) as published
        self.hashes: dict[tuple[str, int], str] = {}
        self.records: dict[tuple[str, int], bytes] = {}
        self.order: dict[str, list[int]] = defaultdict(list)
        self.received = 0
        self.duplicates = 0
        self.ahead = 0  # records that arrived before their predecessor
        self.status: dict[str, dict] = {}
        self.status_log: list[dict] = []
        self.events: list[dict] = []
        self.auth_requests: list[dict] = []
        self._lock = threading.Lock()
        self._head: dict[str, int] = defaultdict(int)
        self._since_ack: dict[str, int] = defaultdict(int)
        self._acks: list[tuple[float, str, bytes]] = []
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        self.client.max_inflight_messages_set(200)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._acker = threading.Thread(target=self._ack_loop, daemon=True)

    def start(self) -> "BackendPeer":
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        self._acker.start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() or not getattr(self, "_subscribed", False):
            if time.monotonic() > deadline:
                raise TimeoutError("backend peer could not connect")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._stop.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._acker.join(2)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- MQTT --------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, props=None):
        sock = client.socket()
        if sock is not None:  # paho leaves Nagle on: every ack would wait for a delayed TCP ack
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        p = self.prefix
        client.subscribe([(f"{p}/+/rec", 1), (f"{p}/+/status", 1), (f"{p}/+/evt", 1), (f"{p}/+/auth/req", 1)])
        self._subscribed = True

    def _on_message(self, client, userdata, msg):
        parts = msg.topic.split("/")
        if len(parts) < 3:
            return
        dev, kind = parts[1], "/".join(parts[2:])
        if kind == "rec":
            self._on_record(dev, msg.payload)
        elif kind == "status":
            doc = json.loads(msg.payload)
            with self._lock:
                self.status[dev] = doc
                self.status_log.append(doc)
        elif kind == "evt":
            with self._lock:
                self.events.append(json.loads(msg.payload))
        elif kind == "auth/req":
            req = json.loads(msg.payload)
            with self._lock:
                self.auth_requests.append(req)
            if self.auth_raw is not None:
                for raw in self.auth_raw(dev, req):
                    client.publish(f"{self.prefix}/{dev}/auth/res", raw, qos=1)
                return
            answer = self.auth(req["token"]) if self.auth else None
            if answer is not None:
                client.publish(f"{self.prefix}/{dev}/auth/res", self.auth_answer(dev, req, **answer), qos=1)

    def _on_record(self, dev: str, payload: bytes) -> None:
        body = json.loads(b64url_decode(payload.split(b".")[1]))
        seq = body["seq"]
        with self._lock:
            self.received += 1
            if (dev, seq) in self.records:
                self.duplicates += 1
            else:
                self.records[(dev, seq)] = payload
                self.hashes[(dev, seq)] = payload_hash(payload)
                if seq != self._head[dev] + 1:
                    self.ahead += 1
            head = self._head[dev]
            while (dev, head + 1) in self.records:
                head += 1
                self.order[dev].append(head)  # stored: every predecessor is there
            self._head[dev] = head
            self._since_ack[dev] += 1
            if self._since_ack[dev] < self.faults.every:
                return
            self._since_ack[dev] = 0
            self._queue_ack(dev, head)

    def ack(self, dev: str, seq: int, hash_: str | None = None, signer: Signer | None = None) -> bytes:
        """A signed ack of dev's record seq (hash: the stored one unless given)."""
        doc = {"type": "ack", "dev": dev, "seq": seq, "hash": hash_ if hash_ is not None else self.hashes[(dev, seq)]}
        return (signer or self.signer).sign(doc)

    def auth_answer(self, dev: str, req: dict, signer: Signer | None = None, **fields) -> bytes:
        """A signed answer to the request req of dev; fields override what it says."""
        doc = {"type": "auth", "dev": dev, "nonce": req.get("nonce"), "token": req.get("token"), "ok": False,
               "status": "invalid", "contract": None, "exp": int(time.time()) + self.auth_ttl_s,
               "allowance": None, "bal_seq": 0}
        doc.update(fields)
        return (signer or self.signer).sign(doc)

    def release_acks(self) -> None:
        self.faults.hold = False

    def _queue_ack(self, dev: str, head: int) -> None:
        f = self.faults
        due = time.monotonic() + f.delay_s
        out = [self.ack(dev, head)]
        if f.duplicate:
            out.append(out[0])
        if f.reorder and head > 3:
            out.append(self.ack(dev, head - self._rng.randint(1, 3)))
        if f.bogus and self._rng.random() < 0.1:
            out += [self.ack(dev, head + 1_000_000, "0" * 64), self.ack(dev, head, "0" * 64), b"not json",
                    b'{"seq": "7"}', b"[1]", b'{"seq": -1}', json.dumps({"seq": head}).encode()]
        for payload in out:
            self._acks.append((due, dev, payload))

    def _ack_loop(self) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            with self._lock:
                due = [a for a in self._acks if a[0] <= now] if not self.faults.hold else []
                self._acks = [a for a in self._acks if a not in due]
                if not due and self.faults.every > 1 and now - idle_since > 0.2:
                    for dev, n in self._since_ack.items():  # flush batched acks when the stream pauses
                        if n:
                            self._since_ack[dev] = 0
                            self._queue_ack(dev, self._head[dev])
                    idle_since = now
            for _, dev, payload in due:
                self.client.publish(f"{self.prefix}/{dev}/ack", payload, qos=1)
                self.sent_acks.append((dev, payload))
                idle_since = now
            time.sleep(0.005)

    # -- downlink and checks -----------------------------------------------------------
    def publish(self, dev: str, kind: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(f"{self.prefix}/{dev}/{kind}", payload, qos=1, retain=retain).wait_for_publish(5)

    def stored(self, dev: str) -> list[int]:
        with self._lock:
            return list(self.order[dev])

    def wait(self, cond: Callable[[], bool], timeout: float = 20) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if cond():
                    return True
            time.sleep(0.02)
        return False
