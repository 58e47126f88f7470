from __future__ import annotations

import json
from pathlib import Path

import pytest

RFC_PRIV = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721


def session_fields(seq: int = 1, prev: str = "", **over) -> dict:
    """A finished session as the billing code hands it to record.seal (no energy_wh/ocmf)."""
    f = {
        "dev": "evc-0a1b2c",
        "seq": seq,
        "prev": prev,
        "token": "0123456789abcdef0123456789abcdef",
        "auth": "list",
        "contract": "fleet-7",
        "tariff": {"id": "AC-STD", "ver": 4},
        "start": {"t": 1717236000, "tq": "S", "wh": 1234567},
        "stop": {"t": 1717243512, "tq": "I", "wh": 1246001, "reason": "card"},
        "meter": {"model": "sdm630", "serial": "SN-0042", "vendor": "Eastron"},
        "cost": {"currency": "EUR", "excl": 452, "incl": 538,
                 "lines": [{"dim": "energy", "qty": 11434, "excl": 452}]},
        "flags": [],
        "fw": "0.1.0",
    }
    f.update(over)
    return f


@pytest.fixture(scope="session")
def device_chain(tmp_path_factory, mpy):
    """Three sealed records made under MicroPython with a fresh device key: (spki_der, [(payload, jws)])."""
    keyfile = tmp_path_factory.mktemp("key") / "device.key"
    fields = [session_fields(seq=i) for i in (1, 2, 3)]
    code = f"""
from crypto import keys
from billing import record
key = keys.load_or_create({str(keyfile)!r})
prev = ""
fields = {json.dumps(fields)!r}
import json
out = []
for f in json.loads(fields):
    f["prev"] = prev
    payload, jws = record.seal(key, f)
    prev = record.digest(payload)
    out.append([payload.decode(), jws.decode()])
emit({{"spki": key.public_hex(), "records": out}})
"""
    res = mpy.run(code).value
    return bytes.fromhex(res["spki"]), [(p.encode(), j.encode()) for p, j in res["records"]]
