"""Signed downlink documents through a real broker: the genuine ones are applied once, in
version order; forged, wrong-key, stale, expired, malformed and oversized ones are rejected
with an event on evc/<dev>/evt and change nothing (versions persist across restarts)."""
from __future__ import annotations

import json
import time

from sim.backend_peer import BackendPeer, Signer
from sim.uplink import DeviceRun, uplink_cfg

DEV = "dev1"


def _wait_online(peer: BackendPeer, run: DeviceRun) -> None:
    if not peer.wait(lambda: peer.status.get(DEV, {}).get("online") is True, 20):
        raise TimeoutError(run.log())


def _reasons(peer: BackendPeer) -> list[tuple[str, str]]:
    return [(e["doc"], e["reason"]) for e in peer.events if e.get("evt") == "downlink-rejected"]


def test_downlink_documents(broker, tmp_path):
    key, other = Signer(), Signer()
    spec = {"records": 0, "hold_ms": 60000, "deadline_ms": 60000, "uplink": uplink_cfg(broker.url),
            "backend_key": key.spki_hex, "state_dir": str(tmp_path)}
    now = int(time.time())
    with BackendPeer(broker.host, broker.port) as peer:
        peer.publish(DEV, "tariff", key.sign({"type": "tariff", "ver": 5, "id": "t5"}), retain=True)
        run = DeviceRun(spec).start()
        try:
            _wait_online(peer, run)
            forged = bytearray(key.sign({"type": "tariff", "ver": 6, "id": "t6"}))
            forged[-5] ^= 1  # one bit of the signature
            tampered = key.sign({"type": "tariff", "ver": 6, "id": "t6"}).split(b".")
            tampered[1] = tampered[1][:-2] + b"xx"  # payload changed after signing
            plan = [
                ("tariff", bytes(forged)),
                ("tariff", b".".join(tampered)),
                ("tariff", other.sign({"type": "tariff", "ver": 7, "id": "t7"})),  # wrong key
                ("tariff", key.sign({"type": "tariff", "ver": 3, "id": "t3"})),  # replayed old version
                ("tariff", key.sign(b'{"type": "tariff", "ver": 8,')),  # malformed JSON
                ("tariff", key.sign({"type": "tariff", "ver": 9, "pad": "x" * 20000})),  # oversized
                ("tariff", key.sign({"type": "cmd", "ver": 9})),  # document of another type
                ("tariff", b"not a jws at all"),
                ("tariff", key.sign({"type": "tariff", "ver": 9, "refuse": True})),  # the owner refuses it
                ("cmd", key.sign({"type": "cmd", "id": "c1", "dev": DEV, "exp": now - 10, "cmd": "stop"})),  # expired
                ("cmd", key.sign({"type": "cmd", "id": "c2", "dev": DEV, "exp": now + 300, "cmd": "stop"})),
                ("cmd", key.sign({"type": "cmd", "id": "c2", "dev": DEV, "exp": now + 300, "cmd": "stop"})),  # replay
                ("cmd", key.sign({"type": "cmd", "id": "c3", "dev": "dev2", "exp": now + 300, "cmd": "stop"})),
                ("cmd", key.sign({"type": "cmd", "id": "c4", "exp": now + 300, "cmd": "stop"})),  # no device named
                ("tariff", key.sign({"type": "tariff", "ver": 10, "id": "t10"})),
                ("authlist", key.sign({"type": "authlist", "ver": 20, "full": True, "part": 1, "parts": 3,
                                       "entries": [{"token": "b"}]})),
                ("authlist", key.sign({"type": "authlist", "ver": 20, "full": True, "part": 0, "parts": 3,
                                       "entries": [{"token": "a"}]})),
                ("authlist", key.sign({"type": "authlist", "ver": 20, "full": True, "part": 0, "parts": 3,
                                       "entries": [{"token": "a"}]})),  # the same part again
                ("authlist", key.sign({"type": "authlist", "ver": 20, "full": True, "part": 2, "parts": 3,
                                       "entries": [{"token": "c"}]})),
                ("authlist", key.sign({"type": "authlist", "ver": 22, "full": False, "base": 21, "part": 0,
                                       "parts": 1, "entries": [{"token": "d"}]})),  # diff on a list we lack
                ("authlist", key.sign({"type": "authlist", "ver": 23, "full": False, "base": 20, "part": 0,
                                       "parts": 1, "entries": [{"token": "a"}]})),
            ]
            for kind, doc in plan:
                peer.publish(DEV, kind, doc)
            want = [("tariff", "signature"), ("tariff", "signature"), ("tariff", "signature"), ("tariff", "stale"),
                    ("tariff", "malformed"), ("tariff", "oversized"), ("tariff", "malformed"), ("tariff", "signature"),
                    ("tariff", "invalid"), ("cmd", "expired"), ("cmd", "replay"), ("cmd", "wrong-device"),
                    ("cmd", "wrong-device"), ("authlist", "base")]
            assert peer.wait(lambda: len(_reasons(peer)) >= len(want), 30), (_reasons(peer), run.log())
            assert peer.wait(lambda: peer.status[DEV].get("versions", {}).get("authlist") == 23, 10), run.log()
            assert peer.status[DEV]["versions"] == {"tariff": 10, "authlist": 23}
        finally:
            run.stop()
        # the last will, while the peer is still subscribed (after the with block it has left the broker)
        assert peer.wait(lambda: peer.status[DEV] == {"online": False}, 10), peer.status_log[-3:]
    assert _reasons(peer) == want
    saved = json.loads((tmp_path / "uplink.json").read_text())
    assert saved["tariff"] == 10 and saved["authlist"] == 23 and saved["cmds"] == ["c2"]

    # A restart: the retained tariff comes again (not re-applied), old versions stay refused.
    spec.update(hold_ms=3000, deadline_ms=3000)
    with BackendPeer(broker.host, broker.port) as peer:
        peer.publish(DEV, "tariff", key.sign({"type": "tariff", "ver": 10, "id": "t10"}), retain=True)
        run = DeviceRun(spec).start()
        _wait_online(peer, run)
        peer.publish(DEV, "tariff", key.sign({"type": "tariff", "ver": 9, "id": "t9"}))
        peer.publish(DEV, "cmd", key.sign({"type": "cmd", "id": "c2", "dev": DEV, "exp": now + 300, "cmd": "stop"}))
        res = run.result()
    assert res["applied_docs"] == []
    assert res["downlink"] == {"tariff": 10, "authlist": 23}
    assert _reasons(peer) == [("tariff", "stale"), ("cmd", "replay")]
    print(f"\ndownlink: max event loop stall {res['max_lag_ms']} ms (ES256 verify inline)")


