"""Only the backend can make a charger forget a record or accept a card online (issue 18).

Acks and online authorization answers are JWS by the backend key the device pins. Through a real
broker, against the firmware under MicroPython: forged (another key), another device's, mismatched
and unsigned acks trim nothing; the genuine ack does. Forged and replayed answers (another request's
nonce, another token, another key, another device, expired, unsigned) authorize nothing.
"""
from __future__ import annotations

import json
import time

from sim.backend_peer import AckFaults, BackendPeer, Signer, b64url, b64url_decode
from sim.uplink import DeviceRun, uplink_cfg

DEV = "dev1"


def test_forged_foreign_mismatched_and_unsigned_acks_trim_nothing(broker):
    other = Signer()
    with BackendPeer(broker.host, broker.port, faults=AckFaults(hold=True)) as peer:
        # the real journal: trimming is journal.ack(); records stay until a genuine ack
        run = DeviceRun({"store": "journal", "heap": "6m", "records": 5, "prefill": 5, "report_ms": 100,
                         "hold_ms": 12000, "deadline_ms": 60000, "uplink": uplink_cfg(broker.url)}).start()
        try:
            assert peer.wait(lambda: peer.order[DEV] == [1, 2, 3, 4, 5], 20), run.log()  # (wait holds the lock)
            genuine = peer.ack(DEV, 5)
            head, body, sig = genuine.split(b".")
            forged = [
                peer.ack(DEV, 5, signer=other),  # the right content under another key
                peer.ack("dev2", 5, peer.hashes[(DEV, 5)]),  # another device's ack (even with this record's hash)
                peer.ack(DEV, 5, peer.hashes[(DEV, 4)]),  # genuine key and device, the hash of another record
                peer.ack(DEV, 5, "0" * 64),  # a hash of no record at all
                json.dumps({"seq": 5}).encode(),  # unsigned: the old format
                head + b"." + b64url(b64url_decode(body).replace(peer.hashes[(DEV, 5)].encode(), b"1" * 64)) + b"." + sig,
                # ^ the genuine ack with its hash changed after signing
                peer.ack(DEV, 9, "0" * 64),  # beyond the journal: dropped before any signature check
            ]
            seen = 0
            for i, payload in enumerate(forged):
                peer.publish(DEV, "ack", payload)
                rep = run.wait_report(lambda r, n=seen + 1: r["acks_ignored"] >= n, 20)
                seen = rep["acks_ignored"]
                assert rep["acked"] == 0, (i, rep, run.log())
            time.sleep(0.3)
            rep = run.wait_report(lambda r: True, 5)
            assert rep["acked"] == 0 and rep["acks_verified"] == 0, rep
            peer.release_acks()  # the backend's own acks go out now: genuine, they trim
            rep = run.wait_report(lambda r: r["acked"] == 5, 20)
            ignored = rep["acks_ignored"]
            # replays of genuine acks: an older one and the same one again move nothing
            first = next(p for d, p in peer.sent_acks if d == DEV)
            for payload in (first, genuine):
                peer.publish(DEV, "ack", payload)
            rep = run.wait_report(lambda r: r["acks_ignored"] >= ignored + 2, 20)
            assert rep["acked"] == 5
            res = run.result()
            reasons = [line for line in run.lines if " fwd: " in line]
        finally:
            run.stop()
    assert res["acked"] == 5 and res["acks_verified"] >= 1, res
    assert res["acks_ignored"] >= len(forged) + 2
    # each one was looked at for what it is (the device log says why)
    text = "\n".join(reasons)
    assert text.count("signature (") == 2 and "for device 'dev2'" in text, text
    assert text.count("hash does not match record 5") == 2 and "malformed ack" in text, text
    assert res["max_lag_ms"] < 300, res


def test_forged_and_replayed_auth_answers_authorize_nothing(broker):
    other = Signer()
    tokens = ["%032x" % i for i in range(1, 10)]
    kept: dict[str, bytes] = {}

    def forge(dev: str, req: dict) -> list[bytes]:
        i = tokens.index(req["token"])
        if i == 6 and "genuine" in kept:
            i = 7  # the second request for this token
        ok = {"ok": True, "status": "accepted", "contract": "C-1", "allowance": 900, "bal_seq": 0}
        if i == 0:
            return [peer.auth_answer(dev, {**req, "nonce": "0123456789abcdef"}, **ok)]  # another request's nonce
        if i == 1:
            return [peer.auth_answer(dev, {**req, "token": tokens[8]}, **ok)]  # another token's answer
        if i == 2:
            return [peer.auth_answer(dev, req, signer=other, **ok)]  # another key
        if i == 3:
            return [peer.auth_answer(dev, req, exp=int(time.time()) - 10, **ok)]  # expired
        if i == 4:
            return [peer.auth_answer("dev2", req, **ok)]  # for another device
        if i == 5:
            return [json.dumps({"nonce": req["nonce"], "token": req["token"], **ok}).encode()]  # unsigned
        if i == 6:  # a forgery first, then the genuine answer: the forgery does not shut it out
            kept["genuine"] = peer.auth_answer(dev, req, ok=True, status="accepted", contract="C-7", allowance=700,
                                               bal_seq=3)
            return [peer.auth_answer(dev, req, signer=other, ok=True, contract="EVIL"), kept["genuine"]]
        if i == 7:
            return [kept["genuine"]]  # replayed: the genuine answer to an earlier request
        return []

    with BackendPeer(broker.host, broker.port, auth_raw=forge) as peer:
        asked = tokens[:7] + [tokens[6]]
        run = DeviceRun({"records": 0, "authorize": asked, "deadline_ms": 60000,
                         "uplink": uplink_cfg(broker.url)}).start()
        res = run.result()
    got = res["auth"]
    assert got[:6] == [None] * 6, got
    assert got[6]["ok"] is True and got[6]["contract"] == "C-7" and got[6]["allowance"] == 700, got
    assert got[6]["token"] == tokens[6] and got[6]["bal_seq"] == 3
    assert got[7] is None  # the replay names the first request's nonce
    # verified and refused: another token, another key, expired, another device, the forgery before the genuine
    assert res["auth_rejected"] == 5, res
