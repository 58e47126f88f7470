# Device configuration: defaults live here, config.json on the device overrides them.
# Every field is checked against SCHEMA before anything uses it; a bad config gets one clear
# message naming the field and is never half-applied. docs/config.md describes each field.
import json

PARITIES = ("N", "E", "O")
PIN_ROLES = ("relay", "plug", "led_ok", "led_fault", "buzzer", "maintenance", "rs485_de")  # boards/esp32/board_defs.py
_MAX_DEPTH = 16  # JSON nesting; a tariff document needs 7
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)

DEFAULTS = {
    "device_id": None,  # None: derived from the MAC ("evc-" + hex)
    "site_secret": None,  # hex, >= 16 bytes: card tokens are HMAC-SHA256(secret, UID)
    "tz": "UTC0",  # POSIX TZ rule for time-of-day tariffs
    "currency": "EUR",
    "fallback_tariff": None,  # a tariff document (as the device stores one) used while none is stored
    "pay_url": None,  # ad-hoc payment page (docs/payments.md): the idle screen links URL/DEVICE/CODE; None: off
    "meter": {
        "url": None,  # tcp://host:port, a serial path (host) or uart1 (ESP32)
        "model": "sdm630",
        "unit": 1,
        "baud": 9600,
        "parity": "N",
        "stop": 1,
        "poll_ms": 1000,
        "timeout_ms": 200,
        "retries": 2,
        "max_power_w": 25000,
        "max_age_ms": 5000,
        "margin_wh": 10,  # register resolution allowed on top of max_power_w x elapsed time
        "serial_every": 10,  # read the serial number every N polls (meter swap detection)
        "generic": None,  # register map for model "generic": {"energy": [fn, addr, type, unit], ...}
        "de_pin": None,  # RS-485 DE/RE pin; None: transceiver with automatic direction
    },
    "nfc": {
        "url": None,  # tcp://host:port (HSU), a serial path (host), a board's reader wiring: nfc, nfc_spi, uart1
        "bus": None,  # None: the wiring's own; uart (HSU), i2c or spi (on the host: the tcp:// bridges)
        "reader": "pn532",
        "poll_ms": 80,  # a card waits at most this for its poll (bench/nfc.py: latency vs bus and CPU)
    },
    "uplink": {
        "broker": None,  # mqtt://host:port or mqtts://host:port
        "prefix": "evc",
        "user": None,
        "password": None,
        "ca": None,  # path of the CA certificate (PEM/DER) for mqtts
        "cert": None,  # client certificate file for mqtts, with "key"
        "key": None,
        "keepalive_s": 30,
        "timeout_ms": 5000,  # DNS, connect, CONNACK/SUBACK, a stalled send
        "window": 32,  # records in flight before the backend's ack
        "resend_s": 30,  # unacknowledged records are sent again after this long
        "backoff_min_ms": 1000,
        "backoff_max_ms": 60000,
        "status_s": 60,
        "max_doc_bytes": 8192,  # larger downlink documents are dropped unread and reported
    },
    "backend_key": None,  # hex SubjectPublicKeyInfo DER of the backend's P-256 key
    "key_path": "device.key",  # the private key, relative to the flash data root (where flash.py provision makes it); never published
    "session": {
        "min_energy_wh": 10,  # below this a session is void
        "unplug_power_w": 50,
        "unplug_after_s": 0,  # 0: no unplug detection by power
        "meter_fault_s": 30,
        "max_energy_wh": 0,  # 0: no limit
        "max_duration_s": 0,
        "max_cost": 0,
    },
    "auth": {
        "unknown": "reject",  # reject | online | offline
        "online_timeout_ms": 3000,
        "offline_max_wh": 10000,
        "offline_max_cost": 1000,
        "prepaid_min": 100,
        "master_tokens": [],
        "cache_size": 256,
    },
    "journal": {
        "max_bytes": 512 * 1024,
        "checkpoint_s": 60,
    },
    "time": {
        "ntp": None,  # SNTP servers, "host" or "host:port"; None: the board's default (pool.ntp.org); []: none
        "timeout_ms": 2000,  # one server: DNS and the answer
        "resync_s": 3600,  # between syncs
        "retry_s": 60,  # after a round in which no server answered
        "max_age_s": 86400,  # quality S this long after the last sync (SNTP or the backend), then I
    },
    "net": {  # the network link (hal/net.py); the host board has a simulated one
        "iface": "auto",  # auto: the board's Ethernet when it has one, else WLAN; or wlan, lan
        "wifi": {"ssid": None, "password": None},  # password null: an open network
        "timeout_ms": 20000,  # one connect attempt: association and DHCP
        "backoff_min_ms": 2000,
        "backoff_max_ms": 60000,
    },
    "display": {  # docs/display.md
        "type": "none",  # none | ssd1306 | sh1106 (128x64 OLED) | hd44780 (20x4 LCD on a PCF8574 backpack)
        "addr": None,  # I2C address; None: the chip's usual (0x3C OLED, 0x27 backpack)
        "receipt_url": "https://receipts.example/r",  # the final screen's QR code: URL/dev/seq
        "final_s": 120,  # how long the total and the receipt code stay up
    },
    "pins": {},  # role -> pin name/number on the board: relay, plug, led_ok, led_fault, buzzer
    "watchdog_ms": 8000,
}


