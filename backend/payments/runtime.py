"""What keeps the payment service going beside its web app: an MQTT client that reads the chargers'
retained statuses (their payment codes, live progress) and events (started, refused) and publishes
the signed start commands, and a sweeper that settles payments (capture, release, pending refunds)."""
from __future__ import annotations

import json
import logging
import threading
import time

import paho.mqtt.client as paho

from backend.mqtt import connect, make_client, redact

log = logging.getLogger("backend.payments")


class Runtime:
    def __init__(self, broker: str, prefix: str = "evc", sweep_s: float = 2.0):
        self.broker = broker
        self.prefix = prefix
        self.sweep_s = sweep_s
        self.service = None
        self.client: paho.Client | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, msgs: list[tuple[str, str, bool]], timeout: float = 10) -> None:
        """QoS 1, waiting for the broker to take each (Downlinks' publish)."""
        assert self.client is not None, "runtime not started"
        for topic, payload, retain in msgs:
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            info.wait_for_publish(timeout)
            if info.rc != paho.MQTT_ERR_SUCCESS or not info.is_published():
                raise ConnectionError(f"broker did not take {topic}")

    def start(self, service) -> "Runtime":
        self.service = service
        self.client = make_client(self.broker, "evc-pay")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        try:
            connect(self.client, self.broker)
        except OSError as e:
            raise ConnectionError(f"broker {redact(self.broker)}: {e}") from e
        self._thread = threading.Thread(target=self._sweeper, daemon=True, name="pay-sweeper")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if not reason.is_failure:
            client.subscribe([(f"{self.prefix}/+/status", 1), (f"{self.prefix}/+/evt", 1)])

    def _on_message(self, _client, _userdata, msg) -> None:
        try:  # nothing a charger sends may stop the MQTT thread
            parts = msg.topic.split("/")
            if len(parts) != 3:
                return
            doc = json.loads(msg.payload)
            if parts[2] == "status":
                self.service.on_status(parts[1], doc)
            elif parts[2] == "evt":
                self.service.on_event(parts[1], doc)
        except (ValueError, UnicodeDecodeError):
            log.info("unreadable message on %s ignored", msg.topic[:80])
        except Exception:  # noqa: BLE001
            log.exception("message on %s not handled", msg.topic[:80])

    def _sweeper(self) -> None:
        while not self._stop.wait(self.sweep_s):
            try:
                self.service.sweep()
                self.service.finish_refunds()
            except Exception:  # noqa: BLE001 - the database or the gateway away: the next sweep tries again
                log.exception("payment sweep failed")
            time.sleep(0)
