"""Secrets on the technician's side: `flash.py config get` masks site_secret and the passwords
(--show-secrets shows them), config errors never echo a secret (the firmware's own messages, under
MicroPython too), provision writes an mqtts:// uplink with the CA and the broker credentials of
`python -m backend broker creds` without showing the password, and says loudly when it is plain mqtt://."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from backend.__main__ import main as backend_main
from host_tests.uplink.test_tls import _ca
from tools import flash
from tools.flashkit import checks
from tools.flashkit.device import Device

from .conftest import GOOD_CONFIG

WIFI = "correct horse battery"
BROKER_PW = "s3cr3t-broker-pw"


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> Path:
    _key, cert = _ca("evc test CA")
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# ---------------------------------------------------------------------------- no board needed
def test_mask_secrets_masks_what_is_set_and_keeps_the_rest():
    cfg = {"site_secret": "00" * 16, "uplink": {"password": "pw", "user": "cp-1", "broker": "mqtts://b:8883"},
           "net": {"wifi": {"ssid": "site", "password": None}}, "meter": {"url": "tcp://x:1"}}
    masked = checks.mask_secrets(cfg)
    assert masked == {"site_secret": checks.MASK, "uplink": {"password": checks.MASK, "user": "cp-1",
                                                             "broker": "mqtts://b:8883"},
                      "net": {"wifi": {"ssid": "site", "password": None}}, "meter": {"url": "tcp://x:1"}}
    assert cfg["site_secret"] == "00" * 16  # a copy
    assert checks.mask_secrets("pw", "uplink.password") == checks.MASK
    assert checks.mask_secrets({"password": "pw"}, "uplink") == {"password": checks.MASK}
    assert checks.mask_secrets(7, "meter.unit") == 7


def test_broker_url_is_mqtts_with_a_ca_and_plain_only_without():
    assert checks.broker_url("broker.example", True) == "mqtts://broker.example:8883"
    assert checks.broker_url("broker.example:9883", True) == "mqtts://broker.example:9883"
    assert checks.broker_url("broker.example", False) == "mqtt://broker.example:1883"
    assert checks.broker_url("mqtts://b:8883", True) == "mqtts://b:8883"
    with pytest.raises(checks.ConfigProblem, match="plain MQTT"):
        checks.broker_url("mqtt://b:1883", True)


def test_transport_warnings_name_plain_mqtt_and_missing_credentials():
    full = checks.validate({"uplink": {"broker": "mqtt://b:1883", "user": "cp-1", "password": "pw"}})
    (plain,) = checks.transport_warnings(full)
    assert "PLAIN MQTT" in plain and "broker password" in plain and "pw" not in plain.split("password")[-1]
    full = checks.validate({"uplink": {"broker": "mqtts://b:8883", "ca": "/data/ca.pem"}})
    (anon,) = checks.transport_warnings(full)
    assert "uplink.user is not set" in anon
    full = checks.validate({"uplink": {"broker": "mqtts://b:8883", "ca": "/data/ca.pem", "user": "cp-1", "password": "x"}})
    assert checks.transport_warnings(full) == []
    assert checks.transport_warnings(checks.validate({})) == []  # no broker, nothing to say


BAD_SECRETS = [({"site_secret": "zz-my-site-secret-zz"}, "site_secret", "zz-my-site-secret-zz"),
               ({"net": {"wifi": {"ssid": "x", "password": "hunter2"}}}, "net.wifi.password", "hunter2"),
               ({"uplink": {"password": 12345678}}, "uplink.password", "12345678")]


@pytest.mark.parametrize("override,field,secret", BAD_SECRETS, ids=[f for _, f, _ in BAD_SECRETS])
def test_config_errors_never_echo_a_secret(mpy, override, field, secret, capsys):
    with pytest.raises(checks.ConfigProblem) as exc:  # CPython: the firmware's module, as flash.py runs it
        checks.validate(override)
    assert str(exc.value).startswith(field) and secret not in str(exc.value) and "not shown" in str(exc.value)
    got = mpy.run(f"""
from app import config
try:
    config.validate({override!r})
    emit(None)
except config.ConfigError as exc:
    emit(str(exc))