class ConfigError(ValueError):
    pass


def _is_hex(s, min_bytes=1):
    if not isinstance(s, str) or len(s) % 2 or len(s) < 2 * min_bytes:
        return False
    try:
        int(s, 16)
    except ValueError:
        return False
    return True


def _url(*schemes):
    def check(v):
        for scheme in schemes:
            if v.startswith(scheme):
                rest = v[len(scheme):]
                host, sep, port = rest.rpartition(":")
                return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
        return False

    return check


def _tariff_doc(v):
    # parsed by the firmware's own tariff code: what validates here also loads at boot
    from billing.tariff import TariffSet

    try:
        TariffSet.from_doc(v)
    except Exception as exc:  # whatever the parser raises is a bad document: say why
        raise ValueError(str(exc))
    return True


def _tz_rule(v):
    # parsed by the firmware's own POSIX-TZ parser (billing/tz.py): the device has no zone database
    from billing.tz import TzRule

    if "/" in v and "," not in v:
        raise ValueError("a zone name; the device has no zone database")
    TzRule(v)  # TzError (a ValueError) says where the rule goes wrong
    return True


def _broker(v):
    # the uplink's own parser (uplink/broker.py), so what validates here also connects
    from uplink.broker import parse_broker

    try:
        parse_broker(v)
    except ValueError:
        return False
    return True


def _meter(v):
    # the meter code's own table and register map parser (meter/models.py): a model name or a
    # generic map that validates here also reads the meter (else the charger would run without one)
    from meter import models

    if isinstance(v, str):
        if v.lower() not in models.names():
            raise ValueError("not one of %s" % ", ".join(models.names()))
    else:
        models.Model("generic", v)  # ModelError (a ValueError) names the quantity
    return True


def _stream_url(v):
    return _url("tcp://")(v) or (len(v) > 0 and not v.startswith("tcp:"))


def _int_range(lo, hi):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _one_of(*values):
    return lambda v: v in values


def _keys_in(v, known):
    # a key inside an object-valued field: validate() reports it like an unknown setting
    for k in v:
        if k not in known:
            raise KeyError(k, known)
    return True


def _pin(v):
    return isinstance(v, (str, int)) and not isinstance(v, bool)


_STR = (str,)
_OPT_STR = (str, type(None))

