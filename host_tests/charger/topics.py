"""What a device publishes on evc/<dev>/#, seen by a real MQTT client on the same broker."""
from __future__ import annotations

import json
import threading
import time


class DeviceTopics:
    """msgs: (kind, payload bytes, retained) in arrival order; kind is the topic's last level."""

    def __init__(self, url: str, dev: str, name: str = "test-watch"):
        from backend.mqtt import connect, make_client

        self.msgs: list[tuple[str, bytes, bool]] = []
        self._cond = threading.Condition()
        self.client = make_client(url, name)
        self.client.on_message = self._on
        connect(self.client, url)
        self.client.subscribe(f"evc/{dev}/#", qos=1)

    def _on(self, client, userdata, m) -> None:
        with self._cond:
            self.msgs.append((m.topic.rsplit("/", 1)[-1], bytes(m.payload), bool(m.retain)))
            self._cond.notify_all()

    def of(self, kind: str) -> list[bytes]:
        with self._cond:
            return [p for k, p, _r in self.msgs if k == kind]

    def docs(self, kind: str, retained: bool | None = None) -> list[dict]:
        """The JSON messages of kind (records are JWS, not JSON: skipped)."""
        with self._cond:
            found = [(p, r) for k, p, r in self.msgs if k == kind and (retained is None or r == retained)]
        out = []
        for p, _r in found:
            try:
                out.append(json.loads(p))
            except ValueError:
                pass
        return out

    def wait(self, kind: str, pred, timeout: float = 20, raw: bool = False):
        """The first message of kind for which pred holds: pred gets the payload parsed as JSON
        (non-JSON skipped), or the raw bytes with raw=True; returns what pred got."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for k, p, _r in self.msgs:
                    if k != kind:
                        continue
                    if raw:
                        if pred(p):
                            return p
                        continue
                    try:
                        doc = json.loads(p)
                    except ValueError:
                        continue
                    if pred(doc):
                        return doc
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {kind} message as wanted; got {self.msgs[-10:]}")
                self._cond.wait(left)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