""").value  # and MicroPython: what the board prints, logs and reports in its fault status
    assert got.startswith(field) and secret not in got, got


def test_config_validate_is_loud_about_plain_mqtt(tmp_path, capsys):
    path = tmp_path / "site.json"
    path.write_text(json.dumps({**GOOD_CONFIG, "uplink": {"broker": "mqtt://10.0.0.2:1883"}}))
    assert flash.main(["config", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "PLAIN MQTT" in out


# ---------------------------------------------------------------------------- on the (emulated) board
def test_config_get_masks_secrets_unless_asked(deployed, capsys):
    assert flash.main(["config", "set", "--port", deployed.port, "net.wifi.ssid=site",
                       f"net.wifi.password={WIFI}", "uplink.user=cp-0001", f"uplink.password={BROKER_PW}"]) == 0
    out = capsys.readouterr().out
    assert WIFI not in out and BROKER_PW not in out
    assert flash.main(["config", "get", "--port", deployed.port]) == 0
    out = capsys.readouterr().out
    for secret in (WIFI, BROKER_PW, GOOD_CONFIG["site_secret"]):
        assert secret not in out
    assert out.count(checks.MASK) == 3 and "cp-0001" in out
    for key in ("site_secret", "uplink.password", "net.wifi.password", "uplink", "net"):
        assert flash.main(["config", "get", "--port", deployed.port, key]) == 0
        out = capsys.readouterr().out
        assert checks.MASK in out and not any(s in out for s in (WIFI, BROKER_PW, GOOD_CONFIG["site_secret"])), key
    assert flash.main(["config", "get", "--port", deployed.port, "--show-secrets"]) == 0
    out = capsys.readouterr().out
    assert WIFI in out and BROKER_PW in out and GOOD_CONFIG["site_secret"] in out
    assert flash.config_get(deployed.port, "uplink.password", show_secrets=True) == BROKER_PW
    # a rejected secret is named, never shown
    assert flash.main(["config", "set", "--port", deployed.port, "net.wifi.password=hunter2"]) == 2
    out = capsys.readouterr().out
    assert "net.wifi.password" in out and "hunter2" not in out


def test_provision_writes_an_mqtts_uplink_with_ca_and_credentials(deployed, backend_key, ca_pem, tmp_path, capsys):
    keys, creds = tmp_path / "backend-keys", tmp_path / "cp-0042.creds.json"
    assert backend_main(["broker", "creds", "--dev", "cp-0042", "--out", str(creds), "--keys", str(keys)]) == 0
    assert creds.stat().st_mode & 0o777 == 0o600
    password = json.loads(creds.read_text())["password"]
    capsys.readouterr()
    assert flash.main(["provision", "--port", deployed.port, "--device-id", "cp-0042", "--backend-key", str(backend_key),
                       "--out", str(tmp_path / "keys"), "--broker", "broker.example", "--ca", str(ca_pem),
                       "--broker-creds", str(creds)]) == 0
    out = capsys.readouterr().out
    assert password not in out and "WARNING" not in out and "mqtts://broker.example:8883" in out
    up = flash.config_get(deployed.port, "uplink", show_secrets=True)
    with Device(deployed.port) as dev:
        root = dev.call("_evc_data_root()")
        assert dev.read_file(root + "/" + flash.CA_FILE) == ca_pem.read_bytes()
    assert up["broker"] == "mqtts://broker.example:8883" and up["ca"] == root + "/" + flash.CA_FILE
    assert up["user"] == "cp-0042" and up["password"] == password
    # credentials of another device are refused before the board is touched
    other = tmp_path / "cp-0043.creds.json"
    assert backend_main(["broker", "creds", "--dev", "cp-0043", "--out", str(other), "--keys", str(keys)]) == 0
    capsys.readouterr()
    assert flash.main(["provision", "--port", deployed.port, "--device-id", "cp-0042", "--backend-key", str(backend_key),
                       "--out", str(tmp_path / "keys"), "--broker-creds", str(other)]) == 2
    assert "are for 'cp-0043'" in capsys.readouterr().out
    # a CA with a plain URL is a contradiction, not a silent downgrade
    assert flash.main(["provision", "--port", deployed.port, "--device-id", "cp-0042", "--backend-key", str(backend_key),
                       "--out", str(tmp_path / "keys"), "--broker", "mqtt://broker.example:1883", "--ca", str(ca_pem)]) == 2
    assert flash.config_get(deployed.port, "uplink.broker") == "mqtts://broker.example:8883"  # unchanged


def test_provision_says_loudly_when_it_writes_plain_mqtt(deployed, backend_key, tmp_path, capsys):
    assert flash.main(["provision", "--port", deployed.port, "--device-id", "cp-0042", "--backend-key", str(backend_key),
                       "--out", str(tmp_path / "keys"), "--broker", "10.0.0.2"]) == 0
    out = capsys.readouterr().out
    assert "WARNING" in out and "PLAIN MQTT" in out and "uplink.user is not set" in out
    assert flash.config_get(deployed.port, "uplink.broker") == "mqtt://10.0.0.2:1883"
