"""MQTT plumbing on paho-mqtt: broker URLs, a client factory, and a blocking publisher."""
from __future__ import annotations

import ssl
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class BrokerUrl:
    host: str
    port: int
    tls: bool
    user: str | None
    password: str | None


def parse_broker(url: str) -> BrokerUrl:
    """mqtt://[user:pass@]host[:port] or mqtts://...; raises ValueError with a clear message."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker {url!r}: expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    return BrokerUrl(parts.hostname, parts.port or (8883 if tls else 1883), tls, parts.username, parts.password)


def make_client(url: str, name: str, manual_ack: bool = False) -> paho.Client:
    b = parse_broker(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{uuid.uuid4().hex[:8]}",
                         protocol=paho.MQTTv311, manual_ack=manual_ack)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    if b.user:
        client.username_pw_set(b.user, b.password)
    if b.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
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
            raise ConnectionError(f"no connection to {url} within {timeout} s")
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
