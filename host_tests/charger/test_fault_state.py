"""The board's fault state as operators see it (app/fault.py, app/boot.py): a charger that cannot be
built, or a config that does not validate, waits with the relay open, the fault LED blinking and
the reason on the console once a minute, never reboots, and, when the config names a broker,
publishes a retained status {"state": "fault", "fault": reason} and a "fault" event. Never over a
TLS link it cannot verify. Firmware under the MicroPython unix port, mosquitto (or amqtt)."""
from __future__ import annotations

import json
import time

from evc.tariff import compile_doc
from host_tests.charger.topics import DeviceTopics
from sim.charger import DEV, authlist_doc, flat_tariff, token
from sim.device import DeviceProcess
from sim.flashfs import put_file

ALICE = bytes.fromhex("04a1b2c3d4e5f6")


def Topics(url: str) -> DeviceTopics:
    return DeviceTopics(url, DEV, "test-fault")


def retained_status(url: str, wait_s: float = 2.0) -> dict | None:
    """What a backend subscribing now gets as the device's retained status (None: nothing)."""
    t = Topics(url)
    try:
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            got = t.docs("status", retained=True)
            if got:
                return got[-1]
            time.sleep(0.05)
        return None
    finally:
        t.close()


def start(c) -> None:
    """Start the device without waiting for "charger: ready" (a faulted one never gets there)."""
    c.dev = DeviceProcess(c.root, c.config, heap=c.heap, name=c.name).start()


def led_states(c, seconds: float = 2.5) -> set[str]:
    seen = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            seen.add((c.root / "pins" / "led_fault").read_text()[:1])  # "" mid-write: the host pin truncates first
        except OSError:
            pass
        time.sleep(0.05)
    return seen - {""}


def settled_in_fault(c) -> None:
    """Past the watchdog's period: alive, booted once, one traceback, relay open."""
    time.sleep(3.0)
    out = c.dev.output()
    assert c.dev.alive() and out.count("boot: firmware") == 1, out[-2000:]
    assert out.count("Traceback") <= 1, out[-2000:]
    assert c.relay() == 0


def test_a_damaged_device_key_is_a_fault_the_backend_sees(charger, broker):
    c = charger(broker=broker.url, config={"watchdog_ms": 2000})
    c.seed(tariff=compile_doc(flat_tariff()))
    put_file(c.root, "device.key", b"\x00not a key")
    watch = Topics(broker.url)
    try:
        start(c)
        c.wait_for(r"FAULT DeviceKeyError: .*charging disabled until fixed", timeout=30)
        evt = watch.wait("evt", lambda d: d.get("evt") == "fault")
        assert evt["reason"].startswith("DeviceKeyError: device key file")
        settled_in_fault(c)
        assert led_states(c) == {"0", "1"}  # blinking, not steady
    finally:
        watch.close()
    st = retained_status(broker.url)
    assert st is not None and st["state"] == "fault" and st["online"] is True, st
    assert st["fault"].startswith("DeviceKeyError: device key file") and st["fw"]
    assert st["pending"] == 0 and "pubkey" not in st  # no journal opened, no key to show
    c.dev.stop()


def test_a_missing_ca_is_a_fault_never_reported_over_an_unverified_link(charger, broker):
    # mqtts with a CA path that is not on the flash: config validation cannot see the board's
    # files; the charger cannot be built, and the fault report cannot verify the broker either
    c = charger(broker=broker.url.replace("mqtt://", "mqtts://"), config={"uplink": {"ca": "no-such-ca.pem"}})
    c.seed(tariff=compile_doc(flat_tariff()))
    start(c)
    c.wait_for(r"FAULT OSError: mqtts: cannot read no-such-ca.pem", timeout=30)
    c.wait_for(r"fault: not reported to the broker: OSError: mqtts: cannot read no-such-ca.pem")
    settled_in_fault(c)
    assert retained_status(broker.url) is None  # nothing went out, not even without TLS
    c.dev.stop()


def test_a_tariff_that_fails_to_load_refuses_sessions_and_says_so_in_status(charger, broker):
    """Not a board fault: the charger runs (the backend can push a tariff) and refuses sessions,
    and its retained status says why."""
    c = charger(broker=broker.url)
    c.seed(tariff=compile_doc(flat_tariff()), authlist=[authlist_doc([{"token": token(ALICE), "status": "accepted"}])])
    put_file(c.root, "tariff.json", '{"v": 1, "ver": 3, "tariffs": ')  # torn by a flash fault
    watch = Topics(broker.url)
    try:
        c.boot()
        c.tap(ALICE, r"not starting: tariff-missing")
        watch.wait("status", lambda d: d.get("refusal") == "tariff-missing" and d.get("state") != "fault")
    finally:
        watch.close()
    st = retained_status(broker.url)
    assert st["refusal"] == "tariff-missing" and st["state"] == "idle", st
    assert c.relay() == 0
    c.stop()


def test_a_config_error_is_reported_when_its_uplink_part_is_valid_then_cleared_by_the_fix(charger, broker):
    c = charger(broker=broker.url)
    c.seed(tariff=compile_doc(flat_tariff()))
    good = c.config
    c.config = {**good, "tz": "Europe/Berlin"}
    watch = Topics(broker.url)
    try:
        start(c)
        c.wait_for(r"CONFIG ERROR tz: got 'Europe/Berlin', want a POSIX TZ rule such as CET-1CEST,M3.5.0,M10.5.0/3")
        st = watch.wait("status", lambda d: d.get("state") == "fault")
        assert st["fault"].startswith("config: tz: got 'Europe/Berlin'"), st
        assert retained_status(broker.url)["state"] == "fault"
        (c.root / "config.json").write_text(json.dumps(good))  # the technician fixes it
        at = c.mark()
        c.wait_for(r"config is valid now; restarting", timeout=15, start=at)
        c.wait_for(r"charger: ready", timeout=30, start=at)
        watch.wait("status", lambda d: d.get("state") == "idle")
        time.sleep(2.0)  # the fault report is gone: no fault status comes after the charger's own
        kinds = [doc.get("state") for doc in watch.docs("status")]
        assert kinds[-1] == "idle" and "fault" not in kinds[kinds.index("idle"):], kinds
    finally:
        watch.close()
    assert retained_status(broker.url)["state"] == "idle"
    out = c.dev.output()
    assert out.count("boot: firmware") == 1 and "Traceback" not in out, out[-2000:]
    c.stop()


def test_a_config_error_in_the_uplink_part_stays_on_the_console(charger, broker):
    c = charger(broker=broker.url)
    c.config = {**c.config, "uplink": {**c.config["uplink"], "prefix": "a/b"}}
    start(c)
    c.wait_for(r"CONFIG ERROR uplink.prefix: got 'a/b'")
    settled_in_fault(c)
    assert led_states(c) == {"0", "1"}
    assert retained_status(broker.url) is None
    c.dev.stop()
