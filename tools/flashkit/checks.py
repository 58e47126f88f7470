"""Host-side config checks: a bad config never reaches a board.

The schema is the firmware's own (firmware/app/config.py, pure Python, imported here from the
firmware folder); on top of it: the board's pins (boards/esp32/pincheck.py), key formats, and
stream URLs that must name a UART the board has.
"""
from __future__ import annotations

import base64
import binascii
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from .build import BOARDS, FIRMWARE, board_family

# DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, 66-byte BIT STRING)
# followed by an uncompressed point (04 || X || Y): 91 bytes in all.
P256_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
P256_SPKI_LEN = 91


class ConfigProblem(ValueError):
    """One or more problems, each "field: message"."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def _firmware_module(name: str):
    if str(FIRMWARE) not in sys.path:
        sys.path.insert(0, str(FIRMWARE))
    return importlib.import_module(name)


def config_module():
    return _firmware_module("app.config")


def _pincheck():
    folder = str(BOARDS / "esp32")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module("pincheck")


def parse_public_key(text: str | bytes) -> str:
    """A P-256 public key as PEM, DER or hex -> hex SPKI DER (the config's backend_key form)."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    stripped = raw.strip()
    der: bytes | None = None
    if stripped.startswith(b"-----BEGIN"):
        if b"PUBLIC KEY" not in stripped.split(b"\n", 1)[0]:
            raise ValueError("backend key: want a PUBLIC KEY PEM block (never a private key)")
        body = b"".join(line for line in stripped.splitlines() if not line.startswith(b"-----"))
        try:
            der = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise ValueError("backend key: the PEM body is not valid base64") from None
    elif stripped and all(c in b"0123456789abcdefABCDEF" for c in stripped):
        der = bytes.fromhex(stripped.decode()) if len(stripped) % 2 == 0 else None
    else:
        der = raw
    if der is None or len(der) != P256_SPKI_LEN or not der.startswith(P256_SPKI_PREFIX) or der[26] != 4:
        raise ValueError("backend key: not a P-256 public key (SubjectPublicKeyInfo, PEM/DER/hex)")
    return der.hex()


def _uart_names(board: str) -> set[str]:
    if board_family(board) != "esp32":
        return set()
    spec = _pincheck().board(board)
    names = set()
    for field in ("rs485", "nfc"):
        conf = spec.get(field)
        if conf and conf.get("bus", "uart") == "uart":
            names |= {field, f"uart{conf['uart']}"}
    return names


def _nfc_wirings(board: str) -> dict[str, tuple[str, str]]:
    """nfc.url names of the board's card-reader wirings ("nfc", "nfc_spi", "uart1") -> (wiring, bus)."""
    names = {}
    for field, conf in _pincheck().board(board).items():
        if field.startswith("nfc") and conf:
            bus = conf.get("bus", "uart")
            names[field] = (field, bus)
            if bus == "uart":
                names[f"uart{conf['uart']}"] = (field, bus)
    return names


def _nfc_problems(board: str, nfc: dict) -> list[str]:
    """The reader's url, bus and kind against the board's wirings (boards/esp32/board.py nfc_bus)."""
    url, want, reader = nfc["url"], nfc["bus"], nfc["reader"]
    if url is None:
        return []
    wirings = _nfc_wirings(board)
    if url.startswith("tcp://"):
        if reader == "mfrc522" or want not in (None, "uart"):
            need = "spi" if reader == "mfrc522" else want
            fits = [name for name, (_, b) in sorted(wirings.items()) if b == need]
            return [f"nfc.url: over tcp:// an ESP32 reaches only a PN532's HSU (a serial gateway); the {reader} "
                    f"on {need} needs " + (f"the board's wiring: {', '.join(fits)}" if fits
                                           else f"a wiring on {need}, which board {board} has not")]
        return []
    if url not in wirings:
        return [f"nfc.url: board {board} has no card reader wiring {url!r}; use tcp://host:port or one of "
                f"{', '.join(sorted(wirings))}"]
    bus = wirings[url][1]
    spi = [name for name, (_, b) in sorted(wirings.items()) if b == "spi"]
    if reader == "mfrc522" and bus != "spi":
        return [f"nfc.reader: an mfrc522 needs an SPI wiring; board {board} wires {url} on {bus}"
                + (f": set nfc.url to {spi[0]}" if spi else " and has no SPI reader wiring")]
    if want is not None and want != bus:
        return [f"nfc.bus: board {board} wires {url} on {bus}, not {want}"]
    return []


def validate(override: Any, board: str | None = None) -> dict:
    """The full config (defaults merged) or ConfigProblem naming every field that is wrong."""
    config = config_module()
    try:
        full = config.validate(override)
    except config.ConfigError as exc:
        raise ConfigProblem([str(exc)]) from None
    problems: list[str] = []
    if full["backend_key"] is not None:
        try:
            parse_public_key(full["backend_key"])
        except ValueError as exc:
            problems.append(f"backend_key: {str(exc).split(': ', 1)[1]}")
    if board is not None:
        try:
            family = board_family(board)
        except ValueError as exc:
            raise ConfigProblem([f"board: {exc}"]) from None
        if family == "esp32":
            nfc_wiring = _nfc_wirings(board).get(full["nfc"]["url"] or "", (None,))[0]
            problems += _pincheck().check(board, full["pins"], nfc_wiring)
            uarts = _uart_names(board)
            url = full["meter"]["url"]
            if url is not None and not url.startswith("tcp://") and url not in uarts:
                problems.append(f"meter.url: board {board} has no UART {url!r}; use tcp://host:port or one of "
                                f"{', '.join(sorted(uarts))}")
            problems += _nfc_problems(board, full["nfc"])
            if full["net"]["iface"] == "lan" and not _pincheck().board(board).get("eth"):
                problems.append(f"net.iface: board {board} has no Ethernet; use wlan (or auto)")
    if problems:
        raise ConfigProblem(problems)
    return full


def load_file(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigProblem([f"config: cannot read {path}: {exc.strerror}"]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigProblem([f"config: {path} is not valid JSON (line {exc.lineno}: {exc.msg})"]) from None


def set_path(config: dict, dotted: str, value: Any) -> dict:
    """A copy of config with dotted ("meter.url") set to value; objects on the way are created."""
    out = json.loads(json.dumps(config))
    node = out
    parts = dotted.split(".")
    if not all(parts):
        raise ConfigProblem([f"{dotted}: not a setting name"])
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigProblem([f"{dotted}: {part} is not an object"])
        node = child
    node[parts[-1]] = value
    return out


def get_path(config: dict, dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigProblem([f"{dotted}: unknown setting"])
        node = node[part]
    return node


# ---------------------------------------------------------------------------- secrets and the broker
MASK = "********"


def is_secret(name: str) -> bool:
    """A setting whose value is never shown: site_secret, uplink.password, net.wifi.password (the rule
    firmware/app/config.py uses for its messages: a name ending in password or secret)."""
    last = name.rsplit(".", 1)[-1]
    return last.endswith("password") or last.endswith("secret")


def mask_secrets(value: Any, path: str = "") -> Any:
    """A copy with every secret that is set replaced by MASK (null stays null: "not set" is no secret)."""
    if path and is_secret(path):
        return value if value is None else MASK
    if isinstance(value, dict):
        return {k: mask_secrets(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    return value


def transport_warnings(full: dict) -> list[str]:
    """What is unsafe about a (validated) config's link to the broker; shown loudly, not refused."""
    up = full["uplink"]
    broker = up["broker"]
    if not broker:
        return []
    out = []
    if broker.startswith("mqtt://"):
        out.append(f"uplink.broker {broker} is PLAIN MQTT: session records, card tokens"
                   + (", the broker password" if up["password"] else "")
                   + " and the backend's documents cross the network unencrypted. Use mqtts://HOST:8883 with the "
                     "broker's CA: flash.py provision --broker mqtts://HOST:8883 --ca ca.pem")
    if not up["user"] and not up["cert"]:
        out.append("uplink.user is not set: a broker set up as docs/backend.md says (no anonymous clients) refuses "
                   "this charger. Make its credentials with `python -m backend broker creds --dev ID --out FILE` "
                   "and give FILE to flash.py provision --broker-creds")
    return out


def broker_url(text: str, have_ca: bool) -> str:
    """The uplink.broker URL from what the technician typed: mqtts:// when a CA is given (HOST or
    HOST:PORT become mqtts://HOST:8883), mqtt:// only when asked for or when there is no CA."""
    if text.startswith("mqtt://") and have_ca:
        raise ConfigProblem([f"uplink.broker: a CA was given but {text} is plain MQTT; use mqtts://"
                             f"{text[len('mqtt://'):]} (usually port 8883)"])
    if "://" in text:
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        host, port = text, ""
    if have_ca:
        return f"mqtts://{host}:{port or 8883}"
    return f"mqtt://{host}:{port or 1883}"


def parse_ca(data: bytes, name: str) -> bytes:
    """A CA certificate as PEM or DER (what the firmware's uplink reads); raises ConfigProblem."""
    text = data.lstrip()
    if text.startswith(b"-----BEGIN CERTIFICATE-----"):
        return data
    if text.startswith(b"-----BEGIN"):
        raise ConfigProblem([f"uplink.ca: {name} is PEM but not a CERTIFICATE block (never a private key)"])
    if len(data) > 64 and data[0] == 0x30:  # DER: a SEQUENCE
        return data
    raise ConfigProblem([f"uplink.ca: {name} is not a certificate (PEM or DER)"])


def load_broker_creds(path: Path, device_id: str) -> tuple[str, str]:
    """(user, password) from the file `python -m backend broker creds --dev ID --out FILE` wrote."""
    try:
        doc = json.loads(path.read_text())
        user, password = doc["user"], doc["password"]
    except OSError as exc:
        raise ConfigProblem([f"broker credentials: cannot read {path}: {exc.strerror}"]) from None
    except (ValueError, KeyError, TypeError):
        raise ConfigProblem([f"broker credentials: {path} is not a `python -m backend broker creds --out` file "
                             "({\"user\", \"password\"})"]) from None
    if not isinstance(user, str) or not isinstance(password, str) or not password:
        raise ConfigProblem([f"broker credentials: {path} has no user and password"])
    if user != device_id:
        raise ConfigProblem([f"broker credentials: {path} are for {user!r}, this board is {device_id!r} "
                             "(the broker user name is the device id)"])
    return user, password


def parse_value(text: str) -> Any:
    """Command-line value: JSON when it parses (27, null, true, [..]), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
