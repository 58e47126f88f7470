"""Fixtures for the backend suite: each database test runs on SQLite and on PostgreSQL (when a
server is reachable), records come from the firmware under MicroPython, the broker is real."""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest

from sim.backend import PG_URL, BackendProcess, drop_database
from sim.records import Made, make_device

REPO = Path(__file__).resolve().parents[2]
TOKENS = ["%032x" % (0xC0FFEE00 + i) for i in range(4)]


def _pg_admin():
    import psycopg

    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server at {PG_URL} ({str(exc).strip()[:120]}): "
                    "run .ci/postgres.sh as root or set EVC_TEST_PG_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_target(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield str(tmp_path / "backend.db")
        return
    admin = _pg_admin()
    name = "evc_test_" + uuid.uuid4().hex[:12]
    admin.execute(f'CREATE DATABASE "{name}"')
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from sqlalchemy.orm import close_all_sessions

        close_all_sessions()
        drop_database(admin, name)
        admin.close()


@pytest.fixture(scope="session")
def device_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("device-keys")


@pytest.fixture(scope="session")
def charger(device_dir) -> Made:
    """Twelve chained records from the firmware's own record builder and key; TOKENS[0] is prepaid."""
    return make_device(device_dir, "evc-a1", 12, TOKENS, prepaid=(TOKENS[0],))


@pytest.fixture
def backends():
    """Start backends with backends(broker_url, db, ...); every one is stopped at the end."""
    started: list[BackendProcess] = []

    def start(*args, **kwargs) -> BackendProcess:
        b = BackendProcess(*args, **kwargs)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        b.stop()


def wait_until(pred, timeout: float = 30, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


@pytest.fixture
def store(db_target, charger):
    """A database with device evc-a1 (the charger fixture's key) registered."""
    from backend.db import open_db
    from backend.models import Device
    from backend.keys import load_public_key

    sessions = open_db(db_target)
    with sessions.begin() as db:
        db.add(Device(id="evc-a1", pubkey=load_public_key(charger.pubkey_pem), added_at=0, head_seq=0, head_hash=""))
    return sessions
