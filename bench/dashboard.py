"""Operator's dashboard (#22): with N sessions on M chargers in a SQLite file, the time to render
the sessions page with a filter, the heat map and the revenue trend (the whole HTTP request through
the app, logged in, median of 5), and the database's size. Goal: each under 500 ms at 1,000,000
sessions on 500 chargers. Also timed, without a goal: the chargers and anomalies pages, and the
utilization and power per charger over one month (they read each session's cost lines).

The rows come from backend/web/demo.py (a year, a daily rhythm, 20,000 cards), inserted in bulk.

  .venv/bin/python -m bench.dashboard [--sessions N] [--chargers M]     (default 1,000,000 / 500)
  .venv/bin/python -m bench.dashboard --db /tmp/dash.db   (keeps the database; a second run reuses it)
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row

TITLE = "Operator's dashboard (pages and charts on a large sessions table)"
SESSIONS = int(os.environ.get("BENCH_DASHBOARD_SESSIONS", 1_000_000))
CHARGERS = int(os.environ.get("BENCH_DASHBOARD_CHARGERS", 500))
START = 1_767_225_600  # 2026-01-01 UTC
DAYS = 365
GOAL = "; goal < 500 ms"


def _median_ms(client, url: str, n: int = 5) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")
    return statistics.median(times)


def measure(sessions: int = SESSIONS, chargers: int = CHARGERS, keep: Path | None = None) -> list[Row]:
    logging.disable(logging.INFO)
    from fastapi.testclient import TestClient

    from backend.db import open_db
    from backend.web import create_app, demo
    from backend.web.auth import Accounts

    b = "dashboard"
    with tempfile.TemporaryDirectory() as tmp:
        path = keep if keep is not None else Path(tmp) / "dash.db"
        fill = None
        if not path.exists():
            db = open_db(str(path))
            t = time.perf_counter()
            demo.populate(db, n=sessions, chargers=chargers, cards=20_000, start=START, days=DAYS)
            fill = time.perf_counter() - t
            Accounts(db).add_user("bench", "bench password", "viewer")
        db = open_db(str(path))  # a kept database: migrated to the head (new indexes are built here)
        with db.begin() as s:
            s.connection().exec_driver_sql("ANALYZE")
        db.kw["bind"].dispose()
        with TestClient(create_app(str(path))) as client:
            pre = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text)[1]
            client.post("/login", data={"user": "bench", "password": "bench password", "csrf": pre})
            dev = demo.device_id(chargers // 2)
            pages = [("sessions page, one charger + one month", f"/sessions?dev={dev}&start=2026-06-01&end=2026-06-30"),
                     ("sessions page, one month, flag", "/sessions?start=2026-06-01&end=2026-06-30&flag=time-unsynced"),
                     ("heat map (SVG), whole year", "/charts/heatmap.svg"),
                     ("revenue trend per month (SVG)", "/charts/trend-revenue.svg?period=month"),
                     ("revenue trend per day (CSV)", "/charts/trend-revenue.csv?period=day")]
            timed = [(name, _median_ms(client, url), GOAL) for name, url in pages]
            month = "start=2026-06-01&end=2026-06-30"
            timed += [(name, _median_ms(client, url), "") for name, url in (
                ("chargers page (live state)", "/chargers"),
                ("anomalies page (offline periods)", "/anomalies"),
                ("utilization per charger, one month (CSV)", f"/charts/utilization.csv?{month}"),
                ("power per charger, one month (CSV)", f"/charts/power.csv?{month}"))]
        size = path.stat().st_size + sum(p.stat().st_size for p in path.parent.glob(path.name + "-*"))
    note = f"{sessions:,} sessions, {chargers} chargers, SQLite"
    return ([Row(b, "bulk insert", round(fill, 1) if fill is not None else 0.0, "s",
                 note if fill is not None else "reused " + str(path))]
            + [Row(b, name, round(ms, 1), "ms", "median of 5, whole request" + goal) for name, ms, goal in timed]
            + [Row(b, "database size", round(size / 2**20, 1), "MiB", note)])


def run() -> list[Row]:
    return measure()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=SESSIONS)
    p.add_argument("--chargers", type=int, default=CHARGERS)
    p.add_argument("--db", type=Path, help="keep the database in this SQLite file (reused when it exists)")
    a = p.parse_args(argv)
    for r in measure(a.sessions, a.chargers, a.db):
        print(f"{r.measure:<40} {r.fmt():>10} {r.unit:<4} {r.note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
