"""Backend ingest rate: signed records through a real broker (mosquitto), verified, stored in one
transaction per batch and acknowledged (signed acks, after the commit), with 1, 2 and 4 workers
(each a partition of the devices), on SQLite (a file in a temp folder: WAL, synchronous=FULL) and PostgreSQL
(the local server, when reachable); and the backlog drain of 100 chargers x 1,000 records each.

Records: the firmware signs a few under MicroPython (the rate row); the load is sealed in CPython
with `cryptography` in the firmware's exact format (the same payload bytes, OCMF string and JWS
header: checked against a firmware record below), each device with its own P-256 key. Throughput is
measured from the first publish to the last ack; every run checks that each record was stored
exactly once. Each worker is a `python -m backend serve` process; the publishing clients, the broker
and the workers share this machine's cores.

Before/after in one run: the backend of BEFORE_REV (`git archive`, read only) is measured beside
this tree's, in process and with 1, 2 and 4 workers (before: a shared subscription, the broker deals
records round robin; after: device affinity, each worker a partition, backend/worker.py).
EVC_BENCH_BACKEND_BEFORE=<rev> picks another, =0 leaves it out; EVC_BENCH_BACKEND_DRAIN=0 leaves out
the backlog drain. Each ingest row notes the CPU each process spent per record (workers, mosquitto,
this process's publishing clients), read from /proc: on 2 cores their sum bounds the rate.

Profile, per record (issue #23, round 1: cProfile, in process, SQLite, batches of 64): at 8c7b8e4
4.46 ms profiled, 2.9 of them ORM lookups (a query and a flush per device, pending, card, session),
0.78 verification; at 0dcc2a4 (one query per batch, one multi-row INSERT) 0.81 ms profiled: ECDSA
0.13, the rest of verification 0.26, the batch's statements 0.20, the commit 0.09. Round 2 (py-spy
on the worker under this load, sampling the GIL holder; timings without a profiler), per record,
before -> after: the two ECDSA verifications 0.10 -> 0.10 ms (OpenSSL, 50 us each, GIL released),
the rest of verification (base64, JSON, schema, OCMF) about 0.07 -> 0.04, reading the seq of a
re-send 0.010 -> 0.003, the transaction with its commit 0.17 -> 0.14 (in process, the rows below),
paho's receive thread about 0.06 and the PUBACKs and signed acks about 0.03 (unchanged). Cut:
base64url decoded with binascii, the regexes, ECDSA and algorithm objects made once, the OCMF time
with time.gmtime, the seq read from the payload's first 200 characters instead of all of it, a Core
executemany instead of the ORM's bulk insert; and verification on a thread of its own, a batch
ahead of the transaction (ECDSA and SQLite release the GIL), with batches of at most half the
broker's in-flight window (100) so that the next one fills while one is stored. Several workers:
each receives every record (no $share) and spends about 0.1 ms on each one it leaves to another
worker (paho's parsing, the PUBACK), so on 2 cores shared with mosquitto and the publishers the
CPU per record of all processes together (in each row's note) grows with the workers.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Row
from sim.backend import drop_database
from sim.records import TOKEN, seal

TITLE = "Backend ingest (verify, store, ack)"
DEVICES = 8
PER_DEVICE = 500
WORKERS = (1, 2, 4)
REPEATS = 3  # runs per configuration, before and after alternating; the best is reported (the machine is shared)
DRAIN_CHARGERS = 100
DRAIN_RECORDS = 1000
DRAIN_WINDOW = 50  # records a charger has sent ahead of its last ack (its uplink's in-flight window)
REPO = Path(__file__).resolve().parents[1]
BEFORE_REV = "0dcc2a4"  # the backend before issue #23's round 2 (shared subscription, one thread)


class Fleet:
    """Devices with their own keys and chained records, sealed on first use."""

    def __init__(self, prefix: str, devices: int, per_device: int):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        self.devs = [f"{prefix}-{i}" for i in range(devices)]
        self.keys = {d: ec.generate_private_key(ec.SECP256R1()) for d in self.devs}
        self.pems = {d: k.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
                     for d, k in self.keys.items()}
        self.records: dict[str, list[str]] = {}
        for d in self.devs:
            prev, out = "", []
            for seq in range(1, per_device + 1):
                jws, prev = seal(self.keys[d], d, seq, prev)
                out.append(jws)
            self.records[d] = out

    @property
    def total(self) -> int:
        return sum(len(r) for r in self.records.values())


def _same_format_as_firmware(tmp: Path) -> float:
    """Seal with the firmware (MicroPython) and here; the payloads must agree byte for byte but for
    the OCMF signature. Returns the firmware's signing rate (records/s)."""
    import re

    from cryptography.hazmat.primitives.asymmetric import ec

    from sim.records import make_device, payload

    n = 20
    t0 = time.perf_counter()
    made = make_device(tmp, "fmt-0", n, [TOKEN])
    rate = n / (time.perf_counter() - t0)
    key, prev = ec.generate_private_key(ec.SECP256R1()), ""
    for seq, fw in enumerate(made.records[:2], 1):
        prev = "" if seq == 1 else hashlib.sha256(payload(made.records[0])).hexdigest()
        ours, _ = seal(key, "fmt-0", seq, prev)
        strip = lambda j: re.sub(rb'SD\\":\\"[0-9A-F]+', b"SD", payload(j))  # noqa: E731
        if strip(ours) != strip(fw) or ours.split(".")[0] != fw.split(".")[0]:
            raise AssertionError("bench records differ from the firmware's format")
    return rate


