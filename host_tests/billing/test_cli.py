"""The billing commands of python -m backend, in-process: what they print, and that every bad input
is refused with a clear error (exit status 2) and changes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from backend.__main__ import main
from backend.db import open_db
from backend.models import (BilledSession, BillingSetting, Card, CardOwner, Contract, ContractVersion, Customer,
                            Invoice, InvoiceLine, NumberSeries)
from host_tests.billing.conftest import T0, Charger, fields, ingest, token

TABLES = (Customer, Contract, ContractVersion, CardOwner, NumberSeries, Invoice, InvoiceLine, BilledSession,
          BillingSetting, Card)
DAY = 86400


def snapshot(sessions) -> dict:
    with sessions() as db:
        return {m.__tablename__: sorted(tuple(sorted((k, repr(v)) for k, v in vars(r).items() if not k.startswith("_")))
                                        for r in db.scalars(select(m))) for m in TABLES}


@pytest.fixture
def cli(tmp_path, keys_dir, capsys):
    db = str(tmp_path / "b.db")

    def call(*argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--db", db, "--keys", str(tmp_path / "keys")])
        out = capsys.readouterr()
        return code, out.out, out.err

    sessions = open_db(db)
    ch = Charger("evc-cli", keys_dir)
    ch.make([fields(ch.dev, 1, token(0), T0 + DAY, 5000, 1000, 1190),
             fields(ch.dev, 2, token(0), T0 + 2 * DAY, 5000, 2000, 2380),
             fields(ch.dev, 3, token(5), T0 + 3 * DAY, 5000, 300, 357)])
    ingest(sessions, ch, ch.records)
    return call, sessions


def test_the_whole_flow(cli):
    call, sessions = cli
    assert call("billing", "seller", "--name", "EVC GmbH", "--country", "DE", "--vat-id", "DE123456789")[0] == 0
    assert call("customer", "add", "ACME", "--name", "ACME Fleet", "--kind", "company", "--country", "DE",
                "--address", r"Werkstr. 5\nHof 2", "--postcode", "80331", "--city", "Munich", "--vat-id", "DE999999999",
                "--email", "ap@acme.example", "--language", "de")[0] == 0
    assert call("contract", "add", "ACME-1", "--customer", "ACME", "--valid-from", "2026-01-01",
                "--discount", "percent:1000:invoice", "--late-fee", "500")[0] == 0
    assert call("card", "assign", "--token", token(0), "--customer", "ACME", "--contract", "ACME-1")[0] == 0
    code, out, _ = call("contract", "set", "ACME-1", "--from", "2026-11-02T12:00:00Z", "--discount", "fixed:100:session")
    assert code == 0 and "version 2" in out
    code, out, _ = call("contract", "show", "ACME-1")
    assert code == 0 and "version 1" in out and "fixed" in out
    code, out, _ = call("billing", "run", "--period", "2026-11")
    assert code == 0 and "INV-" in out and "RC-" in out and "2 documents issued" in out
    number = out.split()[0]
    code, out, _ = call("invoice", "show", number)
    assert code == 0 and "ACME Fleet" in out and "evc-cli #2" in out and "VAT 19 %" in out
    code, out, _ = call("customer", "show", "ACME")
    assert code == 0 and token(0) in out and number in out and "Werkstr. 5" in out
    code, out, _ = call("invoice", "list", "--kind", "invoice")
    assert code == 0 and out.count("\n") == 1
    code, out, _ = call("refund", number, "--session", "evc-cli:2", "--amount", "250", "--note", "goodwill")
    assert code == 0 and out.startswith("CN-") and "-2.50 EUR" in out
    assert call("invoice", "paid", number)[0] == 0
    assert call("billing", "run", "--period", "2026-11")[2] == "" and "0 documents" in call("billing", "run", "--period", "2026-11")[1]


@pytest.mark.parametrize("argv, message", [
    (("customer", "add", "X1", "--name", "X", "--country", "Germany"), "ISO 3166-1"),
    (("customer", "add", "X1", "--name", "X", "--country", "DE", "--currency", "euro"), "ISO 4217"),
    (("customer", "add", "X1", "--name", "X", "--country", "DE", "--email", "nope"), "not an address"),
    (("customer", "add", "X1", "--name", "X", "--country", "DE", "--language", "fr"), "language"),
    (("customer", "add", "has space", "--name", "X", "--country", "DE"), "customer id"),
    (("customer", "add", "ACME", "--name", "X", "--country", "DE"), "exists already"),
    (("customer", "show", "NOBODY"), "unknown"),
    (("contract", "add", "K2", "--customer", "NOBODY"), "unknown"),
    (("contract", "add", "ACME-1", "--customer", "ACME"), "exists already"),
    (("contract", "add", "K2", "--customer", "ACME", "--discount", "percent:20000:invoice"), "1..10000"),
    (("contract", "add", "K2", "--customer", "ACME", "--discount", "half:off"), "TYPE:VALUE:PER"),
    (("contract", "add", "K2", "--customer", "ACME", "--payment-days", "-1"), "0..365"),
    (("contract", "add", "K2", "--customer", "ACME", "--valid-from", "2026-02-01", "--valid-to", "2026-01-01"), "end after"),
    (("contract", "add", "K2", "--customer", "ACME", "--valid-from", "yesterday"), "ISO 8601"),
    (("contract", "set", "ACME-1", "--from", "2025-01-01"), "must start after"),
    (("contract", "set", "NOPE", "--from", "2027-01-01"), "unknown"),
    (("contract", "set", "ACME-1", "--from", "2027-01-01", "--no-end", "--valid-to", "2028-01-01"), "contradict"),
    (("card", "assign", "--token", "XYZ", "--customer", "ACME"), "32 lower-case hex"),
    (("card", "assign", "--token", token(1), "--customer", "NOBODY"), "unknown"),
    (("card", "assign", "--token", token(1), "--customer", "ACME", "--contract", "NOPE"), "unknown"),
    (("card", "assign", "--token", token(0), "--customer", "ACME"), "already has an owner"),
    (("card", "assign", "--token", token(0), "--customer", "ACME", "--from", "2026-11-01"), "billed already"),
    (("billing", "run", "--period", "2026-13"), "YYYY-MM"),
    (("billing", "run", "--period", "2999-01"), "has not ended"),
    (("billing", "run", "--period", "2026-11", "--customer", "NOBODY"), "unknown"),
    (("billing", "auto-refund"), "which rule"),
    (("invoice", "show", "INV-1999-000001"), "no invoice"),
    (("invoice", "paid", "RC-2026-000001"), "no invoice"),
    (("refund", "INV-2026-000001", "--amount", "999999", "--session", "evc-cli:1"), "exceeds"),
    (("refund", "INV-2026-000001", "--session", "evc-cli"), "DEV:SEQ"),
    (("refund", "INV-2026-000001", "--session", "evc-cli:3"), "not on"),
    (("refund", "INV-2026-000001", "--amount", "-5", "--session", "evc-cli:1"), "positive"),
    (("refund", "NOPE"), "no invoice or receipt"),
])
def test_bad_input_is_refused_and_changes_nothing(cli, argv, message):
    call, sessions = cli
    call("billing", "seller", "--name", "EVC GmbH", "--country", "DE")
    call("customer", "add", "ACME", "--name", "ACME", "--country", "DE")
    call("contract", "add", "ACME-1", "--customer", "ACME", "--valid-from", "2026-01-01")
    call("card", "assign", "--token", token(0), "--customer", "ACME", "--contract", "ACME-1")
    assert call("billing", "run", "--period", "2026-11")[0] == 0
    before = snapshot(sessions)
    code, out, err = call(*argv)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert snapshot(sessions) == before


def test_argument_errors_exit_before_touching_the_database(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["billing", "auto-refund", "--void", "maybe", "--db", str(tmp_path / "x.db")])
    assert exc.value.code == 2 and "on or off" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
