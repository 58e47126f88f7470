"""Session records made on the device verify with evc.verify; every kind of tampering is caught."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from evc import verify
from evc.verify import VerifyError
from host_tests.crypto.conftest import session_fields

DOCS = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def schema() -> dict:
    block = re.search(r"```json\n(.*?)```", DOCS.read_text(), re.S)
    assert block, "docs/records.md has no JSON Schema block"
    return json.loads(block.group(1))


def reason_of(compact, key, previous=None) -> str:
    with pytest.raises(VerifyError) as exc:
        verify.verify_record(compact, key, previous)
    return exc.value.reason.value


def test_chain_verifies_and_matches_schema(device_chain):
    spki, records = device_chain
    validator = jsonschema.Draft202012Validator(schema())
    previous = None
    for i, (payload, compact) in enumerate(records, 1):
        rec = verify.verify_record(compact, spki, previous)
        assert rec.seq == i and rec.payload == payload and rec.dev == "evc-0a1b2c"
        validator.validate(json.loads(payload))
        assert rec.fields["prev"] == (previous.digest if previous else "")
        assert rec.ocmf.data["PG"] == f"T{i}"
        previous = rec


def test_payload_bytes_are_exact(device_chain):
    payload = device_chain[1][0][0]
    f = json.loads(payload)
    assert list(f) == ["v", "dev", "seq", "prev", "token", "auth", "contract", "tariff", "start", "stop",
                       "meter", "energy_wh", "cost", "flags", "fw", "ocmf"]
    assert payload.startswith(b'{"v":1,"dev":"evc-0a1b2c","seq":1,"prev":"","token":"0123456789abcdef0123456789abcdef",'
                              b'"auth":"list","contract":"fleet-7","tariff":{"id":"AC-STD","ver":4},'
                              b'"start":{"t":1717236000,"tq":"S","wh":1234567},'
                              b'"stop":{"t":1717243512,"tq":"I","wh":1246001,"reason":"card"},'
                              b'"meter":{"model":"sdm630","serial":"SN-0042"},"energy_wh":11434,'
                              b'"cost":{"currency":"EUR","excl":452,"incl":538,"lines":[{"dim":"energy","excl":452,"qty":11434}]},'
                              b'"flags":[],"fw":"0.1.0","ocmf":"OCMF|')
    # what CPython would write with the same order and compact separators
    assert payload == json.dumps(f, separators=(",", ":"), ensure_ascii=False).encode()


def test_ocmf_part_is_exact_and_verifies(device_chain):
    spki, records = device_chain
    text = json.loads(records[0][0])["ocmf"]
    o = verify.verify_ocmf(text, spki)
    assert o.payload.decode() == (
        '{"FV":"1.0","GI":"EVC-FIRMWARE","GS":"evc-0a1b2c","GV":"0.1.0","PG":"T1","MV":"Eastron","MM":"sdm630",'
        '"MS":"SN-0042","IS":true,"IT":"UNDEFINED","ID":"0123456789abcdef0123456789abcdef","RD":['
        '{"TM":"2024-06-01T10:00:00,000+0000 S","TX":"B","RV":1234.567,"RI":"01-00:01.08.00","RU":"kWh","ST":"G"},'
        '{"TM":"2024-06-01T12:05:12,000+0000 I","TX":"E","RV":1246.001,"RI":"01-00:01.08.00","RU":"kWh","ST":"G"}]}'
    )
    assert text.endswith('"}') and '"SA":"ECDSA-secp256r1-SHA256"' in text
    sd = json.loads(text.rsplit("|", 1)[1])["SD"]
    assert re.fullmatch(r"[0-9A-F]+", sd) and sd.startswith("30")


def _resign(compact: bytes, header: bytes | None = None, payload: bytes | None = None, key=None) -> bytes:
    """Rebuild a JWS with changed parts; with key, sign properly (so only the checked rule fails)."""
    h, p, s = compact.split(b".")
    h = b64u(header) if header is not None else h
    p = b64u(payload) if payload is not None else p
    if key is None:
        return h + b"." + p + b"." + s
    r, s_ = decode_dss_signature(key.sign(h + b"." + p, ec.ECDSA(hashes.SHA256())))
    return h + b"." + p + b"." + b64u(r.to_bytes(32, "big") + s_.to_bytes(32, "big"))


def test_tampering_is_rejected_with_the_right_reason(device_chain):
    spki, records = device_chain
    payload, compact = records[0]
    h, p, s = compact.split(b".")
    sig = bytearray(base64.urlsafe_b64decode(s + b"=="))
    sig[0] ^= 0x80
    other = ec.generate_private_key(ec.SECP256R1())
    other_spki = other.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert reason_of(_resign(compact, payload=payload.replace(b'"excl":452', b'"excl":451', 1)), spki) == "signature"
    assert reason_of(h + b"." + p + b"." + b64u(bytes(sig)), spki) == "signature"
    assert reason_of(_resign(compact, header=b'{"alg":"ES256","kid":"evc-0a1b2d"}'), spki) == "signature"
    assert reason_of(_resign(compact, header=b'{"alg":"ES384","kid":"evc-0a1b2c"}'), spki) == "alg"
    assert reason_of(compact, other_spki) == "signature"
    assert reason_of(compact, b"\x30\x03\x02\x01\x01") == "key"
    assert reason_of(compact.replace(b".", b"!", 1), spki) == "format"


def test_rules_behind_the_signature(device_chain):
    """A validly signed JWS whose content breaks the rules (a key that signs anything) is still refused."""
    spki, records = device_chain
    payload, compact = records[0]
    key = ec.generate_private_key(ec.SECP256R1())
    kspki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    f = json.loads(payload)

    def signed(fields=None, raw=None, header=b'{"alg":"ES256","kid":"evc-0a1b2c"}'):
        body = raw if raw is not None else json.dumps(fields, separators=(",", ":")).encode()
        return _resign(compact, header=header, payload=body, key=key)

    assert reason_of(signed(f, header=b'{"alg":"ES256","kid":"other"}'), kspki) == "kid"
    assert reason_of(signed(raw=b"[1,2]"), kspki) == "payload"
    assert reason_of(signed(raw=payload.replace(b'"excl":452', b'"excl":452.0')), kspki) == "payload"
    assert reason_of(signed({**f, "energy_wh": 1}), kspki) == "schema"
    assert reason_of(signed({k: v for k, v in f.items() if k != "token"}), kspki) == "schema"
    assert reason_of(signed({**f, "seq": 2}), kspki) == "schema"  # prev "" only for seq 1
    # the OCMF part is signed by the device key, not this one
    assert reason_of(signed(f), kspki) == "ocmf-signature"


def test_ocmf_must_agree_with_the_record(mpy, tmp_path):
    """The device's own (validly signed) OCMF for another session does not fit this record."""
    keyfile = tmp_path / "k"
    res = mpy.run(f"""
import json
from crypto import keys
from billing import record
from crypto import jws
key = keys.load_or_create({str(keyfile)!r})
f = json.loads({json.dumps(session_fields())!r})
payload, _ = record.seal(key, f)
other = json.loads({json.dumps(session_fields(stop={"t": 1717243512, "tq": "I", "wh": 1246002, "reason": "card"}))!r})
_, o_jws = record.seal(key, other)
o = json.loads(jws.split(o_jws)[1])["ocmf"]
f["ocmf"] = o
f["energy_wh"] = 11434
mixed = record.build(f)
emit([key.public_hex(), record.jws(key, "evc-0a1b2c", mixed).decode()])
""").value
    spki, compact = bytes.fromhex(res[0]), res[1]
    assert reason_of(compact, spki) == "ocmf-mismatch"


