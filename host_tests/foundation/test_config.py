"""Config validation under MicroPython: defaults are valid; each bad field is named in the error."""
import pytest

BAD = [
    ({"meter": {"baud": 1234}}, "meter.baud"),
    ({"meter": {"parity": "X"}}, "meter.parity"),
    ({"meter": {"unit": 0}}, "meter.unit"),
    ({"meter": {"url": "tcp://nohost"}}, "meter.url"),
    ({"meter": {"unit": True}}, "meter.unit"),
    ({"meter": {"poll_ms": 1.5}}, "meter.poll_ms"),
    ({"meter": 5}, "meter"),
    ({"nfc": {"reader": "acr122"}}, "nfc.reader"),
    ({"uplink": {"broker": "http://x:1"}}, "uplink.broker"),
    ({"uplink": {"prefix": "a/b"}}, "uplink.prefix"),
    ({"site_secret": "abc"}, "site_secret"),
    ({"device_id": "has space"}, "device_id"),
    ({"auth": {"unknown": "maybe"}}, "auth.unknown"),
    ({"auth": {"master_tokens": ["zz"]}}, "auth.master_tokens"),
    ({"journal": {"max_bytes": 10}}, "journal.max_bytes"),
    ({"no_such_key": 1}, "no_such_key"),
    ({"session": {"bogus": 1}}, "session.bogus"),
    ([], "config"),
    # what would fail later, checked now by the firmware's own parsers
    ({"tz": "Europe/Berlin"}, "tz"),
    ({"tz": "CET-1CEST"}, "tz"),  # DST without its rule: the device has no default one
    ({"tz": "UTC"}, "tz"),
    ({"uplink": {"broker": "mqtts://broker.example:8883"}}, "uplink.ca"),
    ({"uplink": {"broker": "mqtt://broker.example"}}, "uplink.broker"),
    ({"uplink": {"broker": "mqtt://broker.example:0"}}, "uplink.broker"),
    ({"uplink": {"broker": "mqtts://b:8883", "ca": "ca.pem", "cert": "c.pem"}}, "uplink.key"),
    ({"uplink": {"key": "c.key"}}, "uplink.cert"),
    ({"meter": {"model": "sdm999"}}, "meter.model"),
    ({"meter": {"model": "generic"}}, "meter.generic"),
    ({"meter": {"generic": {"energy": [4, 72, "f32", "kWh"]}}}, "meter.generic"),  # no power register
    ({"meter": {"generic": {"energy": [5, 72, "f32", "kWh"], "power": [4, 12, "f32", "W"]}}}, "meter.generic"),
    ({"meter": {"generic": {"energy": [4, 72, "f32", "kWh"], "power": [4, 12, "f32", "W"], "colour": 1}}},
     "meter.generic.colour"),
    ({"meter": {"de_pin": True}}, "meter.de_pin"),
    ({"pins": {"horn": 5}}, "pins.horn"),
    ({"pins": {"relay": False}}, "pins"),
    ({"fallback_tariff": {"v": 1, "ver": 1, "tz": "UTC0"}}, "fallback_tariff"),
    ({"fallback_tariff": {"v": 1, "ver": 1, "tz": "Europe/Berlin", "default": "a", "contracts": {}, "tariffs": {}}},
     "fallback_tariff"),
]

# MicroPython's json takes keys that are not strings ({1: 2}); CPython's json does not.
# (config.json text, field named in the error)
BAD_FILES = [
    ('{1: 2}', "config"),
    ('{"meter": {"unit": 1, 5: 2}}', "meter"),
    ('{"pins": {7: 26}}', "pins"),
    ('{"auth": {"master_tokens": [{"a": {null: 1}}]}}', "auth.master_tokens[0].a"),
    ('{"fallback_tariff": {"tariffs": {true: 1}}}', "fallback_tariff.tariffs"),
    ('{"meter": ' * 20 + '1' + '}' * 20, "meter.meter"),  # nested past any real config
    ('{"meter": {"baud": 9600,}', "/"),  # not JSON at all: the path of the file
]


def test_defaults_are_valid(mpy):
    cfg = mpy.run("from app import config\nemit(config.validate({}))").value
    assert cfg["meter"]["baud"] == 9600 and cfg["uplink"]["prefix"] == "evc"


def test_override_merges(mpy):
    cfg = mpy.call("app.config.validate", {"meter": {"url": "tcp://127.0.0.1:5020", "baud": 19200}})
    assert cfg["meter"]["url"] == "tcp://127.0.0.1:5020" and cfg["meter"]["baud"] == 19200
    assert cfg["meter"]["parity"] == "N"  # untouched defaults stay


@pytest.mark.parametrize("override,field", BAD, ids=[f for _, f in BAD])
def test_bad_config_names_the_field(mpy, override, field):
    msg = mpy.run(
        f"""
from app import config
try:
    config.validate({override!r})
    emit(None)
except config.ConfigError as exc:
    emit(str(exc))
"""
    ).value
    assert msg is not None and msg.startswith(field + ":"), msg


def test_tz_needs_a_posix_rule_and_says_which(mpy):
    msg = mpy.run("""
from app import config
try:
    config.validate({"tz": "Europe/Berlin"})
except config.ConfigError as exc:
    emit(str(exc))
""").value
    assert "CET-1CEST,M3.5.0,M10.5.0/3" in msg and "zone name" in msg, msg
    cfg = mpy.call("app.config.validate", {"tz": "CET-1CEST,M3.5.0,M10.5.0/3"})
    assert cfg["tz"] == "CET-1CEST,M3.5.0,M10.5.0/3"


@pytest.mark.parametrize("text,field", BAD_FILES, ids=[f for _, f in BAD_FILES])
def test_config_file_with_bad_keys_is_a_config_error_not_a_crash(mpy, tmp_path, text, field):
    path = tmp_path / "config.json"
    path.write_text(text)
    got = mpy.run(f"""
from app import config
try:
    config.load({str(path)!r})
    emit(["loaded", None])
except config.ConfigError as exc:
    emit(["ConfigError", str(exc)])
except Exception as exc:
    emit([type(exc).__name__, str(exc)])
""").value
    assert got[0] == "ConfigError" and got[1].startswith(field), got


def test_valid_nested_values_pass(mpy):
    from evc.tariff import compile_doc
    from sim.charger import flat_tariff

    override = {"fallback_tariff": compile_doc(flat_tariff()), "pins": {"relay": 26, "led_fault": "GPIO13"},
                "meter": {"model": "generic", "generic": {"energy": [4, 72, "f32", "kWh"], "power": [4, 12, "f32", "W"],
                                                          "serial": [3, 64512, "u32"]}},
                "uplink": {"broker": "mqtts://broker.example:8883", "ca": "ca.pem", "cert": "c.pem", "key": "c.key"}}
    cfg = mpy.call("app.config.validate", override)
    assert cfg["meter"]["generic"]["serial"] == [3, 64512, "u32"] and cfg["fallback_tariff"]["ver"] >= 1


def test_same_validator_runs_under_cpython():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "firmware"))
    from app import config  # noqa: E402  (pure Python: tools/flash.py validates on the host with it)

    with pytest.raises(config.ConfigError, match="^meter.baud:"):
        config.validate({"meter": {"baud": 1234}})


def test_every_field_is_documented():
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(repo / "firmware"))
    from app import config  # noqa: E402

    doc = (repo / "docs" / "config.md").read_text()
    missing = [path for path in config.SCHEMA if f"`{path}`" not in doc]
    assert not missing, f"docs/config.md lacks {missing}"
