"""Records for the backend tests, made by the firmware itself under MicroPython (crypto/keys.py,
billing/record.py), plus a test device that publishes them over MQTT and resends what is unacked."""
from __future__ import annotations

import base64
import datetime
import hashlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sim import mpy

BASE_T = 1_760_000_000  # 2025-10-09, a time the records claim


@dataclass(frozen=True)
class Made:
    dev: str
    pubkey_pem: bytes
    records: list[str]  # JWS, seq 1..n in order


def payload(jws: str) -> bytes:
    p = jws.split(".")[1]
    return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))


def payload_hash(jws: str) -> str:
    """What the next record's prev must be."""
    return hashlib.sha256(payload(jws)).hexdigest()


def session_fields(dev: str, seq: int, token: str, cost: int = 250, wh: int = 1500, prepaid: bool = False) -> dict:
    """The schema fields of one finished session (the firmware adds energy_wh, ocmf and signs).
    prepaid: the session was paid from the card's prepaid balance, so the record carries `charged`
    (what the firmware books in its ledger and the backend debits: docs/prepaid.md)."""
    start = BASE_T + seq * 3600
    fields = {
        "v": 1, "dev": dev, "seq": seq, "token": token, "auth": "list", "contract": None,
        "tariff": {"id": "std", "ver": 3},
        "start": {"t": start, "tq": "S", "wh": 100_000 + seq * 10_000},
        "stop": {"t": start + 1800, "tq": "S", "wh": 100_000 + seq * 10_000 + wh, "reason": "card"},
        "meter": {"model": "sdm630", "serial": "M-0001"},
        "cost": {"currency": "EUR", "excl": cost * 100 // 119, "incl": cost, "lines": [{"dim": "ENERGY", "incl": cost}]},
        "flags": [], "fw": "0.1.0",
    }
    if prepaid:
        fields["charged"] = cost
    return fields


TOKEN = "%032x" % 7


def _b64(b: bytes) -> bytes:
    return base64.urlsafe_b64encode(b).rstrip(b"=")


def _tm(t: int) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S,000+0000 S")


def _kwh(wh: int) -> str:
    return f"{wh // 1000}.{wh % 1000:03d}"


def seal(key, dev: str, seq: int, prev: str, token: str = TOKEN) -> tuple[str, str]:
    """(JWS, payload hash) of the record session_fields(dev, seq, token) describes, sealed in
    CPython with `cryptography` (a fleet's worth in seconds: bench/backend.py), byte for byte as
    firmware/billing/record.py writes it (signatures aside: ECDSA nonces differ)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    start, wh0 = BASE_T + seq * 3600, 100_000 + seq * 10_000
    stop, wh1 = start + 1800, wh0 + 1500

    def rd(t: int, tx: str, wh: int) -> str:
        return '{"TM":"%s","TX":"%s","RV":%s,"RI":"01-00:01.08.00","RU":"kWh","ST":"G"}' % (_tm(t), tx, _kwh(wh))

    op = ('{"FV":"1.0","GI":"EVC-FIRMWARE","GS":"%s","GV":"0.1.0","PG":"T%d","MV":"sdm630","MM":"sdm630",'
          '"MS":"M-0001","IS":true,"IT":"UNDEFINED","ID":"%s","RD":[%s,%s]}') % (dev, seq, token, rd(start, "B", wh0),
                                                                                 rd(stop, "E", wh1))
    sd = key.sign(op.encode(), ec.ECDSA(hashes.SHA256())).hex().upper()
    ocmf = 'OCMF|%s|{"SA":"ECDSA-secp256r1-SHA256","SD":"%s"}' % (op, sd)
    payload = ('{"v":1,"dev":"%s","seq":%d,"prev":"%s","token":"%s","auth":"list","contract":null,'
               '"tariff":{"id":"std","ver":3},"start":{"t":%d,"tq":"S","wh":%d},'
               '"stop":{"t":%d,"tq":"S","wh":%d,"reason":"card"},"meter":{"model":"sdm630","serial":"M-0001"},'
               '"energy_wh":1500,"cost":{"currency":"EUR","excl":210,"incl":250,"lines":[{"dim":"ENERGY","incl":250}]},'
               '"flags":[],"fw":"0.1.0","ocmf":%s}') % (dev, seq, prev, token, start, wh0, stop, wh1,
                                                         json.dumps(ocmf))
    body = payload.encode()
    signing = _b64(json.dumps({"alg": "ES256", "kid": dev}, separators=(",", ":")).encode()) + b"." + _b64(body)
    r, s = decode_dss_signature(key.sign(signing, ec.ECDSA(hashes.SHA256())))
    return (signing + b"." + _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode(), hashlib.sha256(body).hexdigest()


_MAKE = """
import json
from crypto import keys, der
from billing import record
key = keys.load_or_create(KEY)
prev = PREV
for f in json.loads(FIELDS):
    if f.get("prev") is None:
        f["prev"] = prev
    body, j = record.seal(key, f)
    prev = record.digest(body)
    emit({"jws": j.decode() if isinstance(j, (bytes, bytearray)) else j, "hash": prev})
emit({"pem": key.public_pem() if isinstance(key.public_pem(), str) else key.public_pem().decode()})
"""


def make_records(root: Path, dev: str, fields: list[dict], prev: str = "") -> tuple[bytes, list[str], list[str]]:
    """Seal `fields` (each without prev: chained from `prev`) with the firmware's key for dev
    (created under root on first use). Returns (public key PEM, JWS list, payload hashes)."""
    key = root / f"{dev}.key"
    code = (_MAKE.replace("KEY", json.dumps(str(key))).replace("PREV", json.dumps(prev))
            .replace("FIELDS", repr(json.dumps(fields))))
    out = mpy.run(code, timeout=600).results
    return out[-1]["pem"].encode(), [o["jws"] for o in out[:-1]], [o["hash"] for o in out[:-1]]


def make_device(root: Path, dev: str, n: int, tokens: list[str], prepaid: tuple[str, ...] = ()) -> Made:
    """n chained records of dev, card by card from tokens; records of the `prepaid` tokens carry `charged`."""
    fields = []
    for s in range(1, n + 1):
        tok = tokens[(s - 1) % len(tokens)]
        fields.append(session_fields(dev, s, tok, prepaid=tok in prepaid))
    pem, jws, _ = make_records(root, dev, fields)
    return Made(dev, pem, jws)


class ChargerLink:
    """Publishes records at QoS 1 as a charger would and tracks the backend's cumulative acks;
    `resend_unacked()` is what the firmware does after every reconnect."""

    def __init__(self, broker_url: str, dev: str, records: list[str], prefix: str = "evc", backend_key: str | None = None):
        from backend.mqtt import connect, make_client

        self.dev, self.records, self.prefix = dev, records, prefix
        self.backend_key = backend_key  # hex SPKI DER, as a device pins it
        self.acked = 0
        self.acks: list[int] = []
        self.ack_docs: list[dict] = []
        self.bad_acks: list[bytes] = []
        self._cond = threading.Condition()
        self.client = make_client(broker_url, f"test-{dev}")
        self.client.on_message = self._on_message
        connect(self.client, broker_url)
        self.client.subscribe(f"{prefix}/{dev}/ack", qos=1)
        time.sleep(0.2)  # SUBACK before the first record

    def _on_message(self, _c, _u, msg) -> None:
        # a signed ack (JWS of {"type": "ack", "dev", "seq", "hash"}); a plain {"seq": N} is taken too
        # (the benchmark's unsigned baseline). With backend_key set only a genuine ack for this
        # device with the right record hash counts; the others land in bad_acks.
        raw = msg.payload
        doc = json.loads(raw) if raw.startswith(b"{") else json.loads(payload(raw.decode()))
        if self.backend_key is not None and not self._genuine(raw, doc):
            with self._cond:
                self.bad_acks.append(raw)
            return
        seq = doc["seq"]
        with self._cond:
            self.ack_docs.append(doc)
            self.acks.append(seq)
            self.acked = max(self.acked, seq)
            self._cond.notify_all()

    def _genuine(self, raw: bytes, doc: dict) -> bool:
        from evc.verify import VerifyError, verify_jws

        try:
            verify_jws(raw, self.backend_key)
        except VerifyError:
            return False
        seq = doc.get("seq")
        return (doc.get("type") == "ack" and doc.get("dev") == self.dev and isinstance(seq, int)
                and 1 <= seq <= len(self.records) and doc.get("hash") == payload_hash(self.records[seq - 1]))

    def send(self, seqs) -> None:
        for s in seqs:
            self.client.publish(f"{self.prefix}/{self.dev}/rec", self.records[s - 1], qos=1).wait_for_publish(10)

    def send_raw(self, payload: str) -> None:
        self.client.publish(f"{self.prefix}/{self.dev}/rec", payload, qos=1).wait_for_publish(10)

    def resend_unacked(self) -> None:
        self.send(range(self.acked + 1, len(self.records) + 1))

    def wait_acked(self, seq: int, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.acked < seq:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
