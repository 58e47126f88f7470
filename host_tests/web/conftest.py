"""The dashboard's world: a database (SQLite and PostgreSQL) with real signed records of one charger,
billed into an invoice and a receipt with the billing CLI, plus hand-made session rows of two more
chargers in March 2026 whose figures the analytics tests compute by hand; an admin and a viewer."""
from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass

import pytest

from host_tests.backend.conftest import _pg_admin
from host_tests.billing.conftest import T0 as NOV, Charger, fields, ingest, token
from sim.backend import PG_URL, drop_database

DAY = 86400
MAR = int(dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc).timestamp())  # a Monday
TOK_A, TOK_B, TOK_C = ("%032x" % (0xA0 + i) for i in range(3))
ADMIN, VIEWER, PASSWORD = "alice", "victor", "correct horse battery"
# (dev, seq, token, contract, tariff, start, seconds, Wh, cost incl, flags, start tq, stop reason)
MADE = [
    ("ev-1", 1, TOK_A, "fleet", "std", MAR + 8 * 3600, 3600, 11000, 500, "", "S", "card"),
    ("ev-1", 2, TOK_B, None, "std", MAR + 8 * 3600 + 1800, 1800, 7000, 300, "", "S", "card"),
    ("ev-2", 1, TOK_A, "fleet", "night", MAR + 8 * 3600 + 1800, 3600, 5000, 200, "", "S", "card"),
    ("ev-2", 2, TOK_C, None, "std", MAR + DAY + 18 * 3600, 600, 10000, 400, "", "S", "unplugged"),
    ("ev-1", 3, TOK_B, None, "std", MAR + 9 * DAY + 10 * 3600, 7200, 20000, 900, "void", "I", "card"),
    ("ev-2", 3, TOK_C, None, "night", MAR + 9 * DAY + 22 * 3600, 3600, 0, 0, "meter-fault", "S", "meter-fault"),
]
BILLED = "evc-w1"  # the charger whose records are real, signed by the firmware's code
# PARKING_TIME seconds (idle while plugged) the made rows' cost lines carry, per (dev, seq): one line,
# two lines (two tariff elements), a line in ms; the others have none
PARKING = {("ev-1", 1): [(600, "s")], ("ev-2", 1): [(900, "s"), (300, "s")], ("ev-2", 3): [(1_800_000, "ms")]}
# records that carry the firmware's measured parking_s (docs/records.md): it wins over the lines
# (ev-1 seq 1), and counts where no line priced the idle time (ev-1 seq 3, a void session)
PARKING_S = {("ev-1", 1): 700, ("ev-1", 3): 1200}
# the statuses the chargers send (backend/converge.py stores them): (time, dev, status)
IDLE = {"online": True, "state": "idle", "seq": 3, "acked": 3, "pending": 0, "versions": {"tariff": 0, "authlist": 0}}
WILL = {"online": False}
STATUSES = [
    (MAR, BILLED, {**IDLE, "fw": "0.1.0"}),
    (MAR + 2 * 3600, BILLED, WILL),  # offline 3 h
    (MAR + 5 * 3600, BILLED, {**IDLE, "fw": "0.1.0"}),
    (MAR + 8 * 3600, "ev-2", {**IDLE, "fw": "0.9.1"}),
    (MAR + DAY, BILLED, WILL),  # offline 30 min
    (MAR + DAY + 1800, BILLED, {**IDLE, "fw": "0.1.0"}),
    (MAR + 2 * DAY, BILLED, {**IDLE, "fw": "0.1.0", "state": "charging", "wh": 1500, "cost": 59,  # no "w": older firmware
                             "since": MAR + 2 * DAY - 600}),
    (MAR + 3 * DAY, "ev-2", WILL),  # offline 2 h
    (MAR + 3 * DAY + 7200, "ev-2", {**IDLE, "fw": "0.9.1"}),
    (MAR + 3 * DAY + 7300, "ev-2", {**IDLE, "fw": "0.9.1", "state": "charging", "wh": 3250, "w": 7200, "cost": 146,
                                    "since": MAR + 3 * DAY + 7250, "pending": 1}),
]


@dataclass
class World:
    db: str
    sessions: object
    invoice: str
    receipt: str
    charger: Charger


def _made_rows(sessions) -> None:
    from backend.models import Card, Contract, CardOwner, Customer, Device, Session

    with sessions.begin() as db:
        for dev in ("ev-1", "ev-2"):
            db.add(Device(id=dev, pubkey=b"\x00", added_at=0, head_seq=3, head_hash=""))
        db.flush()
        for dev, seq, tok, contract, tariff, start, secs, wh, cost, flags, tq, reason in MADE:
            db.add(Session(dev=dev, seq=seq, hash="%064x" % seq, raw="e30.e30.e30", token=tok, auth="list",
                           contract=contract, tariff_id=tariff, tariff_ver="1", start_t=start, start_tq=tq,
                           start_wh=0, stop_t=start + secs, stop_tq="S", stop_wh=wh, stop_reason=reason, energy_wh=wh,
                           currency="EUR", cost_excl=cost * 100 // 119, cost_incl=cost, flags=flags,
                           meter_model="m", meter_serial="s", fw="0.9.0", ocmf="OCMF|{}|{}",
                           payload=_payload(PARKING.get((dev, seq), []), PARKING_S.get((dev, seq))), charged=0, stored_at=start))
        for tok, bal, contract in ((TOK_A, 5000, "fleet"), (TOK_B, None, None), (TOK_C, None, None)):
            db.add(Card(token=tok, status="accepted", exp=None, contract=contract, balance=bal, updated_at=0))
        for cid in ("cu-1", "cu-2"):
            db.add(Customer(id=cid, kind="driver", name=f"Customer {cid}", address="Str. 1", postcode="10115",
                            city="Berlin", country="DE", vat_id=None, email=None, language="en", currency="EUR",
                            created_at=0))
        db.flush()
        db.add(Contract(id="fleet", customer_id="cu-2", created_at=0))
        db.add(CardOwner(token=TOK_B, valid_from=0, customer_id="cu-1", contract_id=None, assigned_at=0))


