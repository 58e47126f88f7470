"""The dashboard's world: a database (SQLite and PostgreSQL) with real signed records of one charger,
billed into an invoice and a receipt with the billing CLI, plus hand-made session rows of two more
chargers in March 2026 whose figures the analytics tests compute by hand; an admin and a viewer."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

import pytest

from host_tests.backend.conftest import _pg_admin
from host_tests.billing.conftest import T0 as NOV, Charger, fields, ingest, token
from sim.backend import PG_URL

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
                           payload='{"v":1,"cost":{"lines":[]}}', charged=0, stored_at=start))
        for tok, bal, contract in ((TOK_A, 5000, "fleet"), (TOK_B, None, None), (TOK_C, None, None)):
            db.add(Card(token=tok, status="accepted", exp=None, contract=contract, balance=bal, updated_at=0))
        for cid in ("cu-1", "cu-2"):
            db.add(Customer(id=cid, kind="driver", name=f"Customer {cid}", address="Str. 1", postcode="10115",
                            city="Berlin", country="DE", vat_id=None, email=None, language="en", currency="EUR",
                            created_at=0))
        db.flush()
        db.add(Contract(id="fleet", customer_id="cu-2", created_at=0))
        db.add(CardOwner(token=TOK_B, valid_from=0, customer_id="cu-1", contract_id=None, assigned_at=0))


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
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
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
