"""The reference backend as a separate process (`python -m backend serve`), killable like a crashed
server; used by the simulator's tests and the benchmarks."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from sim.broker import shares_subscriptions

REPO = Path(__file__).resolve().parents[1]
# The PostgreSQL server the tests and benchmarks use when one is reachable (.ci/postgres.sh makes it).
PG_URL = os.environ.get("EVC_TEST_PG_URL", "postgresql://evc:evc@127.0.0.1:5432/postgres")


def drop_database(admin, name: str) -> None:
    """DROP a test database once its users are gone. WITH (FORCE) ends the backend's leftover
    connections, but an autovacuum worker there (the superuser's) is only ours to end with
    pg_signal_backend (.ci/postgres.sh grants it); a plain DROP waits that one out itself."""
    import time

    import psycopg

    deadline = time.monotonic() + 30
    force = True
    while True:
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else ""))
            return
        except (psycopg.errors.ObjectInUse, psycopg.errors.InsufficientPrivilege):
            if time.monotonic() > deadline:
                raise
            force = not force
            time.sleep(0.2)


class BackendProcess:
    """`python -m backend serve` as a separate process (killable like a crashed server)."""

    def __init__(self, broker_url: str, db: str, extra: list[str] | None = None, env: dict | None = None):
        share = [] if shares_subscriptions() else ["--no-share"]  # one worker needs no $share on amqtt
        self.cmd = [sys.executable, "-m", "backend", "serve", "--broker", broker_url, "--db", db, *share, *(extra or [])]
        self.env = {**os.environ, **(env or {})}
        if "--keys" in (extra or []):
            self.keys_folder = extra[extra.index("--keys") + 1]  # type: ignore[index]
        elif "EVC_BACKEND_KEYS" in (env or {}):
            self.keys_folder = env["EVC_BACKEND_KEYS"]  # type: ignore[index]
        else:
            # serve signs acks and auth answers: a key pair of the database's own (workers on one
            # database share it), beside a SQLite file or in the temp folder for a server URL
            import hashlib

            from backend.keys import Keys

            folder = (Path(db).parent / "backend-keys" if "://" not in db else
                      Path(tempfile.gettempdir()) / f"evc-keys-{hashlib.sha256(db.encode()).hexdigest()[:12]}")
            keys = Keys(folder)
            if not keys.key_file.exists():
                keys.init()
            self.keys_folder = str(folder)
        self.env["EVC_BACKEND_KEYS"] = self.keys_folder
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []

    @property
    def keys(self):
        """The backend's key pair (backend.keys.Keys): its public half verifies acks and auth answers."""
        from backend.keys import Keys

        return Keys(self.keys_folder)

    def start(self, timeout: float = 30) -> "BackendProcess":
        self.lines = []
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def pump() -> None:
            for line in self.proc.stderr:  # type: ignore[union-attr]
                self.lines.append(line.rstrip())
                if "listening on" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError("backend did not subscribe:\n" + "\n".join(self.lines[-30:]))
        return self

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def register(db: str, made) -> None:
    """Register a made device (sim.records.Made) with its public key in the backend database."""
    register_key(db, made.dev, made.pubkey_pem)


def register_key(db: str, dev: str, pubkey_pem: str | bytes) -> None:
    """Register device dev with its public key (PEM) in the backend database at db."""
    from backend.db import open_db
    from backend.keys import load_public_key
    from backend.models import Device

    pem = pubkey_pem.encode() if isinstance(pubkey_pem, str) else pubkey_pem
    sessions = open_db(db)
    with sessions.begin() as s:
        s.add(Device(id=dev, pubkey=load_public_key(pem), added_at=0, head_seq=0, head_hash=""))
    sessions.kw["bind"].dispose()