# path: (allowed types, check, what a good value looks like)
SCHEMA = {
    "device_id": (_OPT_STR, lambda v: v is None or 1 <= len(v) <= 32 and all(c.isalpha() or c.isdigit() or c in "-_" for c in v), "1-32 letters, digits, - or _"),
    "site_secret": (_OPT_STR, lambda v: v is None or _is_hex(v, 16), "hex string of at least 16 bytes"),
    "tz": (_STR, _tz_rule, "a POSIX TZ rule such as CET-1CEST,M3.5.0,M10.5.0/3"),
    "currency": (_STR, lambda v: len(v) == 3 and v.isupper(), "an ISO 4217 code such as EUR"),
    "pay_url": (_OPT_STR, lambda v: v is None or (v.startswith("https://") or v.startswith("http://")) and 8 < len(v) <= 96
                and " " not in v and not v.endswith("/"), "null, or an http(s) URL of at most 96 characters without a final /"),
    "meter.url": (_OPT_STR, lambda v: v is None or _stream_url(v), "tcp://host:port or a UART name/path"),
    "meter.model": (_STR, _meter, "a meter model name"),
    "meter.unit": (None, _int_range(1, 247), "a Modbus slave id 1..247"),
    "meter.baud": (None, _one_of(*BAUDS), "one of %s" % (BAUDS,)),
    "meter.parity": (_STR, _one_of(*PARITIES), "N, E or O"),
    "meter.stop": (None, _int_range(1, 2), "1 or 2"),
    "meter.poll_ms": (None, _int_range(100, 60000), "100..60000 ms"),
    "meter.timeout_ms": (None, _int_range(20, 5000), "20..5000 ms"),
    "meter.retries": (None, _int_range(0, 5), "0..5"),
    "meter.max_power_w": (None, _int_range(1, 1000000), "1..1000000 W"),
    "meter.max_age_ms": (None, _int_range(100, 600000), "100..600000 ms"),
    "meter.margin_wh": (None, _int_range(0, 100000), "0..100000 Wh"),
    "meter.serial_every": (None, _int_range(1, 100000), "1..100000 polls"),
    "meter.generic": ((dict, type(None)), lambda v: v is None or _keys_in(v, ("energy", "power", "serial")) and _meter(v), "null or a register map with energy, power, serial"),
    "meter.de_pin": ((str, int, type(None)), lambda v: v is None or _pin(v), "a pin name or number, or null"),
    "nfc.url": (_OPT_STR, lambda v: v is None or _stream_url(v), "tcp://host:port or a bus name/path"),
    "nfc.bus": (_OPT_STR, lambda v: v is None or v in ("uart", "i2c", "spi"), "null, uart, i2c or spi"),
    "nfc.reader": (_STR, _one_of("pn532", "mfrc522"), "pn532 or mfrc522"),
    "nfc.poll_ms": (None, _int_range(20, 5000), "20..5000 ms"),
    "uplink.broker": (_OPT_STR, lambda v: v is None or _broker(v), "mqtt://host:port or mqtts://host:port"),
    "uplink.prefix": (_STR, lambda v: 0 < len(v) < 32 and "/" not in v and "+" not in v and "#" not in v, "a topic word without / + #"),
    "uplink.user": (_OPT_STR, lambda v: True, "a string"),
    "uplink.password": (_OPT_STR, lambda v: True, "a string"),
    "uplink.ca": (_OPT_STR, lambda v: True, "a file path"),
    "uplink.cert": (_OPT_STR, lambda v: True, "a file path"),
    "uplink.key": (_OPT_STR, lambda v: True, "a file path"),
    "uplink.keepalive_s": (None, _int_range(5, 3600), "5..3600 s"),
    "uplink.timeout_ms": (None, _int_range(200, 60000), "200..60000 ms"),
    "uplink.window": (None, _int_range(1, 256), "1..256 records"),
    "uplink.resend_s": (None, _int_range(1, 3600), "1..3600 s"),
    "uplink.backoff_min_ms": (None, _int_range(100, 60000), "100..60000 ms"),
    "uplink.backoff_max_ms": (None, _int_range(1000, 3600000), "1000..3600000 ms"),
    "uplink.status_s": (None, _int_range(1, 3600), "1..3600 s"),
    "uplink.max_doc_bytes": (None, _int_range(1024, 65536), "1024..65536 bytes"),
    "backend_key": (_OPT_STR, lambda v: v is None or _is_hex(v, 64), "hex DER SubjectPublicKeyInfo of a P-256 key"),
    "key_path": (_STR, lambda v: 0 < len(v) < 64 and not v.startswith("/") and ".." not in v, "a path relative to the flash root"),
    "session.min_energy_wh": (None, _int_range(0, 100000), "0..100000 Wh"),
    "session.unplug_power_w": (None, _int_range(0, 100000), "0..100000 W"),
    "session.unplug_after_s": (None, _int_range(0, 86400), "0..86400 s"),
    "session.meter_fault_s": (None, _int_range(1, 3600), "1..3600 s"),
    "session.max_energy_wh": (None, _int_range(0, 10000000), "0 (none)..10000000 Wh"),
    "session.max_duration_s": (None, _int_range(0, 30 * 86400), "0 (none)..2592000 s"),
    "session.max_cost": (None, _int_range(0, 10000000), "0 (none)..10000000 minor units"),
    "auth.unknown": (_STR, _one_of("reject", "online", "offline"), "reject, online or offline"),
    "auth.online_timeout_ms": (None, _int_range(100, 30000), "100..30000 ms"),
    "auth.offline_max_wh": (None, _int_range(0, 1000000), "0..1000000 Wh"),
    "auth.offline_max_cost": (None, _int_range(0, 10000000), "0..10000000 minor units"),
    "auth.prepaid_min": (None, _int_range(0, 10000000), "0..10000000 minor units"),
    "auth.master_tokens": ((list,), lambda v: all(_is_hex(t, 16) and len(t) == 32 for t in v), "a list of 32-hex-digit card tokens"),
    "auth.cache_size": (None, _int_range(0, 10000), "0..10000 entries"),
    "journal.max_bytes": (None, _int_range(16 * 1024, 64 * 1024 * 1024), "16 KiB..64 MiB"),
    "journal.checkpoint_s": (None, _int_range(5, 3600), "5..3600 s"),
    "time.ntp": ((list, type(None)), lambda v: v is None or len(v) <= 8 and all(isinstance(s, str) and 0 < len(s) < 64 and (":" not in s or _url("ntp://")("ntp://" + s)) for s in v), "null (the board's default) or a list of up to 8 host or host:port"),
    "time.timeout_ms": (None, _int_range(100, 30000), "100..30000 ms"),
    "time.resync_s": (None, _int_range(60, 7 * 86400), "60..604800 s"),
    "time.retry_s": (None, _int_range(1, 3600), "1..3600 s"),
    "time.max_age_s": (None, _int_range(60, 30 * 86400), "60..2592000 s"),
    "net.iface": (_STR, _one_of("auto", "wlan", "lan"), "auto, wlan or lan"),
    "net.wifi.ssid": (_OPT_STR, lambda v: v is None or 0 < len(v.encode()) <= 32, "null or an SSID of 1-32 bytes"),
    "net.wifi.password": (_OPT_STR, lambda v: v is None or 8 <= len(v) <= 63 or len(v) == 64 and _is_hex(v, 32),
                          "null (open network), a WPA passphrase of 8-63 characters or 64 hex digits"),
    "net.timeout_ms": (None, _int_range(1000, 120000), "1000..120000 ms"),
    "net.backoff_min_ms": (None, _int_range(100, 60000), "100..60000 ms"),
    "net.backoff_max_ms": (None, _int_range(1000, 3600000), "1000..3600000 ms"),
    "display.type": (_STR, _one_of("none", "ssd1306", "sh1106", "hd44780"), "none, ssd1306, sh1106 or hd44780"),
    "display.addr": ((int, type(None)), lambda v: v is None or _int_range(0x08, 0x77)(v), "null or a 7-bit I2C address 8..119"),
    "display.receipt_url": (_STR, lambda v: (v.startswith("https://") or v.startswith("http://")) and 8 < len(v) <= 96
                            and " " not in v, "an http(s) URL of at most 96 characters (the QR code holds 180 bytes)"),
    "display.final_s": (None, _int_range(5, 3600), "5..3600 s"),
    "pins": ((dict,), lambda v: _keys_in(v, PIN_ROLES) and all(_pin(p) for p in v.values()), "role -> pin name or number"),
    "watchdog_ms": (None, _int_range(1000, 120000), "1000..120000 ms"),
    "fallback_tariff": ((dict, type(None)), lambda v: v is None or _tariff_doc(v),
                        "null, or a tariff document as the backend pushes it (compiled: v, ver, tz, tariffs)"),
}


