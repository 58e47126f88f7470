"""Backend ingest rate: records from the firmware (signed under MicroPython) through a real broker,
verified, stored in a transaction and acknowledged, with one worker and with two (shared
subscription). Measured from the first publish to the last ack; SQLite file in a temp folder."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Row

TITLE = "Backend ingest (verify, store, ack)"
DEVICES = 4
PER_DEVICE = 250


def _rate(broker_url: str, db: str, fleet, workers: int) -> float:
    from sim.backend import BackendProcess
    from sim.records import ChargerLink
    from sim.backend import register

    for made in fleet:
        register(db, made)
    procs = [BackendProcess(broker_url, db).start() for _ in range(workers)]
    links = [ChargerLink(broker_url, m.dev, m.records) for m in fleet]
    try:
        t0 = time.perf_counter()
        for link in links:
            link.client.loop_stop()  # publish from this thread as fast as the socket takes it
        infos = [link.client.publish(f"evc/{link.dev}/rec", r, qos=1) for i in range(PER_DEVICE)
                 for link in links for r in (link.records[i],)]
        for link in links:
            link.client.loop_start()
        for info in infos:
            info.wait_for_publish(120)
        for link in links:
            if not link.wait_acked(PER_DEVICE, 300):
                raise RuntimeError(f"{link.dev}: acked only {link.acked}")
        took = time.perf_counter() - t0
    finally:
        for link in links:
            link.close()
        for p in procs:
            p.stop()
    return DEVICES * PER_DEVICE / took


def run() -> list[Row]:
    from sim.records import make_device
    from sim.broker import Broker

    rows = []
    with tempfile.TemporaryDirectory() as tmp, Broker() as broker:
        t0 = time.perf_counter()
        fleet = [make_device(Path(tmp), f"bench-{i}", PER_DEVICE, ["%032x" % 7]) for i in range(DEVICES)]
        sign_s = time.perf_counter() - t0
        rows.append(Row("backend", "records signed by the firmware (MicroPython, host)", DEVICES * PER_DEVICE / sign_s,
                        "records/s", "JWS + OCMF, two P-256 signatures each"))
        for workers in (1, 2):
            rate = _rate(broker.url, str(Path(tmp) / f"w{workers}.db"), fleet, workers)
            rows.append(Row("backend", f"ingest, {workers} worker{'s' if workers > 1 else ''}", rate, "records/s",
                            f"{DEVICES} devices x {PER_DEVICE} records, SQLite (WAL, synchronous=FULL), {broker.kind}"))
        pg = _postgres()
        if pg is None:
            rows.append(Row("backend", "ingest on PostgreSQL", "skipped", "", "no server (run .ci/postgres.sh as root)"))
        else:
            admin, base = pg
            for workers in (1, 2):
                name = f"evc_bench_{workers}_{int(time.time())}"
                admin.execute(f'CREATE DATABASE "{name}"')
                try:
                    rate = _rate(broker.url, f"{base}/{name}", fleet, workers)
                finally:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                rows.append(Row("backend", f"ingest, {workers} worker{'s' if workers > 1 else ''}, PostgreSQL", rate,
                                "records/s", f"{DEVICES} devices x {PER_DEVICE} records, local server"))
            admin.close()
    return rows


def _postgres():
    import psycopg

    from sim.backend import PG_URL

    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3), PG_URL.rsplit("/", 1)[0]
    except psycopg.Error:
        return None
