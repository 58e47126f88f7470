"""Uplink backlog drain: journaled records delivered over MQTT to a backend peer on loopback,
directly and through a proxy that adds 50 ms of round-trip delay; records per second and the
longest event-loop stall the firmware saw meanwhile."""
from __future__ import annotations

from bench.common import Row
from host_tests.support.backend_peer import BackendPeer
from host_tests.support.broker import Broker as _TestBroker
from host_tests.uplink.netfaults import FaultProxy
from host_tests.uplink.rig import DeviceRun, uplink_cfg

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


def run() -> list[Row]:
    rows: list[Row] = []
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
