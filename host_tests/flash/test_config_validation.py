"""Host-side config checks: every bad config is rejected with a message that names the field."""
from __future__ import annotations

import json

import pytest

from tools import flash
from tools.flashkit import checks

P256_HEX = "3059301306072a8648ce3d020106082a8648ce3d030107034200" + "04" + "11" * 64

# (config override, board, field the message must name)
BAD = [
    ({"device_id": "has space"}, None, "device_id"),
    ({"device_id": "x" * 33}, None, "device_id"),
    ({"site_secret": "abcd"}, None, "site_secret"),
    ({"currency": "eur"}, None, "currency"),
    ({"meter": {"url": "tcp://host"}}, None, "meter.url"),
    ({"meter": {"url": "tcp://host:99999"}}, None, "meter.url"),
    ({"meter": {"unit": 0}}, None, "meter.unit"),
    ({"meter": {"baud": 1234}}, None, "meter.baud"),
    ({"meter": {"parity": "X"}}, None, "meter.parity"),
    ({"meter": {"poll_ms": True}}, None, "meter.poll_ms"),
    ({"meter": "tcp://a:1"}, None, "meter"),
    ({"meter": {"speed": 1}}, None, "meter.speed"),
    ({"nfc": {"reader": "rc522x"}}, None, "nfc.reader"),
    ({"uplink": {"broker": "http://x:1"}}, None, "uplink.broker"),
    ({"uplink": {"prefix": "a/b"}}, None, "uplink.prefix"),
    ({"backend_key": "zz"}, None, "backend_key"),
    ({"backend_key": "3059" + "00" * 89}, None, "backend_key"),  # hex, right length, not a P-256 SPKI
    ({"auth": {"unknown": "maybe"}}, None, "auth.unknown"),
    ({"auth": {"master_tokens": ["abc"]}}, None, "auth.master_tokens"),
    ({"journal": {"max_bytes": 100}}, None, "journal.max_bytes"),
    ({"watchdog_ms": 10}, None, "watchdog_ms"),
    ({"colour": "red"}, None, "colour"),
    ({"pins": {"relay": 6}}, "esp32-devkitc", "pins.relay"),  # the module's flash
    ({"pins": {"relay": 1}}, "esp32-devkitc", "pins.relay"),  # the USB console
    ({"pins": {"led_ok": 34}}, "esp32-devkitc", "pins.led_ok"),  # input-only
    ({"pins": {"buzzer": 12}}, "esp32-devkitc", "pins.buzzer"),  # strapping: flash voltage
    ({"pins": {"relay": 24}}, "esp32-devkitc", "pins.relay"),  # no GPIO24 on the ESP32
    ({"pins": {"led_fault": 26}}, "esp32-devkitc", "pins.led_fault"),  # collides with the relay
    ({"pins": {"relay": "GPIO"}}, "esp32-devkitc", "pins.relay"),
    ({"pins": {"horn": 5}}, "esp32-devkitc", "pins.horn"),
    ({"pins": {"relay": 35}}, "esp32-s3-devkitc-1", "pins.relay"),  # octal PSRAM
    ({"pins": {"led_ok": 19}}, "esp32-s3-devkitc-1", "pins.led_ok"),  # native USB
    ({"pins": {"buzzer": 46}}, "esp32-s3-devkitc-1", "pins.buzzer"),
    ({"pins": {"relay": 23}}, "olimex-esp32-poe", "pins.relay"),  # Ethernet MDC
    ({"pins": {"relay": None}}, "olimex-esp32-poe", "pins"),  # the schema wants a pin for every role given
    ({"meter": {"url": "uart0"}}, "esp32-devkitc", "meter.url"),  # the console UART
    ({"nfc": {"url": "uart2"}}, "olimex-esp32-poe", "nfc.url"),  # no UART2 bus: its NFC is on I2C
    ({"nfc": {"bus": "usb"}}, None, "nfc.bus"),
    ({"nfc": {"reader": "mfrc522", "bus": "i2c"}}, None, "nfc.bus"),  # the MFRC522 driver speaks SPI
    ({"nfc": {"url": "nfc", "reader": "mfrc522"}}, "esp32-devkitc", "nfc.reader"),  # nfc is its UART wiring
    ({"nfc": {"url": "nfc", "reader": "mfrc522"}}, "olimex-esp32-poe", "nfc.reader"),  # no SPI wiring at all
    ({"nfc": {"url": "nfc_spi"}}, "olimex-esp32-poe", "nfc.url"),
    ({"nfc": {"url": "nfc", "bus": "spi"}}, "esp32-s3-devkitc-1", "nfc.bus"),
    ({"nfc": {"url": "tcp://10.0.0.9:4001", "reader": "mfrc522"}}, "esp32-devkitc", "nfc.url"),  # no SPI over TCP
    ({"nfc": {"url": "nfc_spi", "reader": "mfrc522"}, "pins": {"led_fault": 13}}, "esp32-devkitc",
     "pins.led_fault"),  # GPIO13 is the SPI reader's MOSI
    # the firmware's own parsers, run on the laptop: what the board would only find at boot
    ({"tz": "Europe/Berlin"}, None, "tz"),
    ({"tz": "CET-1CEST,M3.5.0"}, None, "tz"),
    ({"uplink": {"broker": "mqtts://broker.example:8883"}}, None, "uplink.ca"),
    ({"uplink": {"broker": "mqtt://broker.example"}}, None, "uplink.broker"),
    ({"uplink": {"broker": "mqtts://b:8883", "ca": "ca.pem", "cert": "c.pem"}}, None, "uplink.key"),
    ({"meter": {"model": "sdm999"}}, None, "meter.model"),
    ({"meter": {"model": "generic"}}, None, "meter.generic"),
    ({"meter": {"generic": {"energy": [4, 72, "f32", "furlongs"], "power": [4, 12, "f32", "W"]}}}, None, "meter.generic"),
    ({"meter": {"generic": {"energy": [4, 72, "f32", "kWh"], "power": [4, 12, "f32", "W"], "x": 1}}}, None,
     "meter.generic.x"),
    ({"pins": {"horn": 5}}, None, "pins.horn"),  # without a board too
    ({"fallback_tariff": {"v": 1, "ver": 1}}, None, "fallback_tariff"),
    ({1: 2}, None, "config"),  # from a program, not a file (CPython's json has no such keys)
    ({"meter": {"generic": {2: [4, 72, "f32", "kWh"]}}}, None, "meter.generic"),
]


