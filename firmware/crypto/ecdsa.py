# ECDSA over P-256 with SHA-256 (FIPS 186-4), deterministic nonces per RFC 6979 section 3.2.
# Signatures are (r, s) integers; s is not normalised to the low half, so the RFC 6979
# appendix A.2.5 vectors come out exactly.
import hashlib
import os

from crypto import p256
from crypto.hmac import hmac_sha256

_ZERO = bytes(32)


def _digest_int(msg):
    return int.from_bytes(hashlib.sha256(msg).digest(), "big")


def nonces(priv, h):
    """RFC 6979 candidate nonces for key `priv` and 32-byte digest `h` (qlen = hlen = 256)."""
    n = p256.N
    x = priv.to_bytes(32, "big")
    h1 = (int.from_bytes(h, "big") % n).to_bytes(32, "big")  # bits2octets
    v = b"\x01" * 32
    k = hmac_sha256(_ZERO, v, b"\x00", x, h1)
    v = hmac_sha256(k, v)
    k = hmac_sha256(k, v, b"\x01", x, h1)
    v = hmac_sha256(k, v)
    while True:
        v = hmac_sha256(k, v)
        t = int.from_bytes(v, "big")
        if 0 < t < n:
            yield t
        k = hmac_sha256(k, v, b"\x00")
        v = hmac_sha256(k, v)


def sign_digest(priv, h):
    """(r, s) for the 32-byte SHA-256 digest h."""
    n = p256.N
    if not 0 < priv < n:
        raise ValueError("private key out of range")
    e = int.from_bytes(h, "big") % n
    for k in nonces(priv, h):
        x, _ = p256.to_affine(*p256.mul_base(k))
        r = x % n
        if r == 0:
            continue
        s = pow(k, n - 2, n) * (e + r * priv) % n
        if s:
            return r, s


def sign(priv, msg):
    """(r, s): ECDSA-SHA256 signature of the bytes msg under the private scalar priv."""
    return sign_digest(priv, hashlib.sha256(msg).digest())


def verify_digest(pub, h, r, s):
    n = p256.N
    if not (0 < r < n and 0 < s < n) or not p256.on_curve(pub):
        return False
    w = pow(s, n - 2, n)
    e = int.from_bytes(h, "big") % n
    u1 = e * w % n
    u2 = r * w % n
    X, Y, Z = p256.mul(u2, pub)
    if u1:
        X, Y, Z = p256.add(X, Y, Z, *p256.mul_base(u1))
    if Z == 0:
        return False
    # Compare in Jacobian: x == X/Z^2 (mod p); r may stand for x or x - n (x < p < 2n)
    zz = Z * Z % p256.P
    for x in (r, r + n):
        if x < p256.P and x * zz % p256.P == X % p256.P:
            return True
    return False


def verify(pub, msg, r, s):
    """True when (r, s) is a valid signature of msg by the affine public point pub."""
    return verify_digest(pub, hashlib.sha256(msg).digest(), r, s)


def public_point(priv):
    return p256.to_affine(*p256.mul_base(priv))


def keygen():
    """(priv, pub) from os.urandom, by rejection sampling so priv is uniform in [1, n-1]."""
    while True:
        priv = int.from_bytes(os.urandom(32), "big")
        if 0 < priv < p256.N:
            return priv, public_point(priv)
