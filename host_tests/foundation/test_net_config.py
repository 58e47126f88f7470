"""The config's net section (firmware/app/config.py) under MicroPython: nested wifi merge, bad values named."""
import pytest

BAD = [
    ({"net": {"iface": "eth"}}, "net.iface"),
    ({"net": {"wifi": {"ssid": ""}}}, "net.wifi.ssid"),
    ({"net": {"wifi": {"ssid": "x" * 33}}}, "net.wifi.ssid"),
    ({"net": {"wifi": {"password": "short"}}}, "net.wifi.password"),
    ({"net": {"wifi": {"password": "g" * 64}}}, "net.wifi.password"),  # 64 characters: hex only
    ({"net": {"wifi": {"bssid": "x"}}}, "net.wifi.bssid"),
    ({"net": {"wifi": "open"}}, "net.wifi"),
    ({"net": {"timeout_ms": 10}}, "net.timeout_ms"),
    ({"net": {"backoff_max_ms": 0}}, "net.backoff_max_ms"),
]


def test_wifi_merges_into_the_defaults(mpy):
    cfg = mpy.call("app.config.validate", {"net": {"wifi": {"ssid": "workshop", "password": "a" * 64}}})
    assert cfg["net"]["wifi"] == {"ssid": "workshop", "password": "a" * 64}
    assert cfg["net"]["iface"] == "auto" and cfg["net"]["timeout_ms"] == 20000
    assert mpy.call("app.config.validate", {})["net"]["wifi"] == {"ssid": None, "password": None}


@pytest.mark.parametrize("override,field", BAD, ids=[f for _, f in BAD])
def test_bad_net_config_names_the_field(mpy, override, field):
    msg = mpy.run(f"""
from app import config
try:
    config.validate({override!r})
    emit(None)
except config.ConfigError as exc:
    emit(str(exc))
""").value
    assert msg is not None and msg.startswith(field + ":"), msg
