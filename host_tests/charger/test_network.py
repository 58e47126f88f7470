"""The network link dropped and restored while a session runs (the host board's link, ROOT/pins/link,
driven by firmware/hal/net.py; a real broker): the session goes on (relay closed, metering), the
uplink goes offline while the link is down and connects again when it is back, a record made
during an outage reaches the broker after it, and status shows the link state."""
from __future__ import annotations

import time

from evc.tariff import compile_doc
from host_tests.charger.topics import DeviceTopics
from evc.verify import verify_record
from sim.charger import DEV, authlist_doc, dump, flat_tariff, token

ALICE = bytes.fromhex("04a1b2c3d4e5f6")
STARTED = r"session: started "
RECORD = r"session: record (\d+): "


def Topics(url: str) -> DeviceTopics:
    return DeviceTopics(url, DEV, "test-net")


def _link(c, up: bool) -> None:
    (c.root / "pins").mkdir(exist_ok=True)
    (c.root / "pins" / "link").write_text("1" if up else "0")


def test_link_lost_and_restored_mid_session(charger, broker):
    import json

    c = charger(broker=broker.url, config={"net": {"backoff_min_ms": 200, "backoff_max_ms": 1000},
                                           "uplink": {"status_s": 1}})
    c.seed(tariff=compile_doc(flat_tariff(), ver=1),
           authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    pem = c.provision()
    topics = Topics(broker.url)
    try:
        c.boot()
        c.wait_for(r"net: up: lan 127\.0\.0\.1")
        c.wait_for(r"uplink: connected to ")
        st = json.loads(topics.wait("status", lambda p: b'"link": "up"' in p or b'"link":"up"' in p, raw=True))
        assert st["link"] == "up" and st["ip"] == "127.0.0.1" and "rssi" not in st, st
        c.tap(ALICE, STARTED)
        time.sleep(1.0)
        assert c.relay() == 1

        # outage 1, mid-session: the uplink drops its connection at once, the session goes on
        at = c.mark()
        _link(c, False)
        c.wait_for(r"net: down: lan link lost", timeout=5, start=at)
        c.wait_for(r"uplink: offline: network link down", timeout=3, start=at)
        first = c.status_after(c.mark())
        later = c.status_after(c.mark())
        # "connecting" while an attempt waits for the link, "down" between attempts
        assert {first["net"], later["net"]} <= {"down", "connecting"} and later["state"] == "charging", later
        assert int(later["wh"]) > int(first["wh"]) > 0  # metering goes on
        assert c.relay() == 1
        time.sleep(2.0)  # no connection attempts while the link is down
        assert "uplink: connected" not in "\n".join(c.dev.lines[at:])

        at = c.mark()
        _link(c, True)
        c.wait_for(r"net: up: lan 127\.0\.0\.1", timeout=5, start=at)
        c.wait_for(r"uplink: connected to ", timeout=5, start=at)
        assert c.relay() == 1
        assert c.status_after(c.mark())["net"] == "up"

        # outage 2: the session ends while offline; its record waits in the journal
        at = c.mark()
        _link(c, False)
        c.wait_for(r"uplink: offline: network link down", timeout=5, start=at)
        m = c.tap(ALICE, RECORD)
        assert m.group(1) == "1" and c.relay() == 0
        time.sleep(1.5)
        assert topics.of("rec") == [] and c.status_after(c.mark())["pending"] == "1"

        at = c.mark()
        _link(c, True)
        c.wait_for(r"uplink: connected to ", timeout=5, start=at)
        raw = topics.wait("rec", lambda p: True, raw=True)  # sent after the link came back
        st = json.loads(topics.wait("status", lambda p: b'"seq": 1' in p or b'"seq":1' in p, raw=True))
        assert st["link"] == "up" and st["state"] == "idle", st
        c.stop()
    finally:
        topics.close()
    out = c.output()
    # one line per transition: up at boot, then down, up, down, up
    assert len([ln for ln in out.splitlines() if " net: " in ln]) == 5, out[-3000:]
    rec = verify_record(raw.decode(), pem, kid=DEV)
    (journaled,) = c.records()  # no backend acknowledged it: still in the journal, the same bytes
    assert rec.payload == journaled.payload, dump([rec, journaled])
    f = rec.fields
    assert f["seq"] == 1 and f["token"] == token(ALICE) and f["stop"]["reason"] == "card"
    assert f["energy_wh"] >= int(later["wh"]) and f["flags"] == [], dump([rec])