def _merge(defaults, override, prefix=""):
    out = {}
    for key, value in defaults.items():
        out[key] = dict(value) if isinstance(value, dict) and key != "pins" else value
    for key, value in override.items():
        path = prefix + key
        if key not in defaults:
            raise ConfigError("%s: unknown setting" % path)
        base = defaults[key]
        if isinstance(base, dict) and key != "pins":
            if not isinstance(value, dict):
                raise ConfigError("%s: must be an object" % path)
            out[key] = _merge(base, value, path + ".")
        else:
            out[key] = value
    return out


def _get(cfg, path):
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def _string_keys(doc):
    # MicroPython's json takes {1: 2} (CPython's does not): every key at every depth must be a
    # string. Walked with a list, not recursion: a deeply nested file must not overflow the stack.
    todo = [("", doc, 0)]
    while todo:
        path, value, depth = todo.pop()
        if depth > _MAX_DEPTH:
            raise ConfigError("%s: nested more than %d deep" % (path, _MAX_DEPTH))
        if isinstance(value, dict):
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ConfigError("%s: key %r is not a string" % (path or "config", k))
                todo.append((path + "." + k if path else k, v, depth + 1))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                todo.append(("%s[%d]" % (path or "config", i), v, depth + 1))


def _together(cfg):
    # fields that are only right together, as the meter and the uplink use them
    # (meter/models.py get, uplink/service.py tls_context)
    if cfg["meter"]["model"].lower() == "generic" and cfg["meter"]["generic"] is None:
        raise ConfigError("meter.generic: meter.model generic needs a register map (docs/meter.md)")
    up = cfg["uplink"]
    if up["broker"] and up["broker"].startswith("mqtts://") and not up["ca"]:
        raise ConfigError("uplink.ca: mqtts needs the CA certificate that signed the broker's (a file path)")
    if cfg["nfc"]["reader"] == "mfrc522" and cfg["nfc"]["bus"] not in (None, "spi"):
        raise ConfigError("nfc.bus: the mfrc522 reader is driven over spi only")
    if bool(up["cert"]) != bool(up["key"]):
        raise ConfigError("uplink.%s: a client certificate needs both uplink.cert and uplink.key"
                          % ("key" if up["cert"] else "cert"))


