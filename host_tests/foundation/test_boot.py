"""firmware/main.py boots on the host board: good config, broken config (no crash loop), heap limit."""
import json
import time

from sim.device import ESP32_HEAP, DeviceProcess


def test_boots_and_reports_status(tmp_path):
    with DeviceProcess(tmp_path / "d", {"device_id": "t-1"}, heap=ESP32_HEAP) as dev:
        dev.wait_for(r"charger: ready: t-1")
        dev.wait_for(r"status: dev=t-1 state=idle seq=0")
    assert (tmp_path / "d" / "flash.img").stat().st_size == 2048 * 1024


def test_device_id_defaults_from_unique_id(tmp_path):
    with DeviceProcess(tmp_path / "d", {}) as dev:
        dev.wait_for(r"charger: ready: evc-[0-9a-f]{12}$")


def test_bad_config_is_reported_not_crash_looped_then_fixed(tmp_path):
    root = tmp_path / "d"
    # EVC_CLOCK_SPEED shortens the 5 s re-read interval for the test.
    dev = DeviceProcess(root, {"meter": {"baud": 1234}}, env={"EVC_CLOCK_SPEED": "10"})
    with dev:
        dev.wait_for(r"CONFIG ERROR meter.baud: got 1234, want one of")
        time.sleep(1.0)
        assert dev.alive(), "a bad config must not crash the firmware"
        assert "Traceback" not in dev.output()
        assert dev.pin("relay") == 0
        (root / "config.json").write_text(json.dumps({"device_id": "fixed-1"}))
        dev.wait_for(r"config is valid now", timeout=10)
        dev.wait_for(r"charger: ready: fixed-1")


def test_invalid_json_is_a_clear_error(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "config.json").write_text('{"meter": {"baud": 9600,,}')
    with DeviceProcess(root) as dev:
        dev.wait_for(r"CONFIG ERROR .*config.json: not valid JSON")
        assert dev.alive()


def test_flash_survives_restart(tmp_path):
    root = tmp_path / "d"
    for _ in range(2):
        with DeviceProcess(root, {"device_id": "t-2"}) as dev:
            dev.wait_for(r"status: dev=t-2")  # after the boot's error (no meter) went to the flash log
    # the log written to LittleFS on the first boot is still there on the second
    from sim import mpy

    lines = mpy.run(
        """
import board
root = board.mount_flash()
emit(open(root + "/log.txt").read().count("E meter: no meter configured"))
""",
        env={"EVC_ROOT": str(root)},
    ).value
    assert lines == 2
