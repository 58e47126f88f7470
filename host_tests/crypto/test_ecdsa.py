"""P-256 ECDSA on the device: RFC 6979 vectors, and interoperation with `cryptography` both ways."""
from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from host_tests.crypto.conftest import RFC_PRIV

N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

# RFC 6979 appendix A.2.5, P-256 with SHA-256.
RFC_UX = 0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6
RFC_UY = 0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299
RFC_CASES = {
    "sample": (
        0xA6E3C57DD01ABE90086538398355DD4C3B17AA873382B0F24D6129493D8AAD60,
        0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8,
    ),
    "test": (
        0xD16B6AE827F17175E040871A1C7EC3500192C4C92677336EC2537ACAEE0008E0,
        0xF1ABB023518351CD71D881567B1EA663ED3EFCF6C5132B354F28D3B0B7D38367,
        0x019F4113742A2B14BD25926B49C649155F267E60D3814B4C0CC84250E46F0083,
    ),
}


def test_rfc6979_a25_vectors_exact(mpy):
    res = mpy.run(f"""
import hashlib
from crypto import ecdsa
d = {RFC_PRIV}
out = {{"pub": list(ecdsa.public_point(d))}}
for m in ("sample", "test"):
    h = hashlib.sha256(m.encode()).digest()
    k = next(ecdsa.nonces(d, h))
    r, s = ecdsa.sign(d, m.encode())
    out[m] = [k, r, s]
emit(out)
""").value
    assert res["pub"] == [RFC_UX, RFC_UY]
    for m, (k, r, s) in RFC_CASES.items():
        assert res[m] == [k, r, s], m


def test_scalar_multiplication_matches_cryptography(mpy):
    """Comb (fixed base), wNAF (any point) and the double-and-add baseline agree with OpenSSL."""
    scalars = [1, 2, 3, 4, 5, 6, 7, 8, N - 1, N - 2, N - 3, 2**255, 2**255 + 1, 2**128 - 1, 2**43, 2**86 + 2**43]
    scalars += [int.from_bytes(os.urandom(32), "big") % (N - 1) + 1 for _ in range(20)]
    res = mpy.run(f"""
from crypto import p256
out = []
for k in {scalars!r}:
    a = p256.to_affine(*p256.mul_base(k))
    b = p256.to_affine(*p256.mul(k, p256.G))
    c = p256.to_affine(*p256.mul_double_add(k, p256.G))
    out.append([list(a), a == b == c, p256.on_curve(a)])
emit(out)
""").value
    for k, (pt, agree, on_curve) in zip(scalars, res):
        nums = ec.derive_private_key(k, ec.SECP256R1()).public_key().public_numbers()
        assert pt == [nums.x, nums.y], hex(k)
        assert agree and on_curve


def test_device_signatures_verify_with_cryptography(mpy):
    msgs = [b"", b"a", b"session record", os.urandom(1000), b"\x00" * 64]
    res = mpy.run(f"""
from crypto import ecdsa
out = []
for i, m in enumerate({[m.hex() for m in msgs]!r}):
    d, pub = ecdsa.keygen()
    r, s = ecdsa.sign(d, bytes.fromhex(m))
    out.append([list(pub), r, s])
emit(out)
""").value
    for m, ((x, y), r, s) in zip(msgs, res):
        pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
        pub.verify(encode_dss_signature(r, s), m, ec.ECDSA(hashes.SHA256()))
        with pytest.raises(InvalidSignature):
            pub.verify(encode_dss_signature(r, s), m + b"!", ec.ECDSA(hashes.SHA256()))


def test_cryptography_signatures_verify_on_device(mpy):
    cases = []
    for i in range(6):
        key = ec.generate_private_key(ec.SECP256R1())
        msg = os.urandom(40 + i)
        r, s = decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        nums = key.public_key().public_numbers()
        cases.append([nums.x, nums.y, msg.hex(), r, s])
    res = mpy.run(f"""
from crypto import ecdsa
out = []
for x, y, m, r, s in {cases!r}:
    m = bytes.fromhex(m)
    out.append([ecdsa.verify((x, y), m, r, s),
                ecdsa.verify((x, y), m + b"x", r, s),
                ecdsa.verify((x, y), m, r, (s + 1) % ecdsa.p256.N),
                ecdsa.verify((x, y), m, 0, s),
                ecdsa.verify((x, y), m, r, ecdsa.p256.N),
                ecdsa.verify((x, y + 1), m, r, s)])
emit(out)
""").value
    assert res == [[True, False, False, False, False, False]] * len(cases)


def test_digest_larger_than_n_is_reduced(mpy):
    """A digest >= n (bits2int, then mod n) signs and verifies as OpenSSL treats it."""
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    key = ec.derive_private_key(RFC_PRIV, ec.SECP256R1())
    digest = (N + 12345).to_bytes(32, "big")
    r, s, ok = mpy.run(f"""
from crypto import ecdsa
r, s = ecdsa.sign_digest({RFC_PRIV}, {digest!r})
emit([r, s, ecdsa.verify_digest(ecdsa.public_point({RFC_PRIV}), {digest!r}, r, s)])
""").value
    assert ok
    key.public_key().verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_der_and_spki_match_cryptography(mpy):
    key = ec.generate_private_key(ec.SECP256R1())
    nums = key.public_key().public_numbers()
    sigs = [(1, 1), (0x7F, 0x80), (2**255, 2**255 - 1), (N - 1, 0xFF), (0x80 << 240, 1 << 247)]
    res = mpy.run(f"""
from crypto import der
out = {{"spki": der.spki(({nums.x}, {nums.y})).hex(), "sigs": []}}
for r, s in {sigs!r}:
    enc = der.encode_signature(r, s)
    out["sigs"].append([enc.hex(), list(der.decode_signature(enc))])
out["pem"] = der.pem(der.spki(({nums.x}, {nums.y})))
bad = []
for h in ("3005020101020101", "300702020001020101", "3006020181020101", "30070201010201010000", "3106020101020101"):
    try:
        der.decode_signature(bytes.fromhex(h))
    except ValueError:
        bad.append(h)
out["bad"] = bad
emit(out)
""").value
    want = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert bytes.fromhex(res["spki"]) == want
    assert res["pem"].encode() == key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for (r, s), (enc, back) in zip(sigs, res["sigs"]):
        assert bytes.fromhex(enc) == encode_dss_signature(r, s)
        assert back == [r, s]
    assert len(res["bad"]) == 5


def test_base64url_round_trip_and_strictness(mpy):
    import base64

    blobs = [os.urandom(n) for n in range(0, 70, 7)]
    res = mpy.run(f"""
from crypto import b64url
out = [b64url.encode(bytes.fromhex(h)).decode() for h in {[b.hex() for b in blobs]!r}]
ok = all(b64url.decode(e) == bytes.fromhex(h) for e, h in zip(out, {[b.hex() for b in blobs]!r}))
bad = 0
for s in ("ab+c", "ab/c", "abc=", "a", "ab c", "AB"):
    try:
        b64url.decode(s)
    except ValueError:
        bad += 1
emit([out, ok, bad])
""").value
    enc, ok, bad = res
    assert enc == [base64.urlsafe_b64encode(b).rstrip(b"=").decode() for b in blobs]
    assert ok and bad == 6  # "AB" has non-zero trailing bits
