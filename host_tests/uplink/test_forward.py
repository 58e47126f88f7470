"""Store-and-forward against a real broker and a backend peer: every record stored exactly
once, in order, whatever the network does; the event loop never stalls."""
from __future__ import annotations

from host_tests.uplink.rig import DeviceRun, uplink_cfg

STALL_BOUND_MS = 300


def _check(res: dict, peer, n: int, dev: str = "dev1") -> None:
    assert res["acked"] == n, res
    assert peer.stored(dev) == list(range(1, n + 1))
    assert res["ack_regress"] == 0
    assert res["max_lag_ms"] < STALL_BOUND_MS, res
    print(f"\nmax event loop stall {res['max_lag_ms']} ms; sent {res['sent']}, resent {res['resent']}, "
          f"acks ignored {res['acks_ignored']}, connects {res['connects']}, {res['elapsed_ms']} ms")


def test_thousand_records_in_order(broker, peer):
    run = DeviceRun({"records": 1000, "uplink": uplink_cfg(broker.url), "deadline_ms": 60000}).start()
    res = run.result()
    _check(res, peer, 1000)
    assert peer.duplicates == 0
    assert any(s.get("pending") == 0 and s.get("seq") == 1000 for s in peer.status_log)