def test_chain_breaks_are_detected(device_chain):
    spki, records = device_chain
    r1 = verify.verify_record(records[0][1], spki)
    r2 = verify.verify_record(records[1][1], spki, r1)
    assert reason_of(records[2][1], spki, r1) == "seq"  # record 2 missing
    assert reason_of(records[1][1], spki, r2) == "seq"  # replayed
    forged_prev = verify.Record(r1.dev, r1.seq, r1.payload + b" ", r1.fields, r1.ocmf)
    assert reason_of(records[1][1], spki, forged_prev) == "chain"  # previous payload altered
    other_dev = verify.Record("evc-ffffff", r1.seq, r1.payload, r1.fields, r1.ocmf)
    assert reason_of(records[1][1], spki, other_dev) == "device"
    assert records[1][0].count(hashlib.sha256(records[0][0]).hexdigest().encode()) == 1


BAD_FIELDS = {
    "seq0": {"seq": 0},
    "prev-on-first": {"prev": "00" * 32},
    "token-upper": {"token": "0123456789ABCDEF0123456789ABCDEF"},
    "auth": {"auth": "guess"},
    "float-cost": {"cost": {"currency": "EUR", "excl": 4.5, "incl": 5, "lines": []}},
    "float-line": {"cost": {"currency": "EUR", "excl": 4, "incl": 5, "lines": [{"x": 0.5}]}},
    "reason": {"stop": {"t": 1, "tq": "S", "wh": 1246001, "reason": "bored"}},
    "tq": {"start": {"t": 1, "tq": "X", "wh": 1}},
    "backwards": {"stop": {"t": 1, "tq": "S", "wh": 1, "reason": "card"}},
    "dev": {"dev": ""},
    "extra-name": {"Extra": 1},
    "flags": {"flags": "power-loss"},
}


def test_build_rejects_bad_fields_clearly(mpy):
    cases = {name: session_fields(**over) for name, over in BAD_FIELDS.items()}
    res = mpy.run(f"""
import json
from crypto import keys
from billing import record
key = keys.Key(12345)
out = {{}}
for name, f in json.loads({json.dumps(cases)!r}).items():
    if name == "float-cost":
        f["cost"]["excl"] = 4.5
    try:
        record.seal(key, f)
        out[name] = "accepted"
    except record.RecordError as e:
        out[name] = str(e)
emit(out)
""").value
    assert "accepted" not in res.values(), res
    assert res["float-cost"].startswith("record field cost.excl")
    assert res["float-line"] == "cannot encode float in a signed document"
    assert res["backwards"].startswith("ocmf: end reading below begin")
    assert set(res) == set(BAD_FIELDS)


def test_ocmf_time_and_energy_over_many_values(mpy):
    """TM from integer date arithmetic matches datetime; RV is the exact kWh decimal of the Wh."""
    from datetime import datetime, timezone

    times = [0, 59, 86399, 86400, 951782400, 951868799, 4107542400, 1709164800, 2**31, 4102444799, 253402300799]
    times += list(range(1700000000, 1700000000 + 400 * 86400, 86400 * 7 + 3601))
    whs = [0, 1, 9, 10, 999, 1000, 1001, 123456789, 10**12 + 7]
    res = mpy.run(f"""
from billing import ocmf
emit([[ocmf.timestamp(t, "S") for t in {times!r}], [ocmf.kwh(w) for w in {whs!r}]])
""").value
    for t, tm in zip(times, res[0]):
        assert tm == datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S,000+0000 S")
    for w, text in zip(whs, res[1]):
        assert Decimal(text) == Decimal(w) / 1000 and re.fullmatch(r"\d+\.\d{3}", text)
