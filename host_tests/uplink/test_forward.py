"""Store-and-forward against a real broker and a backend peer: every record stored exactly
once, in order, whatever the network does; the event loop never stalls."""
from __future__ import annotations

import base64
import json

from sim.uplink import DeviceRun, uplink_cfg

STALL_BOUND_MS = 300


def _check(res: dict, peer, n: int, dev: str = "dev1") -> None:
    assert res["acked"] == n, res
    assert peer.stored(dev) == list(range(1, n + 1))
    assert res["ack_regress"] == 0
    assert res["max_lag_ms"] < STALL_BOUND_MS, res
    print(f"\nmax event loop stall {res['max_lag_ms']} ms; sent {res['sent']}, resent {res['resent']}, "
          f"acks ignored {res['acks_ignored']}, connects {res['connects']}, {res['elapsed_ms']} ms")


def _journal(tmp_path, **spec) -> dict:
    """The real journal (firmware/journal) on LittleFS (2 MB of RAM flash)."""
    return {"store": "journal", "heap": "6m", **spec}


def test_thousand_records_in_order(broker, peer, tmp_path):
    # records are journaled while the uplink drains them, as on a busy charger
    run = DeviceRun(_journal(tmp_path, records=1000, produce_ms=1, uplink=uplink_cfg(broker.url),
                             deadline_ms=60000, linger_ms=500)).start()
    res = run.result()
    assert res["store"] == "Journal"
    _check(res, peer, 1000)
    assert peer.duplicates == 0
    assert any(s.get("pending") == 0 and s.get("seq") == 1000 for s in peer.status_log)


def test_broker_restarted_mid_stream(broker, peer, tmp_path):
    run = DeviceRun(_journal(tmp_path, records=1000, prefill=1000, uplink=uplink_cfg(broker.url), deadline_ms=90000,
                             progress_every=100)).start()
    try:
        run.wait_progress(300)
        broker.restart()
        run.wait_progress(700)
        broker.stop()
        import time

        time.sleep(1.5)  # device retries into a dead port meanwhile
        broker.start()
        res = run.result()
    finally:
        run.stop()
    _check(res, peer, 1000)
    assert res["connects"] >= 3


def test_acks_duplicated_delayed_reordered_and_bogus(broker, faulty_peer):
    run = DeviceRun({"records": 600, "uplink": uplink_cfg(broker.url), "deadline_ms": 90000}).start()
    res = run.result()
    _check(res, faulty_peer, 600)
    assert res["acks_ignored"] > 0


def test_connection_cut_mid_packet(broker, peer):
    from sim.netfaults import FaultProxy

    with FaultProxy((broker.host, broker.port)) as proxy:
        proxy.cut_after = 7000  # every connection dies a few records in, inside a PUBLISH
        run = DeviceRun({"records": 300, "uplink": uplink_cfg(proxy.url, backoff_max_ms=500),
                         "deadline_ms": 90000, "progress_every": 50}).start()
        try:
            run.wait_progress(100)
            proxy.cut_after = None
            res = run.result()
        finally:
            run.stop()
    assert proxy.cuts >= 3
    _check(res, peer, 300)


def test_half_open_link_is_dropped_and_resumed(broker, peer):
    """The link goes silent both ways (no FIN, no RST): keepalive notices, the device reconnects."""
    import time

    from sim.netfaults import FaultProxy

    with FaultProxy((broker.host, broker.port)) as proxy:
        run = DeviceRun({"records": 400, "uplink": uplink_cfg(proxy.url), "deadline_ms": 90000,
                         "progress_every": 50}).start()
        try:
            run.wait_progress(100)
            proxy.mode = "blackhole"
            time.sleep(8)  # longer than keepalive (5 s): the device must give up on the link
            proxy.mode = "forward"
            res = run.result()
        finally:
            run.stop()
    _check(res, peer, 400)
    assert res["connects"] >= 2


def test_black_hole_broker_never_stalls_the_loop():
    from sim.netfaults import blackhole_server

    hole = blackhole_server()
    try:
        run = DeviceRun({"records": 5, "uplink": uplink_cfg(hole.url), "deadline_ms": 7000}).start()
        res = run.result()
    finally:
        hole.stop()
    assert res["acked"] == 0 and res["connects"] == 0
    assert hole.connections >= 2  # CONNACK deadline, backoff, tried again
    assert res["max_lag_ms"] < STALL_BOUND_MS, res
    print(f"\nblack hole: max event loop stall {res['max_lag_ms']} ms over {res['elapsed_ms']} ms")


def test_unresolvable_broker_name_never_stalls_the_loop():
    run = DeviceRun({"records": 5, "uplink": uplink_cfg("mqtt://no-such-host.invalid:1883"), "deadline_ms": 8000}).start()
    res = run.result()
    assert res["acked"] == 0 and res["connects"] == 0
    assert res["max_lag_ms"] < STALL_BOUND_MS, res
    assert "dns" in (res["error"] or "")


def test_records_larger_than_the_outbound_buffer_go_out_whole(broker, peer):
    """The outbound buffer is 1 KiB (conn.py): a larger record is sent head first, then its payload
    in pieces straight from the record, interleaved with small ones; each arrives intact."""
    run = DeviceRun({"records": 60, "size": 9000, "uplink": uplink_cfg(broker.url), "deadline_ms": 60000}).start()
    res = run.result()
    _check(res, peer, 60)
    sizes = {len(peer.records[("dev1", seq)]) for seq in range(1, 61)}
    assert min(sizes) > 4096 * 2, sizes
    for seq in range(1, 61):  # every payload decodes to its record: nothing lost or doubled in the pieces
        body = peer.records[("dev1", seq)].split(b".")[1]
        doc = json.loads(base64.urlsafe_b64decode(body + b"=" * (-len(body) % 4)))
        assert doc["seq"] == seq and len(doc["pad"]) > 6000