def _payload(parking: list[tuple[int, str]], parking_s: int | None = None) -> str:
    lines = [{"dim": "ENERGY", "el": 0, "qty": 1000, "unit": "Wh"}, {"dim": "TIME", "el": 0, "qty": 60, "unit": "s"}]
    lines += [{"dim": "PARKING_TIME", "el": i + 1, "qty": q, "unit": u} for i, (q, u) in enumerate(parking)]
    doc = {"v": 1, "cost": {"currency": "EUR", "lines": lines}}
    if parking_s is not None:
        doc["parking_s"] = parking_s
    return json.dumps(doc, separators=(",", ":"))


def send_statuses(sessions, keys_dir, statuses) -> None:
    """The statuses through the worker's own path (backend/converge.py Converger.on_status), in order."""
    from backend.converge import Converger
    from backend.downlink import Downlinks
    from backend.keys import Keys

    keys = Keys(keys_dir)
    if not keys.key_file.exists():
        keys.init(site_secret="44" * 32)
    t = [0]
    conv = Converger(sessions, Downlinks(sessions, keys, clock=lambda: t[0]), clock=lambda: t[0])
    for at, dev, doc in statuses:
        t[0] = at
        conv.on_status(f"evc/{dev}/status", json.dumps(doc).encode(), lambda msgs: None)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(request, tmp_path_factory):
    from backend.__main__ import main
    from backend.db import open_db
    from backend.models import InvoiceLine
    from backend.web.auth import Accounts
    from sqlalchemy import select

    tmp = tmp_path_factory.mktemp("web")
    admin = None
    if request.param == "sqlite":
        target = str(tmp / "web.db")
    else:
        admin = _pg_admin()
        name = "evc_test_" + uuid.uuid4().hex[:12]
        admin.execute(f'CREATE DATABASE "{name}"')
        target = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    try:
        sessions = open_db(target)
        ch = Charger(BILLED, tmp / "device")
        ch.make([fields(BILLED, 1, token(0), NOV + DAY, 5000, 1000, 1190, contract=None),
                 fields(BILLED, 2, token(0), NOV + 2 * DAY, 7000, 2000, 2380),
                 fields(BILLED, 3, token(5), NOV + 3 * DAY, 3000, 300, 357)])
        ingest(sessions, ch, ch.records)
        _made_rows(sessions)
        send_statuses(sessions, tmp / "status-keys", STATUSES)

        def call(*argv: str) -> None:
            assert main([*argv, "--db", target, "--keys", str(tmp / "keys")]) == 0, argv

        call("billing", "seller", "--name", "EVC GmbH", "--country", "DE", "--vat-id", "DE123456789")
        call("customer", "add", "ACME", "--name", "ACME Fleet", "--kind", "company", "--country", "DE",
             "--address", "Werkstr. 5", "--postcode", "80331", "--city", "Munich", "--vat-id", "DE999999999")
        call("contract", "add", "ACME-1", "--customer", "ACME", "--valid-from", "2026-01-01")
        call("card", "assign", "--token", token(0), "--customer", "ACME", "--contract", "ACME-1")
        call("billing", "run", "--period", "2026-11")
        with sessions() as db:  # the run bills the March rows too (receipts): take the real records' documents
            docs = {kind: db.scalar(select(InvoiceLine.invoice).where(InvoiceLine.dev == BILLED, InvoiceLine.seq == seq))
                    for kind, seq in (("invoice", 2), ("receipt", 3))}
        accounts = Accounts(sessions)
        accounts.add_user(ADMIN, PASSWORD, "admin")
        accounts.add_user(VIEWER, PASSWORD, "viewer")
        yield World(target, sessions, docs["invoice"], docs["receipt"], ch)
    finally:
        if admin is not None:
            from sqlalchemy.orm import close_all_sessions

            close_all_sessions()
            drop_database(admin, name)
            admin.close()


def login(client, user: str = ADMIN, password: str = PASSWORD):
    """Log the TestClient in through the form; returns the login's CSRF token."""
    r = client.get("/login")
    pre = re.search(r'name="csrf" value="([^"]+)"', r.text)[1]
    r = client.post("/login", data={"user": user, "password": password, "csrf": pre}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/sessions").text)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html)[1]


@pytest.fixture(scope="module")
def app(world):
    from backend.web import create_app

    return create_app(world.db)


@pytest.fixture
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        yield c
