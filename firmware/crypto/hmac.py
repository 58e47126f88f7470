# HMAC-SHA256 (RFC 2104) on the built-in hashlib; MicroPython has no hmac module.
import hashlib

from micropython import const

_BLOCK = const(64)


def hmac_sha256(key, msg, *more):
    """HMAC-SHA256(key, msg + more[0] + ...): the message may come in parts (no concatenation).

    The padded key lives in one 64-byte bytearray, XORed in place with ipad, then with
    ipad ^ opad: a few small blocks per call.
    """
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    pad = bytearray(_BLOCK)
    pad[: len(key)] = key
    for i in range(_BLOCK):
        pad[i] ^= 0x36
    inner = hashlib.sha256(pad)
    inner.update(msg)
    for part in more:
        inner.update(part)
    for i in range(_BLOCK):
        pad[i] ^= 0x6A  # 0x36 ^ 0x5C: ipad -> opad
    outer = hashlib.sha256(pad)
    outer.update(inner.digest())
    return outer.digest()
