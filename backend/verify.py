"""Record verification (evc/verify.py) sorted by what the ingest worker must do with a failure.

- The JWS does not verify with the device's registered key (forged, corrupted, wrong device,
  unreadable): `Rejected`. It is not the device's word, so it never fills a seq and is never acked.
- The JWS verifies but the payload, schema or OCMF part is wrong: the device itself signed a bad
  record. `open_record` returns it with `problem` set; it fills its seq as an anomaly, is acked
  (the device may forget it: it is stored) and is never billed.

The chain link (prev against the stored predecessor) is checked by backend/ingest.py, which has the
predecessor; evc.verify's own chain check needs the whole previous record in memory.

Nothing here raises anything but Rejected, whatever the input: `screen` bounds a message before it
is parsed (backend/guard.py), and a verifier failure nobody foresaw is sorted like the others, by
whether the device's signature holds.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.asymmetric import ec
from evc import verify as ev

from backend import guard

MAX_RECORD_BYTES = guard.MAX_MESSAGE_BYTES
MAX_HEADER_CHARS = 1024  # {"alg":"ES256","kid":"<up to 64>"} is at most about 140
_JWS = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# How the firmware begins every payload (billing/record.py, docs/records.md): a signed payload too
# deep or too odd to parse still names its seq there, so it can fill that seq instead of wedging.
_HEAD = re.compile(rb'\{"v":1,"dev":"([A-Za-z0-9._:-]{1,32})","seq":([1-9][0-9]{0,18}),"prev":"([0-9a-f]{64}|)"')

# evc.verify reasons raised before (or instead of) a good signature: not the device's record.
_NOT_SIGNED = {ev.Reason.FORMAT: "malformed", ev.Reason.HEADER: "malformed", ev.Reason.ALG: "bad-signature",
               ev.Reason.KID: "bad-signature", ev.Reason.KEY: "bad-signature", ev.Reason.SIGNATURE: "bad-signature"}
# raised after the signature verified: the device signed it.
_SIGNED = {ev.Reason.PAYLOAD: "bad-record", ev.Reason.SCHEMA: "bad-record"}  # OCMF reasons: "bad-ocmf"


class Rejected(Exception):
    """Not a record that fills a seq. signed: the device's signature holds all the same (the raw
    message is then kept whole with the anomaly)."""

    def __init__(self, kind: str, detail: str, signed: bool = False):
        detail = guard.detail(detail)
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.signed = signed


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


def screen(raw: bytes | str) -> str:
    """The message as JWS text, checked before anything parses it: at most MAX_RECORD_BYTES, three
    base64url parts (so ASCII), a header of sane size. Raises Rejected too-large / malformed."""
    data = guard.as_bytes(raw)
    if len(data) > MAX_RECORD_BYTES:
        raise Rejected("too-large", f"message of {len(data)} bytes; no record is larger than {MAX_RECORD_BYTES}")
    if not _JWS.fullmatch(data):
        raise Rejected("malformed", "not a JWS in compact serialization (three base64url parts)")
    if data.index(b".") > MAX_HEADER_CHARS:
        raise Rejected("malformed", f"JWS header longer than {MAX_HEADER_CHARS} characters")
    return data.decode("ascii")


def _payload(raw: str) -> bytes:
    parts = raw.split(".")
    if len(parts) != 3:
        raise Rejected("malformed", "not a JWS in compact serialization (3 dot-separated parts)")
    try:
        return guard.b64url(parts[1])
    except ValueError as exc:
        raise Rejected("malformed", str(exc)) from None


def peek(raw: bytes | str) -> tuple[str | None, int | None]:
    """Unverified (kid, seq), only to route and label a message before it is verified; (None, None)
    for anything unreadable. Never raises."""
    try:
        h, p, _ = screen(raw).split(".")
        header, fields = guard.loads(guard.b64url(h)), guard.loads(guard.b64url(p))
        kid = header.get("kid") if isinstance(header, dict) else None
        seq = fields.get("seq") if isinstance(fields, dict) else None
    except Exception:  # noqa: BLE001 - a hint, nothing more
        return None, None
    return (kid if isinstance(kid, str) else None), (seq if type(seq) is int and 0 < seq <= guard.INT64_MAX else None)


# base64url characters of the payload that hold _HEAD (at most 147 bytes): a multiple of 4, so that
# the prefix decodes on its own
_HEAD_CHARS = 200


def named_seq(jws: str | bytes) -> int | None:
    """The seq a JWS's payload names where the firmware writes it (its first fields), unverified,
    without parsing the JSON nor decoding more than the payload's first bytes; None when it does not
    begin that way. Never raises."""
    try:
        sep = "." if isinstance(jws, str) else b"."
        dot = jws.index(sep) + 1
        part = jws[dot:dot + _HEAD_CHARS]  # the payload's start, or all of it and what follows
        head = _HEAD.match(guard.b64url(part.partition(sep)[0]))
    except (ValueError, TypeError):
        return None
    return int(head[2]) if head is not None else None


def _check_seq(seq: int, signed: bool = True) -> None:
    if seq > guard.INT64_MAX:
        raise Rejected("unstorable", f"seq {str(seq)[:30]} does not fit a 64-bit column: it can never be placed", signed)


def open_record(raw: str, pubkey_der: bytes, dev: str) -> Opened:
    """Verify a record from `dev` with its registered key; raises Rejected when it is not the device's."""
    raw = screen(raw)
    try:
        key = _key(pubkey_der)
    except (ev.VerifyError, ValueError) as exc:
        raise Rejected("bad-signature", f"the registered key of {dev!r} does not load: {exc}") from None
    try:
        rec = ev.verify_record(raw, key, kid=dev)
    except ev.VerifyError as exc:
        if exc.reason in _NOT_SIGNED:
            raise Rejected(_NOT_SIGNED[exc.reason], str(exc)) from None
        problem = f"{_SIGNED.get(exc.reason, 'bad-ocmf')}: {exc}"
    except Exception as exc:  # noqa: BLE001 - a verifier gap on odd input: sort it by the signature
        try:
            ev.verify_jws(raw, key, kid=dev)
        except ev.VerifyError as again:
            raise Rejected(_NOT_SIGNED.get(again.reason, "malformed"), str(again)) from None
        except Exception:  # noqa: BLE001
            raise Rejected("malformed", f"unreadable ({type(exc).__name__}: {exc})") from None
        problem = f"bad-record: the check failed on it ({type(exc).__name__}: {exc})"
    else:
        if rec.dev != dev:
            raise Rejected("bad-signature", f"record names device {rec.dev!r}, sent as {dev!r}")
        _check_seq(rec.seq)
        return Opened(dev, rec.seq, rec.fields["prev"], rec.digest, rec.payload, rec.fields)
    problem = guard.detail(problem)
    # Signed by the device but wrong: still identify its place in the chain, if it names one.
    payload = _payload(raw)
    try:
        fields = guard.loads(payload)
    except (ValueError, RecursionError):
        fields = None
    if not isinstance(fields, dict) and (head := _HEAD.match(payload)) is not None:
        fields = {"dev": head[1].decode(), "seq": int(head[2]), "prev": head[3].decode()}  # nothing else is read
    seq, prev = (fields.get("seq"), fields.get("prev")) if isinstance(fields, dict) else (None, None)
    if not isinstance(fields, dict) or fields.get("dev") != dev or type(seq) is not int or seq < 1:
        raise Rejected("malformed", f"signed by the device but no usable dev/seq ({problem})", signed=True)
    _check_seq(seq)
    if not isinstance(prev, str) or len(prev) > 64 or guard.storable(prev) != prev:
        # Still the device's word for this seq: it fills it (as a chain-break, never billed).
        problem = guard.detail(f"{problem}; prev {prev!r:.80} is not a hash")
        prev = "?"
    return Opened(dev, seq, prev, hashlib.sha256(payload).hexdigest(), payload, fields, problem)


def reopen(raw: str, dev: str, hash_: str, prev: str, seq: int | None = None) -> Opened:
    """A record open_record() accepted earlier (kept in `pending`), without verifying it again.
    With its seq given, a payload that never parsed (a device-signed bad record) reopens too."""
    payload = _payload(raw)
    try:
        fields = guard.loads(payload)
    except (ValueError, RecursionError):
        fields = None
    fields = fields if isinstance(fields, dict) else {}
    return Opened(dev, fields["seq"] if seq is None else seq, prev, hash_, payload, fields)