def test_applied_documents_reach_the_owner(broker, tmp_path):
    key = Signer()
    now = int(time.time())
    spec = {"records": 0, "hold_ms": 4000, "deadline_ms": 4000, "uplink": uplink_cfg(broker.url),
            "backend_key": key.spki_hex, "state_dir": str(tmp_path)}
    with BackendPeer(broker.host, broker.port) as peer:
        run = DeviceRun(spec).start()
        _wait_online(peer, run)
        peer.publish(DEV, "tariff", key.sign({"type": "tariff", "ver": 1, "id": "t1"}))
        for i in (1, 0):
            peer.publish(DEV, "authlist", key.sign({"type": "authlist", "ver": 2, "full": True, "part": i,
                                                    "parts": 2, "entries": [{"token": "t%d" % i}]}))
        peer.publish(DEV, "cmd", key.sign({"type": "cmd", "id": "x", "dev": DEV, "exp": now + 60, "cmd": "stop",
                                           "session": 4}))
        res = run.result()
    assert res["applied_docs"] == [
        ["tariff", {"type": "tariff", "ver": 1, "id": "t1"}],
        ["authlist", {"ver": 2, "kind": "full", "base": 0}, [{"token": "t0"}, {"token": "t1"}]],
        ["cmd", {"type": "cmd", "id": "x", "dev": DEV, "exp": now + 60, "cmd": "stop", "session": 4}],
    ]


def _tampered(doc: bytes, part: int, at: int, char: bytes) -> bytes:
    parts = doc.split(b".")
    p = bytearray(parts[part])
    p[at:at + 1] = char
    parts[part] = bytes(p)
    return b".".join(parts)


