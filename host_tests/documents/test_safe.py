"""S.A.F.E. transparency software XML: parses, carries each OCMF string exactly, and the OCMF
verifies with `cryptography` against the public key in the same file."""
from __future__ import annotations

import dataclasses
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from defusedxml import ElementTree as SafeET

from backend.billing.safe import SafeExportError, safe_xml


def verify_ocmf(ocmf: str, pubkey_hex: str) -> dict:
    """Check an OCMF string as transparency software does: the payload section's bytes against the
    DER signature in SD, with the SPKI key; returns the payload."""
    head, rest = ocmf.split("|", 1)
    payload, sig = rest.rsplit("|", 1)
    assert head == "OCMF"
    sig = json.loads(sig)
    assert sig["SA"] == "ECDSA-secp256r1-SHA256"
    key = serialization.load_der_public_key(bytes.fromhex(pubkey_hex))
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    key.verify(bytes.fromhex(sig["SD"]), payload.encode("utf-8"), ec.ECDSA(hashes.SHA256()))
    return json.loads(payload)


def test_export_parses_and_every_ocmf_verifies(signed):
    refs, records = signed
    xml = safe_xml(refs)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = SafeET.fromstring(xml)
    assert root.tag == "values" and root.attrib == {}
    values = root.findall("value")
    assert len(values) == len(refs) == 3
    for n, (value, ref, rec) in enumerate(zip(values, refs, records), 1):
        assert value.get("transactionId") == str(n) and value.get("context")
        data = value.find("signedData")
        key = value.find("publicKey")
        assert data.attrib == {"format": "OCMF", "encoding": "plain", "transactionId": str(ref.seq)}
        assert key.attrib == {"encoding": "plain"}
        assert data.text == ref.ocmf == rec["ocmf"]  # exact: no white space added around it
        payload = verify_ocmf(data.text, key.text)
        assert payload["GS"] == ref.dev and payload["PG"] == f"T{ref.seq}"
        assert key.text.lower() == ref.pubkey_hex


def test_the_backend_verifier_agrees(signed):
    from evc.verify import verify_ocmf as backend_verify

    refs, _ = signed
    root = SafeET.fromstring(safe_xml(refs[:1]))
    v = root.find("value")
    backend_verify(v.find("signedData").text, v.find("publicKey").text)


def test_an_altered_reading_does_not_verify(signed):
    refs, _ = signed
    forged = refs[0].ocmf.replace('"RV":1061.434', '"RV":1051.434')
    assert forged != refs[0].ocmf
    v = SafeET.fromstring(safe_xml([dataclasses.replace(refs[0], ocmf=forged)])).find("value")
    with pytest.raises(InvalidSignature):
        verify_ocmf(v.find("signedData").text, v.find("publicKey").text)


def test_unfit_sessions_are_refused(signed):
    refs, _ = signed
    with pytest.raises(SafeExportError, match="no sessions"):
        safe_xml([])
    with pytest.raises(SafeExportError, match="OCMF"):
        safe_xml([dataclasses.replace(refs[0], ocmf=" " + refs[0].ocmf)])
    with pytest.raises(SafeExportError, match="public key"):
        safe_xml([dataclasses.replace(refs[0], pubkey_hex="-----BEGIN PUBLIC KEY-----")])
