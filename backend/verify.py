"""Record verification as the ingest worker needs it: two steps with different consequences.

1. `open_record(raw, pubkey)`: the JWS signature with the device's key. A failure means the message
   is not the device's (forged, corrupted, wrong device): it never fills a seq, never gets an ack.
2. `check_record(opened, pubkey)`: schema and the OCMF part. A failure here is the device's own
   signed statement that is wrong: it fills its seq (stored as an anomaly), is acked, never billed.

The hash chain link (prev) needs the stored predecessor, so backend/ingest.py checks it.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

MAX_RECORD_BYTES = 16384


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


def b64url_decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise Rejected("malformed", f"bad base64url: {exc}") from None


def _split(raw: str) -> tuple[str, str, str]:
    if len(raw) > MAX_RECORD_BYTES:
        raise Rejected("malformed", f"record of {len(raw)} bytes exceeds {MAX_RECORD_BYTES}")
    parts = raw.strip().split(".")
    if len(parts) != 3:
        raise Rejected("malformed", "not a JWS in compact serialization (3 dot-separated parts)")
    return parts[0], parts[1], parts[2]


def _json(data: bytes, what: str) -> dict:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected("malformed", f"{what} is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise Rejected("malformed", f"{what} is not a JSON object")
    return obj


def peek(raw: str) -> tuple[str | None, int | None]:
    """Unverified (kid, seq), only to route and label a message before it is verified."""
    try:
        h, p, _ = _split(raw)
        kid = _json(b64url_decode(h), "header").get("kid")
        seq = _json(b64url_decode(p), "payload").get("seq")
    except Rejected:
        return None, None
    return (kid if isinstance(kid, str) else None), (seq if type(seq) is int else None)


def _public_key(pubkey_der: bytes) -> ec.EllipticCurvePublicKey:
    key = load_der_public_key(pubkey_der)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("device key is not a P-256 public key")
    return key


def _es256_ok(key: ec.EllipticCurvePublicKey, raw_sig: bytes, data: bytes) -> bool:
    if len(raw_sig) != 64:
        return False
    der = encode_dss_signature(int.from_bytes(raw_sig[:32], "big"), int.from_bytes(raw_sig[32:], "big"))
    try:
        key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def open_record(raw: str, pubkey_der: bytes, dev: str) -> Opened:
    """Check the JWS (ES256, kid = dev) over the exact bytes received; return the payload."""
    h, p, s = _split(raw)
    header = _json(b64url_decode(h), "header")
    if header.get("alg") != "ES256":
        raise Rejected("bad-signature", f"alg {header.get('alg')!r}, expected ES256")
    if header.get("kid") != dev:
        raise Rejected("bad-signature", f"kid {header.get('kid')!r} is not the device {dev!r}")
    if not _es256_ok(_public_key(pubkey_der), b64url_decode(s), f"{h}.{p}".encode()):
        raise Rejected("bad-signature", "ES256 signature does not verify with the device's registered key")
    payload = b64url_decode(p)
    record = _json(payload, "payload")
    seq, prev = record.get("seq"), record.get("prev")
    if record.get("dev") != dev or type(seq) is not int or seq < 1 or not isinstance(prev, str):
        raise Rejected("malformed", "signed payload lacks dev/seq/prev or names another device")
    return Opened(dev, seq, prev, hashlib.sha256(payload).hexdigest(), payload, record)


_FIELDS = {  # field: type every record must carry (schema version 1)
    "v": int, "dev": str, "seq": int, "prev": str, "token": str, "auth": str, "tariff": dict,
    "start": dict, "stop": dict, "meter": dict, "energy_wh": int, "cost": dict, "flags": list,
    "fw": str, "ocmf": str,
}


def _check_schema(r: dict) -> None:
    for name, typ in _FIELDS.items():
        if type(r.get(name)) is not typ:
            raise Rejected("bad-record", f"field {name!r} missing or not {typ.__name__}")
    if r["v"] != 1:
        raise Rejected("bad-record", f"schema version {r['v']}, expected 1")
    for end in ("start", "stop"):
        if type(r[end].get("t")) is not int or type(r[end].get("wh")) is not int or r[end].get("tq") not in ("S", "I", "U"):
            raise Rejected("bad-record", f"{end} needs integer t and wh and tq S/I/U")
    if r["energy_wh"] != r["stop"]["wh"] - r["start"]["wh"]:
        raise Rejected("bad-record", "energy_wh is not stop.wh - start.wh")
    cost = r["cost"]
    if type(cost.get("excl")) is not int or type(cost.get("incl")) is not int or not isinstance(cost.get("currency"), str):
        raise Rejected("bad-record", "cost needs integer excl/incl and a currency")


def _kwh_to_wh(value: object) -> int:
    try:
        wh = Decimal(str(value)) * 1000
    except InvalidOperation:
        raise Rejected("bad-ocmf", f"RV {value!r} is not a number") from None
    if wh != wh.to_integral_value():
        raise Rejected("bad-ocmf", f"RV {value!r} kWh is not a whole number of Wh")
    return int(wh)


def _check_ocmf(r: dict, key: ec.EllipticCurvePublicKey) -> None:
    text = r["ocmf"]
    if not text.startswith("OCMF|"):
        raise Rejected("bad-ocmf", "does not start with OCMF|")
    payload_text, sep, sig_text = text[5:].rpartition("|")
    if not sep:
        raise Rejected("bad-ocmf", "no signature section")
    try:
        payload, sig = json.loads(payload_text), json.loads(sig_text)
        der = bytes.fromhex(sig["SD"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Rejected("bad-ocmf", f"unreadable: {exc}") from None
    if sig.get("SA", "ECDSA-secp256r1-SHA256") != "ECDSA-secp256r1-SHA256":
        raise Rejected("bad-ocmf", f"signature algorithm {sig.get('SA')!r}")
    try:
        key.verify(der, payload_text.encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Rejected("bad-ocmf", "OCMF signature does not verify with the device's key") from None
    if payload.get("PG") != f"T{r['seq']}" or payload.get("ID") != r["token"]:
        raise Rejected("bad-ocmf", "PG/ID do not match the record's seq/token")
    readings = payload.get("RD") or []
    begin = [x for x in readings if isinstance(x, dict) and x.get("TX") == "B"]
    end = [x for x in readings if isinstance(x, dict) and x.get("TX") == "E"]
    if len(begin) != 1 or len(end) != 1:
        raise Rejected("bad-ocmf", "needs exactly one begin (B) and one end (E) reading")
    if _kwh_to_wh(begin[0].get("RV")) != r["start"]["wh"] or _kwh_to_wh(end[0].get("RV")) != r["stop"]["wh"]:
        raise Rejected("bad-ocmf", "meter readings differ from the record's start/stop wh")


def check_record(opened: Opened, pubkey_der: bytes) -> dict:
    """Schema and OCMF of a record whose JWS verified; returns the record."""
    _check_schema(opened.record)
    _check_ocmf(opened.record, _public_key(pubkey_der))
    return opened.record
