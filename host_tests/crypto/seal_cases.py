"""Inputs for the golden sealing outputs (golden_seal.json): records, canonical JSON values, JWS and
OCMF strings made by the firmware under MicroPython with the RFC 6979 test key, so that every byte
is deterministic. golden_seal.json was written by the list-of-fragments implementation (before
the streaming writer, commit 7cadd41) with

    .venv/bin/python -m host_tests.crypto.seal_cases [FIRMWARE_DIR] > host_tests/crypto/golden_seal.json

(FIRMWARE_DIR: another checkout's firmware/, searched before this one's). Rewriting it changes
what "unchanged wire bytes" means: only on purpose, with test_sealing's independent checks."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from host_tests.crypto.conftest import RFC_PRIV, session_fields

GOLDEN = Path(__file__).with_name("golden_seal.json")

# Strings that need every kind of escape, non-ASCII text (left as UTF-8) and plain ASCII.
NASTY = 'q"uo\\te\n\r\t\b\f\x00\x01\x1f\x7f é€𝄞 \u2028 /<>'


def _lines(n: int) -> list[dict]:
    return [{"dim": ("energy", "time", "parking", "flat")[i % 4], "el": i, "qty": 1000 + 37 * i,
             "billed": 1000 + 37 * i, "unit": "Wh", "price": 3950 + i, "vat": 1900 if i % 3 else None,
             "from": 1717236000 + 60 * i, "to": 1717236060 + 60 * i, "excl": 40 + i, "incl": 47 + i}
            for i in range(n)]


def record_cases() -> dict[str, dict]:
    """Fields handed to record.seal (no energy_wh / ocmf: seal fills them in)."""
    prev = "9f" * 32
    return {
        "basic": session_fields(),
        "chained": session_fields(seq=2, prev=prev, contract=None, flags=["time-unsynced", "power-loss"],
                                  tariff={"id": "AC-STD", "ver": "2024-06"}),
        "escapes": session_fields(seq=3, prev=prev, contract=NASTY,
                                  tariff={"id": NASTY, "ver": 7},
                                  meter={"model": "m\"odel\\é", "serial": "S\n1\t€", "vendor": 'V"end\x01'},
                                  cost={"currency": "EUR", "excl": 0, "incl": 0,
                                        "lines": [{"note": NASTY, NASTY: [NASTY, True, False, None, -5]}]},
                                  flags=["void", NASTY], fw="0.1.0-\"rc\"", charged=538, zz_extra={"b": 1, "a": [2, 3]},
                                  zy=NASTY),
        "no-vendor": session_fields(seq=4, prev=prev, meter={"model": "sdm630", "serial": "SN-0042"},
                                    stop={"t": 1717243512, "tq": "U", "wh": 1234567, "reason": "power-loss"},
                                    start={"t": 0, "tq": "U", "wh": 1234567}),
        "big-numbers": session_fields(seq=2**40, prev=prev,
                                      start={"t": 4102444799, "tq": "S", "wh": 10**12},
                                      stop={"t": 253402300799, "tq": "S", "wh": 10**12 + 2**33, "reason": "limit"},
                                      cost={"currency": "EUR", "excl": 2**31, "incl": 2**62 + 1, "lines": []}),
        "lines-10": session_fields(seq=5, prev=prev, cost={"currency": "EUR", "excl": 452, "incl": 538, "lines": _lines(10)}),
        # larger than the writer's first buffer: the JWS alone is ~10 KB
        "lines-40": session_fields(seq=6, prev=prev, cost={"currency": "EUR", "excl": 452, "incl": 538, "lines": _lines(40)}),
    }


# canon.dumps values, as MicroPython expressions (Ordered and Raw have no JSON form)
CANON_CASES = {
    "scalars": "[None, True, False, 0, -1, 7, 2**31 - 1, 2**31, -(2**64), 10**30, '', 'a']",
    "nasty": "NASTY",
    "nested": "{'b': [1, {'z': None, 'a': []}], 'a': {}, NASTY: (1, 2), 'é': 'x'}",
    "ordered": "canon.Ordered([('z', 1), ('a', canon.Raw('12.345')), ('m', canon.Ordered([]))])",
    "long": "'x' * 5000 + NASTY * 50 + 'y' * 3000",
    "empty": "[[], {}, '', ()]",
}

# payload lengths around the base64 chunk and padding boundaries
JWS_LENGTHS = [0, 1, 2, 3, 4, 5, 95, 96, 97, 143, 144, 145, 191, 192, 193, 383, 384, 385, 1000, 4095, 4096, 6001]


def micropython_code() -> str:
    """MicroPython source that emits {"records": ..., "canon": ..., "jws": ..., "ocmf": ...} (hex bytes)."""
    return f"""
