"""Verification of signed session records and OCMF strings (CPython; used by backend/ and tools/).

A session record is a JWS (compact, ES256) whose payload is schema v1 JSON (docs/records.md) and
whose `ocmf` field is an OCMF string signed with the same device key. `verify_record` checks the
JWS, the payload, the OCMF part and its agreement with the record, and the chain (`seq`, `prev`)
against the previous record. `verify_ocmf` also checks third-party OCMF records on every OCMF curve
`cryptography` supports. Every rejection is a `VerifyError` carrying a `Reason`.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Made once: the per-record path below runs for every record the backend ingests (issue #23).
_ES256 = ec.ECDSA(hashes.SHA256())
_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_URL_TO_STD, _STD_TO_URL = bytes.maketrans(b"-_", b"+/"), bytes.maketrans(b"+/", b"-_")
_HEX = re.compile(r"[0-9a-f]+")


class Reason(str, Enum):
    FORMAT = "format"  # not a JWS / not an OCMF string / undecodable part
    HEADER = "header"  # JWS header malformed or with unsupported members
    ALG = "alg"  # JWS alg is not ES256
    KID = "kid"  # header kid differs from the record's device id (or the expected one)
    KEY = "key"  # the public key cannot be read
    SIGNATURE = "signature"  # the JWS signature does not verify
    PAYLOAD = "payload"  # payload is not a JSON object of the right shape
    SCHEMA = "schema"  # a field is missing or invalid for schema v1
    OCMF_FORMAT = "ocmf-format"
    OCMF_SIGNATURE = "ocmf-signature"
    OCMF_MISMATCH = "ocmf-mismatch"  # OCMF readings/identity disagree with the record
    UNSUPPORTED_CURVE = "unsupported-curve"
    CURVE_MISMATCH = "curve-mismatch"  # SA names another curve than the key's
    SEQ = "seq"  # not previous seq + 1
    CHAIN = "chain"  # prev is not SHA-256 of the previous payload
    DEVICE = "device"  # a different device than the previous record


class VerifyError(ValueError):
    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


class OcmfError(VerifyError):
    pass


class UnsupportedCurve(OcmfError):
    def __init__(self, detail: str) -> None:
        super().__init__(Reason.UNSUPPORTED_CURVE, detail)


# ---------------------------------------------------------------- keys

def load_public_key(data: bytes | str | ec.EllipticCurvePublicKey,
                    curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePublicKey:
    """A public key from SPKI DER bytes, PEM, hex or base64 SPKI text, or raw X||Y (with curve)."""
    if isinstance(data, ec.EllipticCurvePublicKey):
        return data
    try:
        if isinstance(data, str):
            text = data.strip()
            if text.startswith("-----BEGIN"):
                key = serialization.load_pem_public_key(text.encode())
                if not isinstance(key, ec.EllipticCurvePublicKey):
                    raise VerifyError(Reason.KEY, "not an EC key")
                return key
            compact = re.sub(r"\s+", "", text)
            raw = bytes.fromhex(compact) if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", compact) else base64.b64decode(compact, validate=True)
        else:
            raw = bytes(data)
        if raw[:1] == b"\x30":
            key = serialization.load_der_public_key(raw)
        else:
            if curve is None:
                curve = ec.SECP256R1()
            point = raw if raw[:1] in (b"\x02", b"\x03", b"\x04") and len(raw) % 2 == 1 else b"\x04" + raw
            key = ec.EllipticCurvePublicKey.from_encoded_point(curve, point)
    except UnsupportedAlgorithm as exc:
        raise UnsupportedCurve(f"key curve not supported: {exc}") from None
    except (ValueError, TypeError, binascii.Error) as exc:
        raise VerifyError(Reason.KEY, str(exc)) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise VerifyError(Reason.KEY, "not an EC key")
    return key


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# ---------------------------------------------------------------- JWS

def _b64url(part: bytes) -> bytes:
    if len(part) % 4 == 1 or not _B64URL.fullmatch(part):
        raise VerifyError(Reason.FORMAT, "bad base64url")
    data = binascii.a2b_base64(part.translate(_URL_TO_STD) + b"=" * (-len(part) % 4))
    if binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_STD_TO_URL) != part:
        raise VerifyError(Reason.FORMAT, "non-canonical base64url")
    return data


def _strict_object(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text}")


# JSON nesting deeper than this is refused before json.loads sees it (json recurses per level: a
# few kilobytes of "[" would raise RecursionError). Records nest 4 deep, OCMF 3, JWS headers 1.
MAX_JSON_DEPTH = 32
_JSON_STR = re.compile(r'[\[\]{}"\\]')
_JSON_BYTES = re.compile(rb'[\[\]{}"\\]')


def json_too_deep(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when JSON text nests arrays/objects more than `limit` deep (strings skipped). One pass,
    no recursion; text that is not JSON may be judged either way (json.loads refuses it anyway)."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= limit:
            return False
        tokens, quote, backslash, opening = _JSON_STR, '"', "\\", "[{"
    else:
        if text.count(b"[") + text.count(b"{") <= limit:
            return False
        tokens, quote, backslash, opening = _JSON_BYTES, 34, 92, b"[{"
    depth, in_string, skip = 0, False, -1
    for m in tokens.finditer(text):
        i = m.start()
        if i < skip:
            continue  # the character after a backslash in a string
        c = text[i]
        if in_string:
            if c == backslash:
                skip = i + 2
            elif c == quote:
                in_string = False
        elif c == quote:
            in_string = True
        elif c in opening:
            depth += 1
            if depth > limit:
                return True
        elif c != backslash:
            depth -= 1
    return False


def _loads_strict(data: bytes) -> Any:
    text = data.decode("utf-8")
    if json_too_deep(text):
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH}")
    return json.loads(text, object_pairs_hook=_strict_object, parse_float=_no_float, parse_constant=_no_float)


def verify_jws(compact: bytes | str, public_key: Any, kid: str | None = None) -> tuple[dict, bytes]:
    """(header, payload bytes) of a compact ES256 JWS that verifies under public_key."""
    key = load_public_key(public_key)
    if not isinstance(key.curve, ec.SECP256R1):
        raise VerifyError(Reason.KEY, "ES256 needs a P-256 key")
    raw = compact.encode() if isinstance(compact, str) else bytes(compact)
    parts = raw.split(b".")
    if len(parts) != 3:
        raise VerifyError(Reason.FORMAT, "expected three dot-separated parts")
    head_bytes, payload, sig = (_b64url(p) for p in parts)
    try:
        header = _loads_strict(head_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerifyError(Reason.HEADER, str(exc)) from None
    if not isinstance(header, dict):
        raise VerifyError(Reason.HEADER, "header is not an object")
    if header.get("alg") != "ES256":
        raise VerifyError(Reason.ALG, f"alg {header.get('alg')!r}")
    if set(header) - {"alg", "kid", "typ"}:
        raise VerifyError(Reason.HEADER, f"unexpected header members {sorted(set(header) - {'alg', 'kid', 'typ'})}")
    if kid is not None and header.get("kid") != kid:
        raise VerifyError(Reason.KID, f"kid {header.get('kid')!r}, expected {kid!r}")
    if len(sig) != 64:
        raise VerifyError(Reason.SIGNATURE, "ES256 signature must be 64 bytes")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, raw[:len(parts[0]) + 1 + len(parts[1])], _ES256)
    except InvalidSignature:
        raise VerifyError(Reason.SIGNATURE, "ES256 signature does not verify") from None
    return header, payload


# ---------------------------------------------------------------- OCMF

# SA -> (curve class or None when cryptography lacks it, hash)
_SA_CURVES: dict[str, type[ec.EllipticCurve] | None] = {
    "secp256r1": ec.SECP256R1,
    "secp384r1": ec.SECP384R1,
    "secp192r1": ec.SECP192R1,
    "secp256k1": ec.SECP256K1,
    "brainpool256r1": ec.BrainpoolP256R1,
    "brainpoolP256r1": ec.BrainpoolP256R1,  # spelling used by some meters (TPS accepts it)
    "brainpool384r1": ec.BrainpoolP384R1,
    "brainpoolP384r1": ec.BrainpoolP384R1,
    "secp192k1": None,
}
_HASHES = {"SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}
DEFAULT_SA = "ECDSA-secp256r1-SHA256"


@dataclass
class OcmfRecord:
    payload: bytes  # exactly as transmitted and signed
    data: dict  # parsed payload (RV as Decimal)
    signature: dict  # parsed signature section
    algorithm: str  # SA, default applied


@lru_cache(maxsize=64)
def _algorithm(sa: str) -> tuple[ec.EllipticCurve, hashes.HashAlgorithm]:
    m = re.fullmatch(r"ECDSA-([A-Za-z0-9]+)-(SHA\d+)", sa)
    if not m or m.group(1) not in _SA_CURVES or m.group(2) not in _HASHES:
        raise UnsupportedCurve(f"unknown signature algorithm {sa!r}")
    curve = _SA_CURVES[m.group(1)]
    if curve is None:
        raise UnsupportedCurve(f"{sa}: curve not supported by this verifier")
    return curve(), _HASHES[m.group(2)]()


def verify_ocmf_signature(payload: bytes, signature: bytes, public_key: Any, sa: str = DEFAULT_SA) -> None:
    """Check one OCMF signature (DER, or raw r||s as some meters send) over payload bytes."""
    curve, digest = _algorithm(sa)
    key = load_public_key(public_key, curve)
    if key.curve.name != curve.name:
        raise OcmfError(Reason.CURVE_MISMATCH, f"SA names {curve.name}, key is {key.curve.name}")
    size = (curve.key_size + 7) // 8
    der = signature
    if signature[:1] != b"\x30" and len(signature) == 2 * size:
        der = encode_dss_signature(int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big"))
    try:
        key.verify(der, payload, _ES256 if isinstance(digest, hashes.SHA256) else ec.ECDSA(digest))
    except (InvalidSignature, ValueError):
        raise OcmfError(Reason.OCMF_SIGNATURE, "OCMF signature does not verify") from None


def parse_ocmf(text: str) -> tuple[bytes, dict, dict]:
    """(payload bytes, payload data, signature data) of "OCMF|payload|signature"."""
    if not isinstance(text, str) or not text.startswith("OCMF|") or text.count("|") < 2:
        raise OcmfError(Reason.OCMF_FORMAT, "not OCMF|payload|signature")
    payload_text, _, sig_text = text[5:].rpartition("|")
    if json_too_deep(payload_text) or json_too_deep(sig_text):
        raise OcmfError(Reason.OCMF_FORMAT, f"section nested deeper than {MAX_JSON_DEPTH}")
    try:
        data = json.loads(payload_text, parse_float=Decimal)
        sig = json.loads(sig_text)
    except ValueError as exc:
        raise OcmfError(Reason.OCMF_FORMAT, f"section is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(sig, dict) or not isinstance(sig.get("SD"), str):
        raise OcmfError(Reason.OCMF_FORMAT, "payload/signature sections must be objects with SD")
    return payload_text.encode("utf-8"), data, sig


def verify_ocmf(text: str, public_key: Any) -> OcmfRecord:
    """Verify an OCMF string with the given public key (any supported OCMF curve)."""
    payload, data, sig = parse_ocmf(text)
    sa = sig.get("SA") or DEFAULT_SA
    encoding = sig.get("SE") or "hex"
    if not isinstance(sa, str):
        raise UnsupportedCurve(f"signature algorithm {sa!r} is not a string")
    try:
        if encoding == "hex":
            sd_text = sig["SD"]
            sd = bytes.fromhex(sd_text if sd_text.isalnum() else re.sub(r"\s+", "", sd_text))
        elif encoding == "base64":
            sd = base64.b64decode(sig["SD"], validate=True)
        else:
            raise OcmfError(Reason.OCMF_FORMAT, f"unknown signature encoding {encoding!r}")
    except (ValueError, binascii.Error):
        raise OcmfError(Reason.OCMF_FORMAT, "SD does not decode") from None
    verify_ocmf_signature(payload, sd, public_key, sa)
    return OcmfRecord(payload, data, sig, sa)


# ---------------------------------------------------------------- session records

AUTHS = {"list", "cache", "online", "offline", "master", "adhoc"}
STOP_REASONS = {"card", "unplugged", "balance", "limit", "remote", "meter-fault", "power-loss"}
REQUIRED = ("v", "dev", "seq", "prev", "token", "auth", "contract", "tariff", "start", "stop", "meter",
            "energy_wh", "cost", "flags", "fw", "ocmf")


@dataclass
class Record:
    dev: str
    seq: int
    payload: bytes
    fields: dict
    ocmf: OcmfRecord
    digest: str = field(init=False)  # SHA-256 hex of payload: the next record's prev

    def __post_init__(self) -> None:
        self.digest = hashlib.sha256(self.payload).hexdigest()


def _is_int(v: Any, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _check_point(p: Any, name: str, stop: bool) -> None:
    if not isinstance(p, dict) or not _is_int(p.get("t")) or p.get("tq") not in ("S", "I", "U") or not _is_int(p.get("wh")):
        raise VerifyError(Reason.SCHEMA, f"{name} must be {{t, tq, wh}}")
    if stop and (not isinstance(p.get("reason"), str) or p["reason"] not in STOP_REASONS):
        raise VerifyError(Reason.SCHEMA, f"stop.reason {p.get('reason')!r}")


def check_schema(f: Any) -> None:
    """Schema v1 rules (docs/records.md) beyond what the signature proves."""
    if not isinstance(f, dict):
        raise VerifyError(Reason.PAYLOAD, "payload is not a JSON object")
    missing = [k for k in REQUIRED if k not in f]
    if missing:
        raise VerifyError(Reason.SCHEMA, f"missing {missing}")
    checks = [
        (f["v"] == 1 and _is_int(f["v"]), "v must be 1"),
        (isinstance(f["dev"], str) and 0 < len(f["dev"]) <= 32, "dev"),
        (_is_int(f["seq"], 1), "seq must be an integer >= 1"),
        (f["prev"] == "" if f["seq"] == 1 else isinstance(f["prev"], str) and len(f["prev"]) == 64 and bool(_HEX.fullmatch(f["prev"])),
         "prev must be '' for seq 1, else 64 hex digits"),
        (isinstance(f["token"], str) and len(f["token"]) == 32 and bool(_HEX.fullmatch(f["token"])), "token"),
        (isinstance(f["auth"], str) and f["auth"] in AUTHS, "auth"),
        (f["contract"] is None or isinstance(f["contract"], str), "contract"),
        (isinstance(f["tariff"], dict) and isinstance(f["tariff"].get("id"), str)
         and (isinstance(f["tariff"].get("ver"), str) or _is_int(f["tariff"].get("ver"))), "tariff"),
        (isinstance(f["meter"], dict) and isinstance(f["meter"].get("model"), str) and isinstance(f["meter"].get("serial"), str), "meter"),
        (isinstance(f["cost"], dict) and isinstance(f["cost"].get("currency"), str) and len(f["cost"]["currency"]) == 3
         and _is_int(f["cost"].get("excl")) and _is_int(f["cost"].get("incl")) and isinstance(f["cost"].get("lines"), list), "cost"),
        (isinstance(f["flags"], list) and all(isinstance(x, str) for x in f["flags"]), "flags"),
        (isinstance(f["fw"], str), "fw"),
        (isinstance(f["ocmf"], str), "ocmf"),
    ]
    for ok, what in checks:
        if not ok:
            raise VerifyError(Reason.SCHEMA, what)
    _check_point(f["start"], "start", False)
    _check_point(f["stop"], "stop", True)
    if not _is_int(f["energy_wh"]) or f["energy_wh"] != f["stop"]["wh"] - f["start"]["wh"]:
        raise VerifyError(Reason.SCHEMA, "energy_wh must equal stop.wh - start.wh")


_LAST_DATE_S = 253402300799  # 9999-12-31T23:59:59Z: the last second a calendar date (and OCMF TM) can name


def _ocmf_time(t: int, tq: str) -> str:
    if not 0 <= t <= _LAST_DATE_S:  # t >= 0 is checked by the schema already
        raise VerifyError(Reason.OCMF_MISMATCH, f"time {t} is beyond any calendar date")
    return time.strftime("%Y-%m-%dT%H:%M:%S,000+0000 ", time.gmtime(t)) + tq


def _check_ocmf_matches(f: dict, o: OcmfRecord) -> None:
    d = o.data
    want = {"GS": f["dev"], "PG": f"T{f['seq']}", "ID": f["token"], "MS": f["meter"]["serial"], "MM": f["meter"]["model"]}
    for k, v in want.items():
        if d.get(k) != v:
            raise VerifyError(Reason.OCMF_MISMATCH, f"OCMF {k}={d.get(k)!r}, record says {v!r}")
    if o.algorithm != DEFAULT_SA:
        raise VerifyError(Reason.OCMF_MISMATCH, f"OCMF SA {o.algorithm}")
    rd = d.get("RD")
    if not isinstance(rd, list):
        raise VerifyError(Reason.OCMF_MISMATCH, "OCMF RD missing")
    by_tx = {r["TX"]: r for r in rd if isinstance(r, dict) and isinstance(r.get("TX"), str)}
    for tx, point in (("B", f["start"]), ("E", f["stop"])):
        r = by_tx.get(tx)
        if r is None:
            raise VerifyError(Reason.OCMF_MISMATCH, f"OCMF has no {tx} reading")
        if r.get("RU") != "kWh" or r.get("RV") != Decimal(point["wh"]) / 1000:
            raise VerifyError(Reason.OCMF_MISMATCH, f"OCMF {tx} reading {r.get('RV')} {r.get('RU')}, record {point['wh']} Wh")
        if r.get("TM") != _ocmf_time(point["t"], point["tq"]):
            raise VerifyError(Reason.OCMF_MISMATCH, f"OCMF {tx} time {r.get('TM')!r}")


def verify_record(compact: bytes | str, public_key: Any, previous: Record | None = None,
                  kid: str | None = None) -> Record:
    """Verify a session record JWS; with `previous`, also its place in the device's chain."""
    key = load_public_key(public_key)
    header, payload = verify_jws(compact, key, kid)
    try:
        fields = _loads_strict(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VerifyError(Reason.PAYLOAD, str(exc)) from None
    check_schema(fields)
    if header.get("kid") != fields["dev"]:
        raise VerifyError(Reason.KID, f"kid {header.get('kid')!r} but dev {fields['dev']!r}")
    ocmf = verify_ocmf(fields["ocmf"], key)
    _check_ocmf_matches(fields, ocmf)
    if previous is not None:
        if fields["dev"] != previous.dev:
            raise VerifyError(Reason.DEVICE, f"dev {fields['dev']!r} after {previous.dev!r}")
        if fields["seq"] != previous.seq + 1:
            raise VerifyError(Reason.SEQ, f"seq {fields['seq']} after {previous.seq}")
        if fields["prev"] != previous.digest:
            raise VerifyError(Reason.CHAIN, "prev is not the SHA-256 of the previous payload")
    return Record(fields["dev"], fields["seq"], payload, fields, ocmf)