def test_large_documents_are_verified_from_flash(broker, tmp_path):
    """Documents larger than the 1.5 KB receive buffer are spooled to flash as they arrive and
    verified from there: the genuine ones apply exactly like small ones, every forgery of a large
    one is refused the same way, and nothing of them stays on flash."""
    key = Signer()
    now = int(time.time())
    pad = "p" * 5000  # ~6.8 KB as a JWS: above the receive buffer, under max_doc_bytes (8 KiB)
    spec = {"records": 0, "hold_ms": 60000, "deadline_ms": 60000, "uplink": uplink_cfg(broker.url),
            "backend_key": key.spki_hex, "state_dir": str(tmp_path)}
    entries = [[{"token": "%02d%s" % (i * 40 + j, "t" * 60), "status": "accepted", "contract": "C" * 20}
                for j in range(40)] for i in range(2)]
    big = key.sign({"type": "tariff", "ver": 2, "id": "big", "pad": pad})
    forged = bytearray(big)
    forged[-5] ^= 1
    plan = [
        ("tariff", bytes(forged)),
        ("tariff", _tampered(big, 1, 3000, b"A" if big.split(b".")[1][3000:3001] != b"A" else b"B")),
        ("tariff", _tampered(big, 1, 4001, b"*")),  # not base64url, deep inside the payload
        ("tariff", big.replace(b".", b"", 1)),  # two parts only
        ("tariff", key.sign(b"{" + b'"x":1,' * 800)),  # signed, but not JSON
        ("tariff", key.sign({"type": "tariff", "ver": 3, "pad": "x" * 9000})),  # over max_doc_bytes
        ("tariff", big),
        ("authlist", key.sign({"type": "authlist", "ver": 4, "full": True, "part": 1, "parts": 2,
                               "entries": entries[1]})),
        ("authlist", key.sign({"type": "authlist", "ver": 4, "full": True, "part": 0, "parts": 2,
                               "entries": entries[0]})),
        ("cmd", key.sign({"type": "cmd", "id": "big1", "dev": DEV, "exp": now + 300, "cmd": "stop", "pad": pad})),
    ]
    assert all(len(doc) > 1536 for _, doc in plan), [len(doc) for _, doc in plan]
    want = [("tariff", "signature")] * 4 + [("tariff", "malformed"), ("tariff", "oversized")]
    with BackendPeer(broker.host, broker.port) as peer:
        run = DeviceRun(spec).start()
        try:
            _wait_online(peer, run)
            for kind, doc in plan:
                peer.publish(DEV, kind, doc)
            assert peer.wait(lambda: peer.status.get(DEV, {}).get("versions", {}).get("authlist") == 4, 30), \
                (_reasons(peer), run.log())
            assert peer.wait(lambda: len(_reasons(peer)) >= len(want), 10), _reasons(peer)
            assert peer.wait(lambda: "command big1 (stop) applied" in run.log(), 10), run.log()
            versions = peer.status[DEV]["versions"]
        finally:
            run.stop()
    assert _reasons(peer) == want
    assert versions == {"tariff": 2, "authlist": 4}
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("down"))
    assert leftovers == [], leftovers


def test_a_large_document_cut_off_mid_transfer_is_not_applied(broker, tmp_path):
    """The link breaks inside a spooled document: the partial file is thrown away unverified,
    and the retained document, delivered whole on the next connection, applies once."""
    from sim.netfaults import FaultProxy

    key = Signer()
    doc = key.sign({"type": "tariff", "ver": 7, "id": "t7", "pad": "q" * 5000})
    with FaultProxy((broker.host, broker.port)) as proxy, BackendPeer(broker.host, broker.port) as peer:
        peer.publish(DEV, "tariff", doc, retain=True)
        proxy.cut_down_after = 3000  # CONNACK, SUBACK, then the retained tariff: cut inside it
        spec = {"records": 0, "hold_ms": 60000, "deadline_ms": 60000,
                "uplink": uplink_cfg(proxy.url, backoff_min_ms=1000, backoff_max_ms=1000),
                "backend_key": key.spki_hex, "state_dir": str(tmp_path)}
        run = DeviceRun(spec).start()
        try:
            deadline = time.monotonic() + 20
            while proxy.cuts == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            proxy.cut_down_after = None
            assert proxy.cuts == 1, run.log()
            assert peer.wait(lambda: peer.status.get(DEV, {}).get("versions", {}).get("tariff") == 7, 20), run.log()
        finally:
            run.stop()
        peer.publish(DEV, "tariff", b"", retain=True)
    assert _reasons(peer) == []
    assert proxy.connections >= 2
    assert "tariff ver 7 applied" in run.log() and run.log().count("tariff ver 7 applied") == 1
