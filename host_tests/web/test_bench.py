"""bench/dashboard.py runs (at a small scale: the full one is `make bench`)."""
from __future__ import annotations


def test_dashboard_bench_measures_every_page():
    from bench.dashboard import measure

    rows = measure(sessions=3000, chargers=20)
    assert [r.measure for r in rows][0] == "bulk insert" and rows[-1].measure == "database size"
    timed = [r for r in rows if r.unit == "ms"]
    assert len(timed) == 9 and all(r.value > 0 for r in timed)
    assert sum(r.note.endswith("goal < 500 ms") for r in timed) == 5
    assert rows[-1].value > 0
