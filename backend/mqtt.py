"""MQTT plumbing on paho-mqtt: broker URLs, a client factory, and a blocking publisher."""
from __future__ import annotations

import json
import ssl
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit, urlunsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    user: str | None
    password: str | None
    ca: str | None = None  # CA certificate file that signed the broker's certificate (else the system's)


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def parse_broker(url: str) -> BrokerUrl:
    """mqtt://[user[:pass]@]host[:port] or mqtts://...[?ca=CAFILE]; raises ValueError with a clear message.
    User and password are percent-decoded."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker {redact(url)!r}: expected mqtt://host:port or mqtts://host:port")
    query = parse_qs(parts.query)
    if set(query) - {"ca"} or len(query.get("ca", [])) > 1:
        raise ValueError(f"broker {redact(url)!r}: the only option after ? is ca=CAFILE")
    tls = parts.scheme == "mqtts"
    ca = query["ca"][0] if "ca" in query else None
    if ca and not tls:
        raise ValueError(f"broker {redact(url)!r}: ca= is for mqtts:// (TLS)")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrokerUrl(parts.hostname, parts.port or (8883 if tls else 1883), tls, user, password, ca)


def _read_password_file(path: str | Path) -> tuple[str | None, str]:
    """(user or None, password) from a file: the password alone, or the JSON `{"user", "password"}`
    that `python -m backend broker creds --out` writes."""
    try:
        text = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"cannot read the broker password file {path}: {exc.strerror}") from None
    if text.startswith("{"):
        try:
            doc = json.loads(text)
            return doc.get("user"), str(doc["password"])
        except (ValueError, KeyError, AttributeError):
            raise ValueError(f"the broker password file {path} is JSON without a \"password\"") from None
    if not text:
        raise ValueError(f"the broker password file {path} is empty")
    return None, text


def with_options(url: str, ca: str | Path | None = None, password_file: str | Path | None = None) -> str:
    """The broker URL with a CA file (?ca=) and the password read from a file (so that it is not on the
    command line, where `ps` shows it): `--broker-ca`, `--broker-password-file` of `python -m backend`."""
    parse_broker(url)
    parts = urlsplit(url)
    if password_file is not None:
        file_user, password = _read_password_file(password_file)
        user = unquote(parts.username) if parts.username is not None else file_user
        if user is None:
            raise ValueError(f"broker {redact(url)!r}: a password file needs the user name in the URL "
                             "(mqtts://evc-backend@host:port)")
        if file_user is not None and file_user != user:
            raise ValueError(f"the broker password file {password_file} is for user {file_user!r}, "
                             f"the broker URL names {user!r}")
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}")
    if ca is not None:
        if parts.scheme != "mqtts":
            raise ValueError(f"broker {redact(url)!r}: a CA file is for mqtts:// (TLS)")
        query = {k: v for k, v in parse_qs(parts.query).items() if k != "ca"}
        query["ca"] = [str(ca)]
        parts = parts._replace(query=urlencode(query, doseq=True))
    return urlunsplit(parts)


def make_client(url: str, name: str, manual_ack: bool = False) -> paho.Client:
    b = parse_broker(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311, manual_ack=manual_ack)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    if b.user:
        client.username_pw_set(b.user, b.password)
    if b.tls:
        client.tls_set(ca_certs=b.ca, cert_reqs=ssl.CERT_REQUIRED)
    return client


def connect(client: paho.Client, url: str, timeout: float = 10) -> None:
    """Connect and start the network thread; raises ConnectionError if not connected in time."""
    b = parse_broker(url)
    client.connect(b.host, b.port, keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not client.is_connected():
        if time.monotonic() > deadline:
            client.loop_stop()
            raise ConnectionError(f"no connection to {redact(url)} within {timeout} s")
        time.sleep(0.02)


def publish_all(url: str, messages: list[tuple[str, str, bool]], timeout: float = 30) -> None:
    """Publish (topic, payload, retain) at QoS 1 and wait until the broker has every one."""
    client = make_client(url, "evc-backend-cli")
    connect(client, url, timeout)
    try:
        infos = [client.publish(topic, payload, qos=1, retain=retain) for topic, payload, retain in messages]
        deadline = time.monotonic() + timeout
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise ConnectionError(f"broker did not take every message within {timeout} s")
    finally:
        client.disconnect()
        client.loop_stop()
