"""Two billing runs at once (two engines, as two processes would have): every session is billed
exactly once and the numbers of each series are gapless, 1..n. PostgreSQL is the case that matters
(row locks); SQLite serializes writers and must give the same result."""
from __future__ import annotations

import threading

from sqlalchemy import select

from backend.billing import registry
from backend.billing.runs import Runner
from backend.db import open_db
from backend.models import BilledSession, Invoice, Session
from host_tests.billing.conftest import DEC, SELLER, T0, Charger, Clock, fields, ingest, token
from host_tests.billing.test_runs import contract, customer

N_CUSTOMERS = 12


def test_two_runs_at_once_number_gaplessly_and_bill_once(db_target, keys_dir):
    sessions = open_db(db_target)
    registry.set_seller(sessions, **SELLER)
    for i in range(N_CUSTOMERS):
        customer(sessions, f"C{i:02d}")
        contract(sessions, f"K{i:02d}", f"C{i:02d}", cycle=("per_session", "weekly", "monthly")[i % 3])
        registry.assign_card(sessions, token(i), f"C{i:02d}", f"K{i:02d}")
    ch = Charger("evc-c1", keys_dir)
    # 120 sessions: 12 customers (many per-session and weekly documents) and 2 ad-hoc cards (receipts)
    ch.make([fields(ch.dev, s, token((s - 1) % (N_CUSTOMERS + 2)), T0 + s * 5000, 3000, 100 + s, 119 + s)
             for s in range(1, 121)])
    ingest(sessions, ch, ch.records)
    results: list = []
    errors: list = []
    barrier = threading.Barrier(2)

    # each run its own engine and connections (opened here: alembic's migrate is not thread-safe)
    runners = [Runner(open_db(db_target), Clock(DEC + 60)) for _ in range(2)]

    def run(runner: Runner) -> None:
        barrier.wait(timeout=30)
        try:
            results.append(runner.run("2026-11"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in runners]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads) and errors == []
    print("documents per run:", [len(r.issued) for r in results])
    issued = sorted(results[0].issued + results[1].issued)
    assert len(set(issued)) == len(issued)  # no document was issued by both
    with sessions() as db:
        docs = list(db.scalars(select(Invoice)))
        assert sorted(d.number for d in docs) == issued
        for series in {d.series for d in docs}:
            seqs = sorted(d.seq for d in docs if d.series == series)
            assert seqs == list(range(1, len(seqs) + 1)), series
        billed = list(db.scalars(select(BilledSession)))
        assert len(billed) == len({(b.dev, b.seq) for b in billed}) == len(list(db.scalars(select(Session))))
    assert Runner(sessions, Clock(DEC + 120)).run("2026-11").issued == []
