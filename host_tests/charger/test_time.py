"""Time on a charger that boots without it (the host board starts like a board after power-up:
quality U), then gets it from an SNTP server (the test's own, on 127.0.0.1) or from the backend's
signed `time` command over a real broker. Before: records are flagged `time-unsynced` and priced
without the time-of-day element, card expiry is not judged (the card is accepted), remote commands
are rejected `time-unknown`. From the sync on: quality S in records, status and events, the expired
card is refused, the time-of-day element prices the session, commands are accepted."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from evc.tariff import compile_doc
from host_tests.charger.topics import DeviceTopics
from host_tests.foundation.test_sntp import SntpServer
from sim.charger import DEV, authlist_doc, dump, flat_tariff, token

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
OLD = bytes.fromhex("04010203040506")  # on the list, expired an hour before the SNTP server's time
REF = 1767268800  # the SNTP server's clock starts at 2026-01-01T12:00:00Z
STARTED = r"session: started "
RECORD = r"session: record (\d+): "
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tou_tariff() -> dict:
    """0.50/kWh from 08:00 to 20:00 (UTC), 0.20/kWh otherwise: with unknown time only the second
    element can be judged."""
    return {"id": "T-TOU", "currency": "EUR", "elements": [
        {"price_components": [{"type": "ENERGY", "price": "0.50", "vat": 20.0, "step_size": 1}],
         "restrictions": {"start_time": "08:00", "end_time": "20:00"}},
        {"price_components": [{"type": "ENERGY", "price": "0.20", "vat": 20.0, "step_size": 1}]},
    ]}


def Watch(url: str) -> DeviceTopics:
    return DeviceTopics(url, DEV)


def test_boot_without_time_then_sntp(charger, broker):
    """Boot with U, the SNTP server silent; a session (expired card accepted: expiry cannot be
    judged); the server answers; the expired card is refused, a session is priced with the
    time-of-day element and stamped S."""
    srv = SntpServer("silent", ref=REF)
    watch = Watch(broker.url)
    try:
        c = charger(broker=broker.url, time_quality="U",
                    config={"time": {"ntp": [srv.addr], "timeout_ms": 300, "retry_s": 1},
                            "uplink": {"status_s": 1}})  # records stay pending (no backend): status every 1 s
        c.seed(tariff=compile_doc(tou_tariff(), ver=1),
               authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"},
                                       {"token": token(OLD), "status": "accepted", "exp": REF - 3600}])])
        c.boot()
        c.wait_for(r"time: no SNTP server answered: 127.0.0.1:\d+ no answer within 300 ms")
        st = watch.wait("status", lambda d: d.get("online"))
        assert st["tq"] == "U" and st["t"] < 1704067200, st  # a never-set RTC: 2000-01-01 and on
        c.tap(OLD, STARTED)  # the list says expired, but with unknown time expiry is not judged
        time.sleep(1.5)
        c.tap(OLD, RECORD)
        assert "time: synced" not in c.output()

        srv.mode = "good"
        at = c.mark()
        c.wait_for(r"time: synced from 127\.0\.0\.1:\d+ \(rtt \d+ ms\)", timeout=10, start=at)
        c.tap(OLD, r"card rejected: expired$")  # judged now
        evt = watch.wait("evt", lambda d: d.get("evt") == "rejected")
        assert evt["tq"] == "S" and abs(evt["t"] - srv.now()) <= 2, evt
        c.tap(ALICE, STARTED)
        time.sleep(1.5)
        c.tap(ALICE, RECORD)
        st = watch.wait("status", lambda d: d.get("seq") == 2)
        assert st["tq"] == "S" and abs(st["t"] - srv.now()) <= 2, st
        c.stop()
    finally:
        watch.close()
        srv.close()
    before, after = c.records()
    f, g = before.fields, after.fields
    # before the sync: unknown time, flagged for the backend to re-price; the untimed element only
    assert f["start"]["tq"] == "U" and f["stop"]["tq"] == "U" and f["start"]["t"] < 1704067200, dump([before])
    assert "time-unsynced" in f["flags"] and f["token"] == token(OLD)
    assert {line["el"] for line in f["cost"]["lines"] if line["dim"] == "ENERGY"} == {1}, dump([before])
    # after: synchronized, the time-of-day element (12:00 is inside 08:00-20:00)
    assert g["start"]["tq"] == "S" and g["stop"]["tq"] == "S", dump([after])
    assert REF <= g["start"]["t"] <= g["stop"]["t"] <= REF + 300 and g["flags"] == []
    assert {line["el"] for line in g["cost"]["lines"] if line["dim"] == "ENERGY"} == {0}, dump([after])
    wh = g["energy_wh"]
    assert wh > 100 and g["cost"]["excl"] == (wh * 50 + 500) // 1000  # 0.50/kWh in cents, half-up


def _backend(tmp_path, c, broker_url: str, pem: str):
    env = {**os.environ, "EVC_DB": str(tmp_path / "backend.db"), "EVC_BACKEND_KEYS": str(c.backend_keys.folder),
           "EVC_BROKER": broker_url, "PYTHONPATH": REPO}
    (tmp_path / "device.pem").write_text(pem)

    def run(*args: str) -> str:
        p = subprocess.run([sys.executable, "-m", "backend", *args], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p.stdout

    run("device", "add", DEV, "--pubkey", str(tmp_path / "device.pem"))
    return run


def test_backend_time_command_over_the_broker(charger, broker, tmp_path):
    """No SNTP: a remote stop is rejected time-unknown; `python -m backend cmd time` (signed,
    accepted while time is unknown) sets the device's time, S; then commands are judged."""
    c = charger(broker=broker.url, time_quality="U", config={"time": {"ntp": []}})
    c.seed(tariff=compile_doc(flat_tariff(), ver=1))
    backend = _backend(tmp_path, c, broker.url, c.provision())
    watch = Watch(broker.url)
    try:
        c.boot()
        c.wait_for(r"uplink: connected to ")
        assert watch.wait("status", lambda d: d.get("online"))["tq"] == "U"
        backend("cmd", "stop", DEV)
        c.wait_for(r"down: cmd rejected: time-unknown")
        evt = watch.wait("evt", lambda d: d.get("evt") == "downlink-rejected")
        assert evt["reason"] == "time-unknown" and evt["tq"] == "U", evt
        sent = int(time.time())
        backend("cmd", "time", DEV)
        c.wait_for(r"time: set from the backend: \d+, was \d+ \(U\)")
        c.wait_for(r"down: command \w+ \(time\) applied")
        st = watch.wait("status", lambda d: d.get("tq") == "S")
        assert sent - 1 <= st["t"] <= int(time.time()) + 1, st
        at = c.mark()
        backend("cmd", "stop", DEV)  # its expiry can be judged now
        c.wait_for(r"down: command \w+ \(stop\) applied", start=at)
        c.stop()
    finally:
        watch.close()


def test_no_sntp_query_while_the_network_link_is_down(charger):
    """The SNTP task waits for the network link (hal/net.py): nothing is sent while it is down,
    the first query goes out once it is up and sets the time."""
    srv = SntpServer("good", ref=REF)
    try:
        c = charger(time_quality="U", config={"time": {"ntp": [srv.addr], "timeout_ms": 300, "retry_s": 1}})
        (c.root / "pins").mkdir(parents=True, exist_ok=True)
        (c.root / "pins" / "link").write_text("0")
        c.boot()
        time.sleep(3)
        assert srv.requests == [] and "time: synced" not in c.output(), c.output()
        (c.root / "pins" / "link").write_text("1")
        c.wait_for(r"time: synced from 127\.0\.0\.1:\d+", timeout=15)
        assert len(srv.requests) == 1
        c.stop()
    finally:
        srv.close()
