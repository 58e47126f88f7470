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
