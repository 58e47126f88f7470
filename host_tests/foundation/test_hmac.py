"""HMAC-SHA256 under MicroPython against CPython's hmac (RFC 4231 style cases)."""
import hashlib
import hmac

import pytest

CASES = [
    (b"\x0b" * 20, b"Hi There"),  # RFC 4231 case 1
    (b"Jefe", b"what do ya want for nothing?"),  # case 2
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First"),  # case 6
    (b"", b""),
    (b"k" * 64, b"exactly one block of key"),
]


@pytest.mark.parametrize("key,msg", CASES)
def test_hmac_matches_cpython(mpy, key, msg):
    got = mpy.run(
        f"""
import binascii
from crypto.hmac import hmac_sha256
emit(binascii.hexlify(hmac_sha256({key!r}, {msg!r})).decode())
"""
    ).value
    assert got == hmac.new(key, msg, hashlib.sha256).hexdigest()
