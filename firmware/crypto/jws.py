# JWS compact serialization with ES256 (RFC 7515 / 7518): header.payload.signature, each part
# base64url; the signature is raw r||s (64 bytes) over the ASCII bytes "header.payload".
import hashlib
import json

from micropython import const

from crypto import b64url, canon, der, ecdsa

_KID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"


class JWSError(ValueError):
    """A JWS that must not be believed; .reason is a short code (format, header, alg, signature, key)."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason


def header(kid):
    """The exact header bytes {"alg":"ES256","kid":"<kid>"}; kid is limited to plain characters."""
    if not isinstance(kid, str) or not 0 < len(kid) <= 64:
        raise ValueError("kid must be a non-empty string up to 64 characters")
    for c in kid:
        if c not in _KID_CHARS:
            raise ValueError("kid has a character outside [A-Za-z0-9._:-]")
    return b'{"alg":"ES256","kid":"' + kid.encode() + b'"}'


def sign_raw(priv, data):
    """64-byte r||s ES256 signature of data."""
    r, s = ecdsa.sign(priv, data)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def write(w, payload, head, sign_digest):
    """Append the compact JWS of payload with the header bytes head (header(kid)) to the
    canon.Writer w.

    Header and payload are base64url-encoded chunk by chunk into w while a running SHA-256 takes
    in the signing input; sign_digest(32-byte digest) -> (r, s) then signs that digest.
    """
    h = hashlib.sha256()
    b64url.write(w, head, h)
    w.byte(46)
    h.update(b".")
    b64url.write(w, payload, h)
    r, s = sign_digest(h.digest())
    w.byte(46)
    b64url.write(w, r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def size(payload_len, head_len):
    """Length of a compact JWS: payload_len payload bytes, a head_len-byte header, ES256."""
    return (4 * head_len + 2) // 3 + 1 + (4 * payload_len + 2) // 3 + 1 + 86


def sign(priv, payload, kid, signer=None):
    """Compact JWS bytes of payload (bytes, sent as is). signer(data) -> 64 bytes overrides priv.

    Built in the kept canon.Writer (sized up front, so at most one larger buffer for a large
    payload) and returned as one bytes object of its exact size.
    """
    head = header(kid)
    w = canon.take()
    try:
        w.room(size(len(payload), len(head)) + 4)
        if signer is None:
            write(w, payload, head, lambda h: ecdsa.sign_digest(priv, h))
        else:
            b64url.write(w, head)
            w.byte(46)
            b64url.write(w, payload)
            sig = signer(w.getvalue())
            w.byte(46)
            b64url.write(w, sig)
        return w.getvalue()
    finally:
        canon.give(w)


def split(compact):
    """(header dict, payload bytes, signing input, r, s) without checking the signature."""
    if isinstance(compact, str):
        compact = compact.encode()
    compact = bytes(compact)
    parts = compact.split(b".")
    if len(parts) != 3:
        raise JWSError("format", "expected three dot-separated parts")
    try:
        head_bytes = b64url.decode(parts[0])
        payload = b64url.decode(parts[1])
        sig = b64url.decode(parts[2])
    except ValueError as e:
        raise JWSError("format", str(e))
    head = _head(head_bytes)
    r, s = _sig(sig)
    return head, payload, parts[0] + b"." + parts[1], r, s


def claimed(compact):
    """The payload object a compact JWS claims, read WITHOUT checking its signature (only to pick
    which request or record a message is about before the costly verify); None when it is not a
    JWS of a JSON object."""
    try:
        parts = bytes(compact).split(b".")
        if len(parts) != 3:
            return None
        doc = json.loads(b64url.decode(parts[1]))
    except (ValueError, TypeError):
        return None
    return doc if isinstance(doc, dict) else None


def _head(head_bytes):
    try:
        head = json.loads(head_bytes)
    except (ValueError, UnicodeError):
        raise JWSError("header", "header is not JSON")
    if not isinstance(head, dict):
        raise JWSError("header", "header is not an object")
    if head.get("alg") != "ES256":
        raise JWSError("alg", "alg must be ES256")
    if "crit" in head:
        raise JWSError("header", "crit extensions not supported")
    return head


def _sig(sig):
    if len(sig) != 64:
        raise JWSError("signature", "ES256 signature must be 64 bytes")
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def verify(compact, pub_spki_der, kid=None):
    """Payload bytes of a JWS signed by the key in pub_spki_der (DER bytes or an affine point).

    Raises JWSError (reason format/header/alg/kid/signature/key) and changes nothing otherwise.
    When kid is given the header's kid must equal it.
    """
    if isinstance(pub_spki_der, tuple):
        pub = pub_spki_der
    else:
        try:
            pub = der.parse_spki(pub_spki_der)
        except ValueError as e:
            raise JWSError("key", str(e))
    head, payload, signing_input, r, s = split(compact)
    if kid is not None and head.get("kid") != kid:
        raise JWSError("kid", "kid does not match")
    if not ecdsa.verify(pub, signing_input, r, s):
        raise JWSError("signature", "ES256 signature does not verify")
    return payload


jws_verify = verify

_READ = const(256)  # bytes read at a time from a spooled JWS: a multiple of 4 (base64 groups)
_SHORT_MAX = const(344)  # header and signature parts are short (kid <= 64 chars): more is not ours


def verify_stream(src, pub, out):
    """verify() for a compact JWS too large to hold in RAM: read from the file src, the payload
    decoded into the writable stream out as it goes (base64url checked group by group), the
    signing input hashed on the way. pub: an affine point. Raises JWSError; out then holds a
    partial payload the caller must discard. RAM: a 256-byte buffer and the short parts.
    """
    buf = bytearray(_READ)
    mv = memoryview(buf)
    h = hashlib.sha256()
    head = bytearray()
    sig = bytearray()
    group = bytearray()  # payload characters not yet decoded (< 4 after each chunk)
    part = 0  # 0 header, 1 payload, 2 signature
    while True:
        n = src.readinto(buf)
        if not n:
            break
        i = 0
        while i < n:
            dot = buf.find(b".", i, n) if part < 2 else -1
            j = n if dot < 0 else dot
            if part == 1:
                h.update(mv[i:j])
                group.extend(mv[i:j])
                k = len(group) & ~3
                if k:
                    out.write(_decode_group(group[:k]))
                    group = group[k:]
            else:
                piece = head if part == 0 else sig
                piece.extend(mv[i:j])
                if len(piece) > _SHORT_MAX:
                    raise JWSError("format", "header or signature part too long")
                if part == 0:
                    h.update(mv[i:j])
            if dot >= 0:
                part += 1
                if part == 1:
                    h.update(b".")
                i = dot + 1
            else:
                i = n
    if part != 2:
        raise JWSError("format", "expected three dot-separated parts")
    if group:
        if len(group) == 1:
            raise JWSError("format", "bad base64url length")
        out.write(_decode_group(group))
    try:
        head = _head(b64url.decode(head))
        r, s = _sig(b64url.decode(sig))
    except ValueError as e:
        if isinstance(e, JWSError):
            raise
        raise JWSError("format", str(e))
    if not ecdsa.verify_digest(pub, h.digest(), r, s):
        raise JWSError("signature", "ES256 signature does not verify")
    return head


def _decode_group(chars):
    try:
        return b64url.decode(chars)
    except ValueError as e:
        raise JWSError("format", str(e))
