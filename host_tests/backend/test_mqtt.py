"""The served backend against a real broker: firmware records in, acks out, exactly once even when
the backend dies between storing and acknowledging, and with two workers sharing the load."""
from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select

from backend.db import open_db
from backend.keys import load_public_key
from backend.models import Anomaly, Device, Session
from backend.worker import FAULT_ENV
from host_tests.backend.conftest import REPO, TOKENS, wait_until
from sim.backend import register
from sim.records import ChargerLink, make_device


def stored(db: str) -> list[tuple[str, int]]:
    sessions = open_db(db)
    with sessions() as s:
        rows = [tuple(r) for r in s.execute(select(Session.dev, Session.seq).order_by(Session.dev, Session.seq))]
    sessions.kw["bind"].dispose()
    return rows


def anomaly_kinds(db: str) -> list[str]:
    sessions = open_db(db)
    with sessions() as s:
        kinds = list(s.scalars(select(Anomaly.kind).order_by(Anomaly.id)))
    sessions.kw["bind"].dispose()
    return kinds


def test_records_verified_stored_once_forged_flagged(broker, backends, db_target, charger):
    register(db_target, charger)
    backends(broker.url, db_target)
    dev = ChargerLink(broker.url, charger.dev, charger.records)
    try:
        dev.send(range(1, 7))
        assert dev.wait_acked(6)
        dev.send(range(1, 7))  # the device resends after a reconnect: duplicates
        h, p, s = charger.records[6].split(".")
        dev.send_raw(f"{h}.{p}.{s[:-6]}AAAAAA")  # forged signature for seq 7
        dev.send(range(7, 13))
        assert dev.wait_acked(12)
        assert wait_until(lambda: "bad-signature" in anomaly_kinds(db_target), 10)
    finally:
        dev.close()
    assert stored(db_target) == [(charger.dev, s) for s in range(1, 13)]
    assert anomaly_kinds(db_target) == ["bad-signature"]
    assert max(dev.acks) == 12


def test_killed_between_store_and_ack_then_restarted_loses_nothing_duplicates_nothing(broker, backends, db_target, charger):
    register(db_target, charger)
    crashing = backends(broker.url, db_target, ["--batch", "1"], env={FAULT_ENV: "exit-after-store:5"})
    dev = ChargerLink(broker.url, charger.dev, charger.records)
    try:
        dev.send(range(1, 13))
        assert crashing.wait_exit(30) == 70  # died with seq 5 committed and not acknowledged
        assert dev.acked <= 4  # acks already queued may or may not have left before the crash
        assert stored(db_target)[-1] == (charger.dev, 5)
        backends(broker.url, db_target)
        dev.resend_unacked()  # what the firmware does after reconnecting: seq 5.. again
        assert dev.wait_acked(12)
    finally:
        dev.close()
    assert stored(db_target) == [(charger.dev, s) for s in range(1, 13)]
    assert anomaly_kinds(db_target) == []


def test_two_workers_with_a_shared_subscription_store_every_record_exactly_once(broker, backends, db_target, device_dir):
    if broker.kind != "mosquitto":
        pytest.skip(f"broker {broker.kind} may not support MQTT shared subscriptions; mosquitto 2 does")
    fleet = [make_device(device_dir, f"evc-w{i}", 40, TOKENS) for i in range(3)]
    for made in fleet:
        register(db_target, made)
    workers = [backends(broker.url, db_target, ["--gap-grace", "60"]) for _ in range(2)]
    devs = [ChargerLink(broker.url, m.dev, m.records) for m in fleet]
    try:
        for d in devs:
            d.send(range(1, 41))
        for d in devs:
            d.resend_unacked()  # at-least-once: some records arrive twice, on either worker
        for d in devs:
            assert d.wait_acked(40)
    finally:
        for d in devs:
            d.close()
    assert stored(db_target) == [(m.dev, s) for m in fleet for s in range(1, 41)]
    assert anomaly_kinds(db_target) == []
    took = [sum("stored" in ln for ln in w.lines) for w in workers]  # informational only
    assert all(w.proc.poll() is None for w in workers), took


def test_cli_device_add_and_keys_init(tmp_path, charger):
    pub = tmp_path / "dev.pem"
    pub.write_bytes(charger.pubkey_pem)
    env_args = ["--db", str(tmp_path / "b.db"), "--keys", str(tmp_path / "keys")]
    run = lambda *a: subprocess.run([sys.executable, "-m", "backend", *a, *env_args], cwd=REPO,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    r = run("keys", "init")
    assert r.returncode == 0, r.stderr
    assert '"backend_key": "3059' in r.stdout
    assert run("keys", "init").returncode == 2  # never overwrites a key silently
    assert run("device", "add", "evc-a1", "--pubkey", str(pub)).returncode == 0
    r = run("device", "add", "evc-a1", "--pubkey", str(pub))
    assert r.returncode == 2 and "already registered" in r.stderr
    assert "evc-a1\tacked 0" in run("device", "list").stdout