@pytest.mark.parametrize("override,board,field", BAD, ids=[f"{b or 'any'}:{f}" for _o, b, f in BAD])
def test_bad_config_is_rejected_naming_the_field(override, board, field):
    with pytest.raises(checks.ConfigProblem) as info:
        checks.validate(override, board)
    assert any(p.startswith(field + ":") or p.startswith(field + " ") for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("board", ["host", "esp32-devkitc", "esp32-s3-devkitc-1", "olimex-esp32-poe"])
def test_board_defaults_are_valid(board):
    cfg = checks.validate({"meter": {"url": "tcp://10.0.0.5:502"}, "backend_key": P256_HEX}, board)
    assert cfg["meter"]["url"] == "tcp://10.0.0.5:502"


def test_uart_names_of_the_board_are_accepted():
    assert checks.validate({"meter": {"url": "rs485"}, "nfc": {"url": "uart1"}}, "esp32-devkitc")
    assert checks.validate({"meter": {"url": "uart2"}, "pins": {"relay": "GPIO27", "led_fault": 13}}, "esp32-devkitc")


def test_reader_wirings_of_the_board_are_accepted():
    cfg = checks.validate({"nfc": {"url": "nfc_spi", "reader": "mfrc522"}}, "esp32-devkitc")
    assert cfg["nfc"]["bus"] is None
    assert checks.validate({"nfc": {"url": "nfc_spi", "reader": "pn532", "bus": "spi"}}, "esp32-s3-devkitc-1")
    assert checks.validate({"nfc": {"url": "nfc", "bus": "i2c"}}, "olimex-esp32-poe")
    assert checks.validate({"nfc": {"url": "tcp://10.0.0.9:4001"}}, "olimex-esp32-poe")  # a PN532 behind a gateway
    # the UART reader's pins are free when the reader is on SPI
    assert checks.validate({"nfc": {"url": "nfc_spi", "reader": "mfrc522"}, "pins": {"led_fault": 32}}, "esp32-devkitc")
    assert checks.validate({"nfc": {"url": "tcp://127.0.0.1:5001", "bus": "i2c"}}, "host")


def test_public_key_forms(tmp_path):
    der = bytes.fromhex(P256_HEX)
    import base64

    pem = "-----BEGIN PUBLIC KEY-----\n" + base64.b64encode(der).decode() + "\n-----END PUBLIC KEY-----\n"
    assert checks.parse_public_key(pem) == checks.parse_public_key(der) == checks.parse_public_key(P256_HEX) == P256_HEX
    with pytest.raises(ValueError, match="private"):
        checks.parse_public_key("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")


def test_cli_validate(tmp_path, capsys):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"meter": {"url": "rs485"}}))
    bad.write_text("{not json")
    assert flash.main(["config", "validate", str(good), "--board", "esp32-devkitc"]) == 0
    assert flash.main(["config", "validate", str(bad)]) == 2
    assert "not valid JSON (line 1" in capsys.readouterr().out


def test_tz_message_says_what_rule_is_needed():
    with pytest.raises(checks.ConfigProblem) as info:
        checks.validate({"tz": "Europe/Berlin"})
    (msg,) = info.value.problems
    assert "CET-1CEST,M3.5.0,M10.5.0/3" in msg and "zone name" in msg, msg


def test_a_valid_fallback_tariff_passes_on_the_laptop():
    """The tariff parser runs under CPython too (billing/tariff.py's const shim): before it did
    not, and every fallback_tariff was rejected by flash.py though the board accepts it."""
    from evc.tariff import compile_doc
    from sim.charger import flat_tariff

    doc = compile_doc(flat_tariff())
    assert checks.validate({"fallback_tariff": doc}, "esp32-devkitc")["fallback_tariff"] == doc


def test_cli_rejects_a_key_that_is_not_a_string(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"meter": {1: 2}}')  # MicroPython's json would take it; the laptop refuses it first
    assert flash.main(["config", "validate", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().out
