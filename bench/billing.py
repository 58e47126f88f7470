"""Billing run: a month of sessions over thousands of customers with mixed contracts becomes
invoices and receipts (backend/billing/runs.py), on a SQLite file.

Signing 100,000 records under MicroPython would take hours, and the billing run does not verify
signatures (ingest did): four real records are signed by the firmware and ingested, and the
sessions table is then filled directly with copies of their stored rows (raw JWS, OCMF string and
payload as signed; dev, seq, token, times, energy and amounts varied). The run reads exactly those
columns. The run itself is a separate process, so its time, peak memory (ru_maxrss) and SQL
statements are its own.

  .venv/bin/python -m bench.billing [--sessions N] [--customers N]     (default 100,000 / 5,000)

Profile (#20; cProfile and per-statement timings, shared 2-core machine). Before: 5,000 sessions /
5,000 customers gave 5,000 documents in 76 s, 10,000 sessions 5,700 documents in 319 s (4.2x the
time for 1.14x the documents), 100,000 did not finish in 14 min: quadratic. Per document ~14
statements and an fsync'd commit; its `(dev, seq) IN (VALUES ...)` reads, which SQLite runs as a
scan of all of `sessions` and `billed_sessions`, and the volume-tier energy query (every billed
session joined, no index on invoices.contract_id) took 90 % of the time at 10,000 (109 s tier
query, 29 s session load, 4 s billed check). After: documents in batches of 200 per transaction;
per batch one VALUES join on the primary keys (compiled once), one query each for customers,
contract versions, overdue invoices and tier energy (index 0008), three executemany inserts and a
commit: 810 statements for the 100,000-session run instead of ~150,000. What is left is Python
(parsing the signed payloads, building the lines, the planner's per-session contract lookup) and
the bulk inserts; SQL reads are a few seconds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backend.billing.runs import BATCH_DOCS, BATCH_SESSIONS
from bench.common import Row

TITLE = "Billing run (invoices and receipts from a month of sessions)"
SESSIONS = int(os.environ.get("BENCH_BILLING_SESSIONS", 100_000))
CUSTOMERS = int(os.environ.get("BENCH_BILLING_CUSTOMERS", 5_000))
REPO = Path(__file__).resolve().parents[1]
NOV = int(dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc).timestamp())
DEC = int(dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc).timestamp())
DEVICES = 200
SELLER = dict(name="EVC Bench GmbH", address="Hauptstr. 1", postcode="10115", city="Berlin", country="DE",
              vat_id="DE123456789", email="billing@evc.example")


def _card(c: int) -> str:
    return "%032x" % (0xB0B0_0000_0000 + c)


def _template_fields(seq: int) -> dict:
    """A finished session's fields, cost lines as the firmware's pricing writes them (19 % VAT; the
    second one with a FLAT fee line, the fourth split between 19 % and no VAT)."""
    wh, excl, incl = 12_000 + seq * 1_000, 360 + seq * 30, 428 + seq * 36
    lines = [{"dim": "ENERGY", "el": 0, "qty": wh, "billed": wh, "unit": "Wh", "price": 30, "vat": 1900,
              "from": 0, "to": 0, "excl": excl, "incl": incl}]
    if seq == 2:
        lines = [{**lines[0], "excl": excl - 100, "incl": incl - 119},
                 {"dim": "FLAT", "el": 1, "qty": 1, "billed": 1, "unit": "session", "price": 100, "vat": 1900,
                  "from": 0, "to": 0, "excl": 100, "incl": 119}]
    if seq == 4:
        lines = [{**lines[0], "excl": excl - 50, "incl": incl - 50, "vat": None},
                 {**lines[0], "el": 1, "excl": 50, "incl": 50 + (incl - excl)}]
    start = NOV + seq * 3600
    return {"v": 1, "dev": "bench-tpl", "seq": seq, "token": _card(0), "auth": "list", "contract": None,
            "tariff": {"id": "std", "ver": 1}, "start": {"t": start, "tq": "S", "wh": 1_000_000},
            "stop": {"t": start + 2400, "tq": "S", "wh": 1_000_000 + wh, "reason": "card"},
            "meter": {"model": "sdm630", "serial": "M-1"},
            "cost": {"currency": "EUR", "excl": excl, "incl": incl, "lines": lines}, "flags": [], "fw": "0.1.0"}


def _setup(db: str, work: Path, n_sessions: int, n_customers: int) -> dict:
    """Customers, contracts, cards and n_sessions session rows in db; what was made."""
    from sqlalchemy import delete, insert, select

    from backend.billing import registry, terms
    from backend.db import open_db
    from backend.ingest import Ingestor
    from backend.keys import load_public_key
    from backend.models import CardOwner, Contract, ContractVersion, Customer, Device, Session
    from sim.records import make_records

    sessions = open_db(db)
    pem, jws, _ = make_records(work, "bench-tpl", [_template_fields(s) for s in range(1, 5)])
    key = load_public_key(pem)
    with sessions.begin() as s:
        s.add(Device(id="bench-tpl", pubkey=key, added_at=0, head_seq=0, head_hash=""))
    outs = Ingestor(sessions).ingest_many([("evc/bench-tpl/rec", j) for j in jws])
    assert all(o.kind == "stored" for o in outs), outs
    with sessions() as s:
        templates = [{c.key: getattr(r, c.key) for c in Session.__table__.columns}
                     for r in s.scalars(select(Session).order_by(Session.seq))]
    with sessions.begin() as s:  # only the copies are billed
        s.execute(delete(Session).where(Session.dev == "bench-tpl"))

    registry.set_seller(sessions, **SELLER)
    kinds = {"receipt": 0, "per_session": 0, "weekly": 0, "monthly": 0}
    rules = (["percent:1000:invoice"], ["fixed:50:session"], ["percent:500:session:above=100000"], [])
    t0 = time.perf_counter()
    customers, contracts, versions, owners = [], [], [], []
    for c in range(n_customers):
        cid = f"C{c:05d}"
        customers.append(Customer(id=cid, kind="company" if c % 3 == 0 else "driver", name=f"Customer {c}",
                                  address="Street 1", postcode="10115", city="Berlin", country="DE", vat_id=None,
                                  email=None, language="de" if c % 2 else "en", currency="EUR", created_at=0))
        cycle = None if c % 50 == 0 else "per_session" if c % 50 == 1 else "weekly" if c % 10 == 2 else "monthly"
        kinds[cycle or "receipt"] += 1
        if cycle:
            contracts.append(Contract(id=f"K{c:05d}", customer_id=cid, created_at=0))
            versions.append(ContractVersion(contract_id=f"K{c:05d}", version=1, created_at=0, **terms.version_terms(
                valid_from=0, valid_to=None, cycle=cycle, payment_days=14, late_fee=500, tariff_id=None, rules=rules[c % 4])))
        owners.append(CardOwner(token=_card(c), valid_from=0, customer_id=cid, contract_id=f"K{c:05d}" if cycle else None,
                                assigned_at=0))
    with sessions.begin() as s:  # one transaction, parents flushed first (the registry's functions take one per call)
        for rows in (customers, contracts, versions + owners):
            s.add_all(rows)
            s.flush()
        s.add_all(Device(id=f"bench-{d:03d}", pubkey=key, added_at=0, head_seq=0, head_hash="") for d in range(DEVICES))
    seqs = [0] * DEVICES
    batch = []
    month = DEC - NOV - 7200
    with sessions.begin() as s:
        for i in range(n_sessions):
            tpl = templates[i % len(templates)]
            d = i % DEVICES
            seqs[d] += 1
            wh = 1_000 + (i * 7919) % 60_000
            excl = wh * 30 // 1000
            start = NOV + (i * 104_729) % month
            row = dict(tpl, dev=f"bench-{d:03d}", seq=seqs[d], token=_card((i * 31) % n_customers), start_t=start,
                       stop_t=start + 1800 + wh // 10, energy_wh=wh, start_wh=1_000_000 + i * 100, stop_wh=1_000_000 + i * 100 + wh,
                       cost_excl=excl, cost_incl=excl + (excl * 1900 + 5000) // 10000,
                       hash=hashlib.sha256(f"{d}:{seqs[d]}".encode()).hexdigest(), stored_at=DEC)
            batch.append(row)
            if len(batch) == 5000:
                s.execute(insert(Session), batch)
                batch = []
        if batch:
            s.execute(insert(Session), batch)
    sessions.kw["bind"].dispose()
    return {"kinds": kinds, "setup_s": time.perf_counter() - t0}


_RUN = """
import json, resource, sys, time
from backend.db import open_db
from backend.billing.runs import Runner
sessions = open_db(sys.argv[1])
from sqlalchemy import event
clock = lambda: int(sys.argv[2])
statements = [0]
event.listen(sessions.kw["bind"], "before_cursor_execute", lambda *a: statements.__setitem__(0, statements[0] + 1))
t0 = time.perf_counter(); first = Runner(sessions, clock).run("2026-11"); t1 = time.perf_counter()
n_first = statements[0]
again = Runner(sessions, clock).run("2026-11"); t2 = time.perf_counter()
print(json.dumps({"issued": first.issued, "run_s": t1 - t0, "again": len(again.issued), "again_s": t2 - t1,
                  "statements": n_first, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def measure(n_sessions: int = SESSIONS, n_customers: int = CUSTOMERS) -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="evc-bench-billing-") as tmp:
        db = str(Path(tmp) / "billing.db")
        made = _setup(db, Path(tmp), n_sessions, n_customers)
        proc = subprocess.run([sys.executable, "-c", _RUN, db, str(DEC + 3600)], capture_output=True, text=True,
                              cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=6 * 3600)
        if proc.returncode != 0:
            raise RuntimeError(f"billing run failed:\n{proc.stderr[-3000:]}")
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        size = os.path.getsize(db)
    issued = got["issued"]
    by_kind = {p: sum(n.startswith(p) for n in issued) for p in ("INV-", "RC-")}
    k = made["kinds"]
    scale = f"{n_sessions:,} sessions, {n_customers:,} customers, SQLite file ({size / 2**20:,.0f} MiB)"
    mix = (f"customers: {k['monthly']} monthly, {k['weekly']} weekly, {k['per_session']} per-session contracts "
           f"(10 % per invoice / 0.50 per session / 5 % above 100 kWh), {k['receipt']} without (receipts)")
    note = "session rows copied from 4 real signed records (dev, seq, token, times, amounts varied): the run reads stored rows"
    return [
        Row("billing", "billing run, wall time", got["run_s"], "s", scale),
        Row("billing", "documents issued", len(issued), "", f"{by_kind['INV-']:,} invoices, {by_kind['RC-']:,} receipts; {mix}"),
        Row("billing", "documents per second", len(issued) / got["run_s"], "docs/s",
            f"in transactions of up to {BATCH_DOCS} documents / {BATCH_SESSIONS:,} sessions (gapless numbers)"),
        Row("billing", "sessions per second", n_sessions / got["run_s"], "sessions/s", note),
        Row("billing", "SQL statements of the run", got["statements"], "",
            "a bounded number per batch of documents, none per document or session (before #20: ~14 per document, "
            "two of them scans of sessions/billed_sessions on SQLite: 5,000 sessions took 76 s, 10,000 took 319 s, "
            "100,000 did not finish in 14 min; the bench module's docstring has the profile)"),
        Row("billing", "peak memory of the run", got["maxrss_kb"] // 1024, "MiB", "ru_maxrss of the billing process (Python + SQLAlchemy included)"),
        Row("billing", "second run (idempotent)", got["again_s"], "s", f"{got['again']} documents issued"),
    ]


def run() -> list[Row]:
    return measure()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=SESSIONS)
    p.add_argument("--customers", type=int, default=CUSTOMERS)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    for r in measure(a.sessions, a.customers):
        print(f"{r.measure:<28} {r.fmt():>12} {r.unit:<10} {r.note}")
    print(f"(total {time.perf_counter() - t0:.0f} s; children's peak RSS "
          f"{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
