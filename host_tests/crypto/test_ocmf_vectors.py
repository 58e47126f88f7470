"""Third-party OCMF records (host_tests/data/ocmf/records.json, each naming its source) classified as expected."""
from __future__ import annotations

import pytest

from evc import verify
from host_tests.data import ocmf_records, ocmf_signature_cases


def classify(fn) -> str:
    try:
        fn()
    except verify.UnsupportedCurve:
        return "unsupported"
    except verify.VerifyError as exc:
        assert exc.reason in (verify.Reason.OCMF_SIGNATURE, verify.Reason.CURVE_MISMATCH), exc
        return "invalid"
    return "valid"


def index_entries() -> list[dict]:
    return ocmf_records()


def test_every_indexed_record_is_classified_as_the_index_says():
    entries = index_entries()
    assert len(entries) == 154
    got = {}
    for e in entries:
        assert e["expect"] in ("valid", "invalid", "unsupported") and e["source"]["holder"], e
        got[(e["file"], e["index"])] = (classify(lambda: verify.verify_ocmf(e["record"], e["public_key"])), e["expect"])
    assert len(got) == 154  # (file, index) names each record once
    wrong = {k: v for k, v in got.items() if v[0] != v[1]}
    assert not wrong, wrong
    counts = [v[0] for v in got.values()]
    assert (counts.count("valid"), counts.count("invalid"), counts.count("unsupported")) == (146, 6, 2)


def test_tampered_vector_fails_for_the_right_reason():
    keba = next(e for e in index_entries() if e["file"] == "test_ocmf_keba_kcp30_fail.xml")
    with pytest.raises(verify.VerifyError) as exc:
        verify.verify_ocmf(keba["record"], keba["public_key"])
    assert exc.value.reason == verify.Reason.OCMF_SIGNATURE
    mixed = next(e for e in index_entries() if e["file"] == "second_key_fail_ocmf.xml" and e["index"] == 1)
    with pytest.raises(verify.VerifyError) as exc:
        verify.verify_ocmf(mixed["record"], mixed["public_key"])
    assert exc.value.reason == verify.Reason.CURVE_MISMATCH  # SA says secp256k1, key is P-256


def test_exponent_notation_payload_is_verified_as_transmitted():
    e = next(e for e in index_entries() if e["file"] == "working_ocmf.xml")
    assert "1.606848e7" in e["record"]
    rec = verify.verify_ocmf(e["record"], e["public_key"])
    assert b"1.606848e7" in rec.payload


def test_road_labs_cases():
    cases = ocmf_signature_cases()
    assert len(cases) == 32
    for c in cases:
        sa = f"ECDSA-{c['curve']}-SHA256"
        got = classify(lambda: verify.verify_ocmf_signature(
            c["payload"].encode(), bytes.fromhex(c["signature_der_hex"]), c["public_key_spki_der_hex"], sa))
        want = "unsupported" if c["curve"] == "secp192k1" else ("valid" if c["upstream_valid"] else "invalid")
        assert c["expect"] == want, c["name"]
        assert got == want, c["name"]
