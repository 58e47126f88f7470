"""A billing run issues a bounded number of SQL statements: per batch of documents, never per
document or per session (no timings asserted). The old run issued about 14 statements and a commit
per document, two of them scanning whole tables on SQLite, and took quadratic time (docs/billing-runs.md).

The sessions are the benchmark's (bench/billing.py): four real signed records stored through
ingest, then copied with dev, seq, card, times and amounts varied; customers with every cycle,
per-invoice and per-session discounts, a volume tier, and cards without a contract (receipts).
"""
from __future__ import annotations

import shutil
import sqlite3

import pytest
from sqlalchemy import event, func, select

from backend.billing import runs
from backend.billing.runs import Runner
from backend.db import open_db
from backend.models import BilledSession, Invoice
from bench.billing import DEC, _setup
from host_tests.billing.conftest import Clock

BIG, SMALL = 400, 40  # sessions (and customers: one session each, so about as many documents)


@pytest.fixture(scope="module")
def databases(tmp_path_factory) -> dict[str, str]:
    """Two SQLite files: BIG sessions, and a copy keeping the SMALL earliest of them."""
    root = tmp_path_factory.mktemp("billing-scale")
    big = str(root / "big.db")
    _setup(big, root, BIG, BIG)
    small = str(root / "small.db")
    shutil.copy(big, small)
    conn = sqlite3.connect(small)
    with conn:
        conn.execute("DELETE FROM sessions WHERE rowid NOT IN (SELECT rowid FROM sessions ORDER BY start_t LIMIT ?)",
                     (SMALL,))
    conn.close()  # checkpoints the WAL into the file, which is copied next
    return {"big": big, "small": small}


def run_counting(path: str, tmp_path, name: str) -> tuple[list[str], int, int]:
    """Bill November on a copy of path: (numbers issued, statements of the run, of a second run)."""
    db = str(tmp_path / f"{name}.db")
    shutil.copy(path, db)
    sessions = open_db(db)
    count = [0]

    def on_execute(*_args) -> None:
        count[0] += 1

    event.listen(sessions.kw["bind"], "before_cursor_execute", on_execute)
    issued = Runner(sessions, Clock(DEC + 3600)).run("2026-11").issued
    first, count[0] = count[0], 0
    assert Runner(sessions, Clock(DEC + 3600)).run("2026-11").issued == []
    again = count[0]
    event.remove(sessions.kw["bind"], "before_cursor_execute", on_execute)
    with sessions() as s:  # every session billed, every document written
        n_sessions = s.scalar(select(func.count()).select_from(runs.Session))
        assert s.scalar(select(func.count()).select_from(BilledSession)) == n_sessions
        assert s.scalar(select(func.count()).select_from(Invoice)) == len(issued)
    sessions.kw["bind"].dispose()
    return issued, first, again


def test_statements_do_not_grow_with_documents_in_one_transaction(databases, tmp_path, monkeypatch):
    """With every document in one batch, 40 or 400 documents take the same statements."""
    monkeypatch.setattr(runs, "BATCH_DOCS", 10_000)
    monkeypatch.setattr(runs, "BATCH_SESSIONS", 10_000)
    small, n_small, again_small = run_counting(databases["small"], tmp_path, "small")
    big, n_big, again_big = run_counting(databases["big"], tmp_path, "big")
    print(f"{len(small)} documents: {n_small} statements; {len(big)} documents: {n_big} statements")
    assert len(small) <= SMALL and len(big) >= BIG * 9 // 10
    assert n_big <= n_small + 2  # the old run: about 14 more per document
    assert again_big == again_small  # a second run reads what is unbilled and issues nothing


def test_statements_grow_with_batches_not_documents(databases, tmp_path):
    """With the real batch size, a few statements per batch of BATCH_DOCS documents."""
    big, n_big, _ = run_counting(databases["big"], tmp_path, "big")
    batches = -(-len(big) // runs.BATCH_DOCS)
    print(f"{len(big)} documents in {batches} batches: {n_big} statements")
    assert batches >= 2
    assert n_big <= 10 + 20 * batches
    assert n_big * 10 < len(big)  # the old run: about 14 per document
