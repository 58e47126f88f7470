# HMAC-SHA256 (RFC 2104) on the built-in hashlib; MicroPython has no hmac module.
import hashlib

_BLOCK = 64


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(_BLOCK - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


def hmac_sha256(key, msg):
    ipad, opad = _pads(key)
    inner = hashlib.sha256(ipad)
    inner.update(msg)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()
