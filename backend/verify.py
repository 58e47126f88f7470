"""Record verification (evc/verify.py) sorted by what the ingest worker must do with a failure.

- The JWS does not verify with the device's registered key (forged, corrupted, wrong device,
  unreadable): `Rejected`. It is not the device's word, so it never fills a seq and is never acked.
- The JWS verifies but the payload, schema or OCMF part is wrong: the device itself signed a bad
  record. `open_record` returns it with `problem` set; it fills its seq as an anomaly, is acked
  (the device may forget it: it is stored) and is never billed.

The chain link (prev against the stored predecessor) is checked by backend/ingest.py, which has the
predecessor; evc.verify's own chain check needs the whole previous record in memory.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec
from evc import verify as ev

MAX_RECORD_BYTES = 16384

# evc.verify reasons raised before (or instead of) a good signature: not the device's record.
_NOT_SIGNED = {ev.Reason.FORMAT: "malformed", ev.Reason.HEADER: "malformed", ev.Reason.ALG: "bad-signature",
               ev.Reason.KID: "bad-signature", ev.Reason.KEY: "bad-signature", ev.Reason.SIGNATURE: "bad-signature"}
# raised after the signature verified: the device signed it.
_SIGNED = {ev.Reason.PAYLOAD: "bad-record", ev.Reason.SCHEMA: "bad-record"}  # OCMF reasons: "bad-ocmf"


class Rejected(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Opened:
    dev: str
    seq: int
    prev: str
    hash: str  # SHA-256 hex of the payload bytes: what the next record's prev must be
    payload: bytes  # exactly the signed bytes
    record: dict
    problem: str | None = None  # "kind: detail" when the device signed a bad record


@lru_cache(maxsize=4096)
def _key(pubkey_der: bytes) -> ec.EllipticCurvePublicKey:
    return ev.load_public_key(pubkey_der)


def _payload(raw: str) -> bytes:
    parts = raw.split(".")
    if len(parts) != 3:
        raise Rejected("malformed", "not a JWS in compact serialization (3 dot-separated parts)")
    p = parts[1]
    try:
        return base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Rejected("malformed", f"bad base64url: {exc}") from None


def peek(raw: str) -> tuple[str | None, int | None]:
    """Unverified (kid, seq), only to route and label a message before it is verified."""
    try:
        h = raw.split(".", 1)[0]
        kid = json.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4))).get("kid")
        seq = json.loads(_payload(raw)).get("seq")
    except (Rejected, ValueError, AttributeError, binascii.Error):
        return None, None
    return (kid if isinstance(kid, str) else None), (seq if type(seq) is int else None)


def open_record(raw: str, pubkey_der: bytes, dev: str) -> Opened:
    """Verify a record from `dev` with its registered key; raises Rejected when it is not the device's."""
    if len(raw) > MAX_RECORD_BYTES:
        raise Rejected("malformed", f"record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
    try:
        rec = ev.verify_record(raw, _key(pubkey_der), kid=dev)
    except ev.VerifyError as exc:
        if exc.reason in _NOT_SIGNED:
            raise Rejected(_NOT_SIGNED[exc.reason], str(exc)) from None
        problem = f"{_SIGNED.get(exc.reason, 'bad-ocmf')}: {exc}"
    else:
        if rec.dev != dev:
            raise Rejected("bad-signature", f"record names device {rec.dev!r}, sent as {dev!r}")
        return Opened(dev, rec.seq, rec.fields["prev"], rec.digest, rec.payload, rec.fields)
    # Signed by the device but wrong: still identify its place in the chain, if it names one.
    payload = _payload(raw)
    try:
        fields = json.loads(payload)
    except ValueError:
        fields = None
    seq, prev = (fields.get("seq"), fields.get("prev")) if isinstance(fields, dict) else (None, None)
    if not isinstance(fields, dict) or fields.get("dev") != dev or type(seq) is not int or seq < 1 or not isinstance(prev, str):
        raise Rejected("malformed", f"signed by the device but no usable dev/seq/prev ({problem})")
    return Opened(dev, seq, prev, hashlib.sha256(payload).hexdigest(), payload, fields, problem)


def reopen(raw: str, dev: str, hash_: str, prev: str) -> Opened:
    """A record open_record() accepted earlier (kept in `pending`), without verifying it again."""
    payload = _payload(raw)
    fields = json.loads(payload)
    return Opened(dev, fields["seq"], prev, hash_, payload, fields if isinstance(fields, dict) else {})