import json, binascii
from crypto import keys, canon, jws
from billing import record, ocmf
NASTY = {NASTY!r}
key = keys.Key({RFC_PRIV})
hx = lambda b: binascii.hexlify(b).decode()
out = {{"records": {{}}, "canon": {{}}, "jws": {{}}, "ocmf": {{}}}}
for name, f in json.loads({json.dumps(record_cases(), ensure_ascii=False)!r}).items():
    p, j = record.seal(key, f)
    out["records"][name] = [hx(p), hx(j), record.digest(p)]
    f["energy_wh"] = f["stop"]["wh"] - f["start"]["wh"]
    f["ocmf"] = json.loads(p)["ocmf"]
    assert record.build(f) == p
cases = {{{", ".join(f"{k!r}: {v}" for k, v in CANON_CASES.items())}}}
for name, v in cases.items():
    out["canon"][name] = hx(canon.dumps(v))
for n in {JWS_LENGTHS!r}:
    payload = bytes((i * 7 + 3) & 0xFF for i in range(n))
    out["jws"][str(n)] = hx(jws.sign({RFC_PRIV}, payload, "evc-1"))
    out["jws"]["key-" + str(n)] = hx(key.jws(payload, "k:" + str(n)))
f = json.loads({json.dumps(session_fields(), ensure_ascii=False)!r})
out["ocmf"]["basic"] = hx(ocmf.build(key, 9, f["dev"], f["fw"], f["token"], f["start"], f["stop"], f["meter"]).encode())
out["ocmf"]["payload"] = hx(ocmf.payload(9, f["dev"], f["fw"], f["token"], f["start"], f["stop"], f["meter"]))
out["ocmf"]["nasty"] = hx(ocmf.build(key, 10, "d", NASTY, NASTY, f["start"], f["stop"], {{"model": NASTY, "serial": "é"}}).encode())
emit(out)
"""


def run(mpy, extra_path=None, heap="8m") -> dict:
    """The raw outputs (hex) of the firmware on extra_path (default: this checkout's)."""
    return mpy.run(micropython_code(), heap=heap, timeout=300, extra_path=extra_path).value


def _sha(hex_bytes: str) -> str:
    return hashlib.sha256(bytes.fromhex(hex_bytes)).hexdigest()


def golden_form(raw: dict) -> dict:
    """What golden_seal.json keeps of run()'s outputs: record payloads and OCMF strings as text,
    JWS as their signature part plus the SHA-256 of all their bytes, large values as SHA-256."""
    text = lambda h: bytes.fromhex(h).decode()
    out = {"records": {}, "canon": {}, "jws": {}, "ocmf": {}}
    for name, (payload, compact, digest) in raw["records"].items():
        out["records"][name] = {"payload": text(payload), "jws_sha256": _sha(compact),
                                "jws_signature": text(compact).rsplit(".", 1)[1], "digest": digest}
    for name, value in raw["canon"].items():
        out["canon"][name] = text(value) if len(value) < 2000 else {"sha256": _sha(value), "len": len(value) // 2}
    for name, compact in raw["jws"].items():
        out["jws"][name] = {"sha256": _sha(compact), "len": len(compact) // 2}
    for name, value in raw["ocmf"].items():
        out["ocmf"][name] = text(value)
    return out


if __name__ == "__main__":
    import sys

    from sim import mpy as _mpy

    extra = [Path(p) for p in sys.argv[1:]]  # e.g. a checkout of the old firmware/
    print(json.dumps(golden_form(run(_mpy, extra or None)), indent=1, ensure_ascii=False))