def validate(override):
    """Merge override onto DEFAULTS and check every field; return the full config or raise ConfigError."""
    if not isinstance(override, dict):
        raise ConfigError("config: must be a JSON object")
    _string_keys(override)
    cfg = _merge(DEFAULTS, override)
    for path, (types, check, want) in SCHEMA.items():
        value = _get(cfg, path)
        if types is None:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, types)
        why = ""
        try:
            ok = ok and check(value)
        except KeyError as exc:  # from _keys_in: (key, known keys)
            raise ConfigError("%s.%s: unknown setting; known: %s" % (path, exc.args[0], ", ".join(exc.args[-1])))
        except Exception as exc:  # the firmware's own parsers say why (tz, tariff, register map)
            ok, why = False, " (%s)" % (exc,)
        if not ok:
            got = repr(value)  # a whole tariff document would be too much for a line: its start will do
            if path.endswith("password") or path.endswith("secret"):  # never echo a secret: console, log, MQTT
                got = ("a string of %d characters" % len(value) if isinstance(value, str)
                       else "a value of type %s" % type(value).__name__) + " (not shown)"
            raise ConfigError("%s: got %s, want %s%s" % (path, got if len(got) <= 80 else got[:77] + "...", want, why))
    _together(cfg)
    return cfg


def load(path):
    """Read and validate the config file at path; a missing file means all defaults."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return validate({})
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError("%s: not valid JSON (%s)" % (path, exc))
    return validate(data)
