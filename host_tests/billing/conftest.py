"""Fixtures of the billing tests: real signed records (the firmware's own builder and key, under
MicroPython), stored through backend.ingest, on SQLite and on PostgreSQL (host_tests/backend)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from host_tests.backend.conftest import db_target  # noqa: F401 - the fixture, on both databases
from sim.records import make_records

T0 = int(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp())  # the billed month
DEC = int(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp())
JAN = int(dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc).timestamp())
SELLER = dict(name="EVC Charging GmbH", address="Hauptstr. 1", postcode="10115", city="Berlin", country="DE",
              vat_id="DE123456789", email="billing@evc.example")


def token(i: int) -> str:
    return "%032x" % (0xB111_0000 + i)


def cost_lines(excl: int, incl: int, vat: int | None, flat: tuple[int, int, int | None] | None = None) -> list[dict]:
    """Cost lines as firmware/billing/pricing.py writes them (the parts that matter here)."""
    lines = []
    if flat is not None:
        fe, fi, fv = flat
        lines.append({"dim": "FLAT", "el": 0, "qty": 1, "billed": 1, "unit": "session", "price": 0, "vat": fv,
                      "from": 0, "to": 0, "excl": fe, "incl": fi})
        excl, incl = excl - fe, incl - fi
    lines.append({"dim": "ENERGY", "el": 1, "qty": 0, "billed": 0, "unit": "Wh", "price": 0, "vat": vat,
                  "from": 0, "to": 0, "excl": excl, "incl": incl})
    return lines


def fields(dev: str, seq: int, tok: str, start: int, wh: int, excl: int, incl: int, vat: int | None = 1900,
           contract: str | None = None, flags: tuple[str, ...] = (), reason: str = "card", lines: list | None = None,
           charged: int | None = None) -> dict:
    f = {
        "v": 1, "dev": dev, "seq": seq, "token": tok, "auth": "list", "contract": contract,
        "tariff": {"id": "std", "ver": 1},
        "start": {"t": start, "tq": "S", "wh": 1_000_000 + seq * 100_000},
        "stop": {"t": start + 3600, "tq": "S", "wh": 1_000_000 + seq * 100_000 + wh, "reason": reason},
        "meter": {"model": "sdm630", "serial": "M-1"},
        "cost": {"currency": "EUR", "excl": excl, "incl": incl,
                 "lines": cost_lines(excl, incl, vat) if lines is None else lines},
        "flags": list(flags), "fw": "0.1.0",
    }
    if charged is not None:  # what a prepaid balance paid, as the charger signs it
        f["charged"] = charged
    return f


@dataclass
class Charger:
    """A device's signed records, made lazily in chained batches; ingested through backend.ingest."""

    dev: str
    root: Path
    pem: bytes = b""
    records: list[str] = None  # type: ignore[assignment]
    last_hash: str = ""

    def make(self, batch: list[dict]) -> list[str]:
        self.records = self.records or []
        made = []
        for i in range(0, len(batch), 100):  # the job goes to MicroPython on its command line: keep it short
            pem, jws, hashes = make_records(self.root, self.dev, batch[i:i + 100], prev=self.last_hash)
            self.pem, self.last_hash = pem, hashes[-1]
            made += jws
        self.records += made
        return made


def register(sessions, charger: Charger) -> None:
    from backend.keys import load_public_key
    from backend.models import Device

    with sessions.begin() as db:
        if db.get(Device, charger.dev) is None:
            db.add(Device(id=charger.dev, pubkey=load_public_key(charger.pem), added_at=0, head_seq=0, head_hash=""))


def ingest(sessions, charger: Charger, records: list[str]) -> None:
    from backend.ingest import Ingestor

    register(sessions, charger)
    ing = Ingestor(sessions)
    for i in range(0, len(records), 200):
        outs = ing.ingest_many([(f"evc/{charger.dev}/rec", r) for r in records[i:i + 200]])
        assert {o.kind for o in outs} <= {"stored", "duplicate"}, [o for o in outs if o.kind not in ("stored", "duplicate")][:3]


class Clock:
    def __init__(self, t: int):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def keys_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("billing-keys")
