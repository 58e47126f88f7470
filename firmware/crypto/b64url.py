# base64url without padding (RFC 7515 section 2), strict on input.
import binascii

from micropython import const

_CHUNK = const(192)  # input bytes per b2a_base64 call when writing: a multiple of 3, 256 characters out
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def encode(data):
    """bytes -> base64url bytes, no padding."""
    out = binascii.b2a_base64(data).rstrip(b"\n=")
    return out.replace(b"+", b"-").replace(b"/", b"_")


def encode_into(src, out, at=0):
    """base64url of src (bytes-like, no padding) into out[at:]; returns how many characters.
    One block of its own (binascii's), however long src is: out must have the room."""
    n = len(src)
    if not n:
        return 0
    e = binascii.b2a_base64(src)
    k = (4 * n + 2) // 3  # characters without padding
    out[at:at + k] = memoryview(e)[:k]
    for std, url in ((b"+", 45), (b"/", 95)):  # find() runs in C: no loop over every character
        i = e.find(std)
        while 0 <= i < k:
            out[at + i] = url
            i = e.find(std, i + 1)
    return k


def write(w, data, h=None):
    """Append base64url(data), no padding, to the canon.Writer w; h (a hashlib.sha256) is updated
    with the characters as they are written (a JWS signing input hashed while it is encoded).

    data is encoded in 3-byte-aligned chunks: one small block per chunk, never a copy of the whole.
    """
    n = len(data)
    w.room((4 * n + 2) // 3)
    src = memoryview(data)
    i = 0
    while i < n:
        j = i + _CHUNK
        if j > n:
            j = n
        p = w.pos
        k = encode_into(src[i:j], w.buf, p)
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