# -- the backend under test ---------------------------------------------------------------------

class Workers:
    """n `python -m backend serve` processes (from tree, default this repo): on one shared
    subscription, or partitioned (device affinity: $EVC_BACKEND_PARTITION=i/n)."""

    def __init__(self, broker_url: str, db: str, n: int, keys: str, tree: Path = REPO, extra: list[str] | None = None,
                 partitioned: bool = False):
        self.cmd = [sys.executable, "-m", "backend", "serve", "--broker", broker_url, "--db", db, *(extra or [])]
        self.env = {**os.environ, "EVC_BACKEND_KEYS": keys, "EVC_CONVERGE_RETRY_S": "off", "PYTHONPATH": str(tree)}
        self.tree, self.n, self.partitioned = tree, n, partitioned
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Workers":
        for i in range(self.n):
            env = {**self.env, "EVC_BACKEND_PARTITION": f"{i}/{self.n}"} if self.partitioned else self.env
            p = subprocess.Popen(self.cmd, cwd=self.tree, env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
            self.procs.append(p)
            ready = threading.Event()

            def pump(p=p, ready=ready) -> None:
                for line in p.stderr:  # type: ignore[union-attr]
                    if "listening on" in line:
                        ready.set()

            threading.Thread(target=pump, daemon=True).start()
            if not ready.wait(60):
                self.__exit__()
                raise RuntimeError("a backend worker did not subscribe")
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Charger:
    """One device's uplink: publishes its backlog at QoS 1, at most `window` records ahead of the
    backend's last ack (None: all at once), and counts acks."""

    def __init__(self, broker_url: str, dev: str, records: list[str], window: int | None):
        from backend.mqtt import connect, make_client

        self.dev, self.records, self.window = dev, records, window
        self.acked, self.sent = 0, 0
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.client = make_client(broker_url, f"bench-{dev}")
        self.client.max_inflight_messages_set(1000)
        self.client.on_message = self._on_ack
        connect(self.client, broker_url)
        self.client.subscribe(f"evc/{dev}/ack", qos=1)

    def _on_ack(self, _c, _u, msg) -> None:
        parts = bytes(msg.payload).split(b".")
        if len(parts) == 3:  # a signed ack (JWS)
            seq = json.loads(base64.urlsafe_b64decode(parts[1] + b"=" * (-len(parts[1]) % 4)))["seq"]
        else:  # bench/integrity.py's baseline: the unsigned acks of before issue 18
            seq = json.loads(msg.payload)["seq"]
        with self._lock:
            self.acked = max(self.acked, seq)
        if self.acked >= len(self.records):
            self.done.set()
        else:
            self.pump()

    def pump(self) -> None:
        with self._lock:
            upto = len(self.records) if self.window is None else min(len(self.records), self.acked + self.window)
            todo = range(self.sent, upto)
            self.sent = max(self.sent, upto)
        for i in todo:
            self.client.publish(f"evc/{self.dev}/rec", self.records[i], qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _register(db: str, fleet: Fleet) -> None:
    from backend.db import open_db
    from backend.keys import load_public_key
    from backend.models import Device

    sessions = open_db(db)
    with sessions.begin() as s:
        for d in fleet.devs:
            s.add(Device(id=d, pubkey=load_public_key(fleet.pems[d]), added_at=0, head_seq=0, head_hash=""))
    sessions.kw["bind"].dispose()


def _stored(db: str) -> int:
    """Sessions stored (the primary key (dev, seq) makes each one distinct)."""
    from sqlalchemy import func, select

    from backend.db import open_db
    from backend.models import Session

    sessions = open_db(db)
    with sessions() as s:
        n = s.scalar(select(func.count()).select_from(Session))
    sessions.kw["bind"].dispose()
    return n


def _cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) a process has used: /proc, else 0 (the notes then say 0)."""
    if pid is None:
        t = os.times()
        return t.user + t.system
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class Measured(float):
    """records/s, with the CPU ms each process spent per record meanwhile."""

    cpu: dict[str, float]

    def note(self) -> str:
        workers = [v for k, v in self.cpu.items() if k.startswith("worker")]
        w = f"worker {workers[0]:.2f}" if len(workers) == 1 else f"workers {' + '.join(f'{v:.2f}' for v in workers)}"
        return (f"CPU ms/record: {w}, mosquitto {self.cpu['broker']:.2f}, publishers {self.cpu['publishers']:.2f} "
                f"(sum {sum(self.cpu.values()):.2f})")


def measure(broker_url: str, db: str, fleet: Fleet, workers: int, keys: str, window: int | None = None,
            tree: Path = REPO, timeout: float = 900, partitioned: bool = False, broker_pid: int | None = None) -> Measured:
    """records/s from the first publish to the last ack, all records stored exactly once."""
    _register(db, fleet)
    with Workers(broker_url, db, workers, keys, tree, partitioned=partitioned) as ws:
        chargers = [Charger(broker_url, d, fleet.records[d], window) for d in fleet.devs]
        try:
            time.sleep(0.3)  # SUBACKs
            pids = {f"worker{i}": p.pid for i, p in enumerate(ws.procs)} | {"broker": broker_pid, "publishers": None}
            cpu0 = {k: _cpu_s(pid) for k, pid in pids.items() if k != "broker" or pid is not None}
            t0 = time.perf_counter()
            for c in chargers:
                c.pump()
            deadline = time.monotonic() + timeout
            for c in chargers:
                if not c.done.wait(max(0.0, deadline - time.monotonic())):
                    raise RuntimeError(f"{c.dev}: acked only {c.acked} of {len(c.records)}")
            took = time.perf_counter() - t0
            cpu = {k: 1000 * (_cpu_s(pids[k]) - v) / fleet.total for k, v in cpu0.items()}
        finally:
            for c in chargers:
                c.close()
    n = _stored(db)
    if n != fleet.total:
        raise RuntimeError(f"stored {n} sessions of {fleet.total}")
    out = Measured(fleet.total / took)
    out.cpu = {"broker": 0.0, **cpu}
    return out


def in_process(tmp: Path, fleet: Fleet, batch: int = 64) -> tuple[float, float, float]:
    """Ingestor.ingest_many straight on SQLite (no broker, no acks), the fleet's records in batches
    of `batch` interleaved across devices: (records/s, ms per record verifying before the
    transaction, ms per record in the transaction with its commit)."""
    from backend.db import open_db
    from backend.ingest import Ingestor

    db = str(tmp / f"inproc-{time.monotonic_ns()}.db")
    _register(db, fleet)
    ing = Ingestor(open_db(db))
    spent = {"verify": 0.0, "transaction": 0.0}

    def timed(name, fn):
        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] += time.perf_counter() - t
        return wrapper

    ing._verify = timed("verify", ing._verify)  # noqa: SLF001
    ing._transaction = timed("transaction", ing._transaction)  # noqa: SLF001
    longest = max(len(r) for r in fleet.records.values())
    order = [(f"evc/{d}/rec", fleet.records[d][i]) for i in range(longest) for d in fleet.devs if i < len(fleet.records[d])]
    t0 = time.perf_counter()
    for i in range(0, len(order), batch):
        ing.ingest_many(order[i:i + batch])
    took = time.perf_counter() - t0
    ing.sessions.kw["bind"].dispose()
    return len(order) / took, 1000 * spent["verify"] / len(order), 1000 * spent["transaction"] / len(order)


def in_process_of(tree: Path, tmp: Path, fleet: Fleet) -> tuple[float, float, float]:
    """in_process() with the backend of another tree, in a process of its own."""
    data = tmp / "fleet.json"
    data.write_text(json.dumps({"devs": fleet.devs, "records": fleet.records,
                                "pems": {d: p.decode() for d, p in fleet.pems.items()}}))
    code = ("import json, sys, types; from pathlib import Path; from bench.backend import in_process; "
            f"d = json.loads(Path({str(data)!r}).read_text()); "
            "f = types.SimpleNamespace(devs=d['devs'], records=d['records'], pems={k: v.encode() for k, v in d['pems'].items()}); "
            f"print(json.dumps(in_process(Path({str(tmp)!r}), f)))")
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp, capture_output=True, text=True, timeout=600, check=True)
    return tuple(json.loads(out.stdout.strip().splitlines()[-1]))  # type: ignore[return-value]


def _before_tree(tmp: Path) -> Path | None:
    """backend/ and evc/ of BEFORE_REV (or $EVC_BENCH_BACKEND_BEFORE; "0": none) in a folder."""
    rev = os.environ.get("EVC_BENCH_BACKEND_BEFORE", BEFORE_REV)
    if rev in ("", "0"):
        return None
    folder = tmp / "before"
    folder.mkdir()
    try:
        archive = subprocess.run(["git", "archive", rev, "backend", "evc"], cwd=REPO, capture_output=True, check=True,
                                 timeout=60).stdout
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return folder


def run() -> list[Row]:
    from backend.keys import Keys
    from sim.broker import Broker

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, Broker(prefer="mosquitto") as broker:
        keys = str(Path(tmp) / "backend-keys")
        Keys(keys).init()
        before = _before_tree(Path(tmp))
        was = f"before ({BEFORE_REV})" if before is not None else ""
        rate = _same_format_as_firmware(Path(tmp))
        rows.append(Row("backend", "records signed by the firmware (MicroPython, host)", rate, "records/s",
                        "JWS + OCMF, two P-256 signatures each; the load below is sealed in CPython in the same format"))
        fleet = Fleet("bench", DEVICES, PER_DEVICE)
        runs, b_runs = [], []
        for _ in range(REPEATS):
            runs.append(in_process(Path(tmp), fleet))
            if before is not None:
                b_runs.append(in_process_of(before, Path(tmp), fleet))
        rate, v_ms, t_ms = max(runs)
        note = (f"best of {REPEATS}; batches of 64: verifying {v_ms:.2f} ms/record before the transaction, the "
                f"transaction with its commit {t_ms:.2f}")
        if b_runs:
            b_rate, b_v, b_t = max(b_runs)
            note += f"; {was}: {b_rate:,.0f} records/s, verifying {b_v:.2f}, the transaction {b_t:.2f}"
        rows.append(Row("backend", "ingest in process (no broker), SQLite", rate, "records/s",
                        note + ". Where a record's time goes: module docstring of bench/backend.py"))
        pg = _postgres()
        targets = [("SQLite", lambda name: str(Path(tmp) / f"{name}.db"))]
        if pg is not None:
            admin, base = pg

            def pg_db(name: str) -> str:
                drop_database(admin, name)
                admin.execute(f'CREATE DATABASE "{name}"')
                return f"{base}/{name}"

            targets.append(("PostgreSQL", pg_db))

        def once(label: str, make, name: str, **kw) -> Measured:
            db = make(name)
            try:
                return measure(broker.url, db, kw.pop("fleet", fleet), kw.pop("n"), keys, broker_pid=broker.proc.pid, **kw)
            finally:
                if label == "PostgreSQL":
                    drop_database(admin, db.rsplit("/", 1)[1])

        stamp = int(time.time())
        for label, make in targets:
            first = first_before = None
            for n in WORKERS:
                runs, b_runs = [], []
                for i in range(REPEATS):
                    runs.append(once(label, make, f"evc_bench_{n}_{i}_{stamp}", n=n, partitioned=n > 1))
                    if before is not None:
                        b_runs.append(once(label, make, f"evc_bench_b{n}_{i}_{stamp}", n=n, tree=before))
                r = max(runs)
                first = first or r
                how = "device affinity (a partition each)" if n > 1 else "one worker"
                note = (f"{DEVICES} devices x {PER_DEVICE} records at once, best of {REPEATS}; {how}: x{r / first:.2f} "
                        f"of 1 worker; {r.note()}")
                if b_runs:
                    b = max(b_runs)
                    first_before = first_before or b
                    note += (f"; {was}, {'a shared subscription' if n > 1 else 'one worker'}: {b:,.0f} records/s, "
                             f"x{b / first_before:.2f} of its 1 worker; {b.note()}")
                rows.append(Row("backend", f"ingest, {n} worker{'s' if n > 1 else ''}, {label}", r, "records/s", note))
        if pg is None:
            rows.append(Row("backend", "ingest on PostgreSQL", "skipped", "", "no server (run .ci/postgres.sh as root)"))
        if os.environ.get("EVC_BENCH_BACKEND_DRAIN", "1") == "0":
            return rows
        t0 = time.perf_counter()
        drain = Fleet("drain", DRAIN_CHARGERS, DRAIN_RECORDS)
        seal_s = time.perf_counter() - t0
        rows.append(Row("backend", "records sealed in CPython (cryptography) for the drain", drain.total / seal_s,
                        "records/s", f"{drain.total:,} records, 2 signatures each"))
        for label, make in targets:
            n = 4
            r = once(label, make, f"evc_drain_{stamp}", n=n, fleet=drain, window=DRAIN_WINDOW, partitioned=True)
            rows.append(Row("backend", f"backlog drain, {DRAIN_CHARGERS} chargers x {DRAIN_RECORDS:,} records, {label}",
                            drain.total / r, "s", f"{r:,.0f} records/s, {n} workers with device affinity; each charger "
                                                  f"{DRAIN_WINDOW} records ahead of its acks; {r.note()}"))
        if pg is not None:
            admin.close()
    return rows


def _postgres():
    import psycopg

    from sim.backend import PG_URL

    try:
        return psycopg.connect(PG_URL, autocommit=True, connect_timeout=3), PG_URL.rsplit("/", 1)[0]
    except psycopg.Error:
        return None
