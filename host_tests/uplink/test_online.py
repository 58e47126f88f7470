"""Online authorization with a deadline, events and the retained status message."""
from __future__ import annotations

from sim.backend_peer import BackendPeer
from sim.uplink import DeviceRun, uplink_cfg

KNOWN, SILENT = "a" * 32, "b" * 32


def test_authorize_answers_and_deadline_and_events(broker):
    def answer(token: str):
        return {"ok": True, "contract": "C-1", "balance": 1500} if token == KNOWN else None

    with BackendPeer(broker.host, broker.port, auth=answer) as peer:
        run = DeviceRun({"records": 20, "uplink": uplink_cfg(broker.url), "authorize": [KNOWN, SILENT],
                         "events": ["card-rejected"], "hold_ms": 500, "deadline_ms": 20000}).start()
        res = run.result()
        assert peer.wait(lambda: any(e.get("evt") == "card-rejected" for e in peer.events), 5)
    assert res["auth"][0]["ok"] is True and res["auth"][0]["contract"] == "C-1"
    assert res["auth"][1] is None  # no answer within online_timeout_ms (2 s here)
    assert [r["token"] for r in peer.auth_requests] == [KNOWN, SILENT]
    nonces = [r["nonce"] for r in peer.auth_requests]  # fresh random per request: 64 bits in hex
    assert len(set(nonces)) == 2 and all(len(n) == 16 and int(n, 16) >= 0 for n in nonces)
    evt = next(e for e in peer.events if e.get("evt") == "card-rejected")
    assert evt["detail"] == "test" and isinstance(evt["t"], int) and evt["tq"] in "SIU"
    final = [s for s in peer.status_log if s.get("online")][-1]
    assert final["seq"] == 20 and final["acked"] == 20 and final["pending"] == 0
    assert final["state"] == "idle" and final["fw"] == "test" and final["versions"] == {"tariff": 0, "authlist": 0}
    assert res["max_lag_ms"] < 300


def test_authorize_offline_answers_none_at_once():
    run = DeviceRun({"records": 0, "uplink": uplink_cfg("mqtt://127.0.0.1:9"), "authorize_offline": [KNOWN],
                     "deadline_ms": 500}).start()
    res = run.result()
    assert res["auth_offline"] == [None]
