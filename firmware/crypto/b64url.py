# base64url without padding (RFC 7515 section 2), strict on input.
import binascii

from micropython import const

_CHUNK = const(192)  # input bytes per b2a_base64 call when writing: a multiple of 3, 256 characters out
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def encode(data):
    """bytes -> base64url bytes, no padding."""
    out = binascii.b2a_base64(data).rstrip(b"\n=")
    return out.replace(b"+", b"-").replace(b"/", b"_")


def write(w, data, h=None):
    """Append base64url(data), no padding, to the canon.Writer w; h (a hashlib.sha256) is updated
    with the characters as they are written (a JWS signing input hashed while it is encoded).

    data is encoded in 3-byte-aligned chunks: one small block per chunk, never a copy of the whole.
    """
    n = len(data)
    w.room((4 * n + 2) // 3 + 4)  # + room for the chunk's "=" padding and newline, overwritten later
    src = memoryview(data)
    i = 0
    while i < n:
        j = i + _CHUNK
        if j > n:
            j = n
        enc = binascii.b2a_base64(src[i:j])
        k = (4 * (j - i) + 2) // 3  # characters without padding
        p = w.pos
        w.mv[p : p + len(enc)] = enc
        buf = w.buf
        f = enc.find(b"+")
        while f >= 0:
            buf[p + f] = 45  # -
            f = enc.find(b"+", f + 1)
        f = enc.find(b"/")
        while f >= 0:
            buf[p + f] = 95  # _
            f = enc.find(b"/", f + 1)
        if h is not None:
            h.update(w.mv[p : p + k])
        w.pos = p + k
        i = j


def decode(text):
    """base64url (str or bytes, no padding) -> bytes; ValueError on any other character."""
    if isinstance(text, str):
        text = text.encode()
    for c in text:
        if c not in _ALPHABET:
            raise ValueError("bad base64url character")
    if len(text) % 4 == 1:
        raise ValueError("bad base64url length")
    std = bytes(text).replace(b"-", b"+").replace(b"_", b"/")
    data = binascii.a2b_base64(std + b"=" * (-len(std) % 4))
    if encode(data) != bytes(text):  # non-canonical trailing bits
        raise ValueError("non-canonical base64url")
    return data
