# base64url without padding (RFC 7515 section 2), strict on input.
import binascii

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def encode(data):
    """bytes -> base64url bytes, no padding."""
    out = binascii.b2a_base64(data).rstrip(b"\n=")
    return out.replace(b"+", b"-").replace(b"/", b"_")


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
