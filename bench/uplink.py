"""Uplink backlog drain: journaled records delivered over MQTT to a backend peer on loopback,
directly and through a proxy that adds 50 ms of round-trip delay; records per second and the
longest event-loop stall the firmware saw meanwhile."""
from __future__ import annotations

from bench.common import Row
from sim.backend_peer import BackendPeer
from sim.broker import Broker as _TestBroker
from sim.netfaults import FaultProxy
from sim.uplink import DeviceRun, uplink_cfg

TITLE = "Uplink: backlog drain over MQTT (store-and-forward, cumulative acks)"

RECORDS = 10_000
SIZE = 1200  # bytes of one signed record on the wire (a JWS of a typical session record)


class Broker(_TestBroker):
    """The test broker with Nagle off (mosquitto's set_tcp_nodelay), as a production broker should
    run: with it on, each small ack waits for a delayed TCP ack (~40 ms) and latency hides the uplink."""

    def _command(self) -> list[str]:
        cmd = super()._command()
        if self.kind == "mosquitto":
            with open(cmd[-1], "a") as f:
                f.write("set_tcp_nodelay true\n")
        return cmd


def _drain(url: str, peer: BackendPeer, dev: str, window: int, records: int) -> dict:
    spec = {"dev": dev, "store": "journal", "records": records, "prefill": records, "size": SIZE,
            "flash_kb": 16384, "heap": "48m", "timing": True, "deadline_ms": 600_000,
            "uplink": uplink_cfg(url, window=window, keepalive_s=30, resend_s=60)}
    res = DeviceRun(spec).start().result(timeout=900)
    assert res["acked"] == records and peer.stored(dev) == list(range(1, records + 1)), res
    return res


def _drain_to_reference_backend(broker: Broker, window: int, records: int, delay: float | None) -> dict:
    """Real signed, chained records drained into backend/ (verify, store in SQLite, ack)."""
    import os
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from backend.db import open_db
    from backend.models import Session

    key = ec.generate_private_key(ec.SECP256R1())
    dev = f"ref-w{window}-{'d' if delay else 'l'}"
    with tempfile.TemporaryDirectory() as tmp:
        pem = Path(tmp) / "dev.pem"
        pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        db = str(Path(tmp) / "backend.db")
        from backend.keys import Keys

        keys = Keys(Path(tmp) / "backend-keys")  # serve signs its acks: the device pins this key
        keys.init()
        env = {**os.environ, "EVC_DB": db, "EVC_BACKEND_KEYS": str(keys.folder)}
        subprocess.run([sys.executable, "-m", "backend", "device", "add", dev, "--pubkey", str(pem)], env=env,
                       check=True, capture_output=True)
        serve = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--broker", broker.url], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proxy = FaultProxy((broker.host, broker.port), delay_s=delay).start() if delay else None
        try:
            time.sleep(1.5)  # the backend subscribes
            spec = {"dev": dev, "store": "journal", "records": records, "prefill": records, "priv": "%064x" %
                    key.private_numbers().private_value, "backend_key": keys.public_hex(),
                    "flash_kb": 32768, "heap": "128m", "timing": True,
                    "deadline_ms": 900_000, "uplink": uplink_cfg(proxy.url if proxy else broker.url, window=window,
                                                                 keepalive_s=30, resend_s=60)}
            res = DeviceRun(spec).start().result(timeout=1500)
        finally:
            if proxy:
                proxy.stop()
            serve.terminate()
            serve.wait(10)
        with open_db(db)() as s:
            stored = s.query(Session).filter(Session.dev == dev).count()
    assert res["acked"] == records and stored == records, (res, stored)
    return res


def run() -> list[Row]:
    rows: list[Row] = []
    with Broker() as broker:
        for delay, net in ((None, "loopback"), (0.025, "50 ms RTT")):
            res = _drain_to_reference_backend(broker, 32, RECORDS, delay)
            rate = RECORDS * 1000 / max(1, res["drain_ms"])
            rows.append(Row("uplink", f"drain to the reference backend, {net}, window 32", round(rate), "records/s",
                            f"{RECORDS:,} real signed records (JWS + OCMF) verified, stored in SQLite and acked "
                            "by backend/"))
            rows.append(Row("uplink", f"longest loop stall, reference backend, {net}", res["max_lag_ms"], "ms",
                            "10 ms probe task beside the uplink"))
    with Broker() as broker, BackendPeer(broker.host, broker.port) as peer:
        cases = [("loopback", None, 32, RECORDS), ("loopback", None, 8, RECORDS),  # noqa: E501
                 ("50 ms RTT", 0.025, 32, RECORDS), ("50 ms RTT", 0.025, 128, RECORDS)]
        for i, (net, delay, window, n) in enumerate(cases):
            proxy = FaultProxy((broker.host, broker.port), delay_s=delay).start() if delay else None
            try:
                res = _drain(proxy.url if proxy else broker.url, peer, f"bench{i}", window, n)
            finally:
                if proxy:
                    proxy.stop()
            rate = n * 1000 / max(1, res["drain_ms"])
            note = f"{n:,} records of {SIZE} B from the journal (LittleFS), window {window}"
            rows.append(Row("uplink", f"drain, {net}, window {window}", round(rate), "records/s", note))
            rows.append(Row("uplink", f"longest loop stall, {net}, window {window}", res["max_lag_ms"], "ms",
                            "10 ms probe task beside the uplink"))
    return rows
