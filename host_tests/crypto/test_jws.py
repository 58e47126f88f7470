"""JWS ES256 on the device: verifies backend-signed documents, rejects anything else with a reason."""
from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from evc import verify
from host_tests.crypto.conftest import RFC_PRIV


def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def backend_jws(key: ec.EllipticCurvePrivateKey, payload: bytes, header: dict | None = None) -> bytes:
    """A JWS as the backend makes it, with `cryptography` (independent of the device code)."""
    head = json.dumps(header or {"alg": "ES256", "kid": "backend"}).encode()
    signing_input = b64u(head) + b"." + b64u(payload)
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return signing_input + b"." + b64u(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def spki(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def device_verify(mpy, cases: list[bytes], pub: bytes) -> list:
    """jws.verify on the device for each compact JWS: payload text or the rejection reason."""
    return mpy.run(f"""
from crypto import jws
out = []
for c in {[c.decode("latin-1") for c in cases]!r}:
    try:
        out.append(["ok", jws.jws_verify(c.encode(), bytes.fromhex({pub.hex()!r})).decode()])
    except jws.JWSError as e:
        out.append(["rejected", e.reason])
emit(out)
""").value


def test_device_verifies_backend_documents_and_rejects_tampering(mpy):
    backend = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    payload = b'{"type":"tariff","ver":7,"elements":[]}'
    good = backend_jws(backend, payload)
    h, p, s = good.split(b".")
    flipped_sig = bytearray(base64.urlsafe_b64decode(s + b"=="))
    flipped_sig[5] ^= 1
    cases = {
        "good": good,
        "payload": h + b"." + b64u(payload.replace(b"7", b"8")) + b"." + s,
        "signature": h + b"." + p + b"." + b64u(bytes(flipped_sig)),
        "header-kid": b64u(b'{"alg":"ES256","kid":"evil"}') + b"." + p + b"." + s,
        "alg-none": b64u(b'{"alg":"none"}') + b"." + p + b".",
        "alg-hs256": backend_jws(backend, payload, {"alg": "HS256"}),
        "wrong-key": backend_jws(other, payload),
        "short-sig": h + b"." + p + b"." + b64u(bytes(63)),
        "two-parts": h + b"." + p,
        "bad-b64": h + b"." + p + b"." + s[:-1] + b"*",
        "header-not-json": b64u(b"{alg") + b"." + p + b"." + s,
    }
    got = dict(zip(cases, device_verify(mpy, list(cases.values()), spki(backend))))
    assert got["good"] == ["ok", payload.decode()]
    expected = {
        "payload": "signature", "signature": "signature", "header-kid": "signature", "alg-none": "alg",
        "alg-hs256": "alg", "wrong-key": "signature", "short-sig": "signature", "two-parts": "format",
        "bad-b64": "format", "header-not-json": "header",
    }
    assert {k: v for k, v in got.items() if k != "good"} == {k: ["rejected", v] for k, v in expected.items()}


def test_device_jws_verifies_with_cryptography(mpy):
    payload = '{"v":1,"x":"é"}'
    compact = mpy.run(f"""
from crypto import jws
emit(jws.sign({RFC_PRIV}, {payload!r}.encode(), "evc-1").decode())
""").value
    key = ec.derive_private_key(RFC_PRIV, ec.SECP256R1())
    header, got = verify.verify_jws(compact, spki(key), kid="evc-1")
    assert header == {"alg": "ES256", "kid": "evc-1"}
    assert got == payload.encode()
    assert base64.urlsafe_b64decode(compact.split(".")[0] + "==") == b'{"alg":"ES256","kid":"evc-1"}'


def test_bad_key_and_kid_are_refused(mpy):
    res = mpy.run("""
from crypto import jws
out = []
try:
    jws.jws_verify(b"a.b.c", b"\\x30\\x00")
except jws.JWSError as e:
    out.append(e.reason)
for kid in ("", 'a"b', "x" * 65, "dév"):
    try:
        jws.header(kid)
    except ValueError:
        out.append("kid")
emit(out)
""").value
    assert res == ["key", "kid", "kid", "kid", "kid"]


@pytest.mark.parametrize("bad, reason", [("", "format"), ("a.b", "format"), ("..", "header"), ("e30.e30.AAAA", "alg"),
                                         ("eyJhbGciOiJFUzI1NiJ9.e30.AAAA", "signature")])
def test_cpython_verifier_rejects_malformed(bad, reason):
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(verify.VerifyError) as exc:
        verify.verify_jws(bad, spki(key))
    assert exc.value.reason == verify.Reason(reason)
