# The retained status message and the device's events.
#
# Status (retained, QoS 1; the last will {"online": false} replaces it when the device
# vanishes): what the owner's status_fn() reports (state, fw, public key, ...) plus the
# uplink's own view: last seq, acked seq, records pending, journal use, downlink versions (the
# list's is the one committed with it) and, while it matters, the list version being collected
# or the last one refused: what the backend needs to republish (backend/converge.py).
# Events (rejected cards, faults, rejected downlinks) wait in a small RAM queue while offline;
# when it is full the oldest goes, and the next event says how many were dropped.
import json

from micropython import const

from hal import clock

_EVENT_QUEUE = const(16)

WILL = b'{"online":false}'


def status_payload(status_fn, store, versions, downlink=None):
    doc = {}
    if status_fn is not None:
        doc.update(status_fn())
    last = store.next_seq() - 1
    acked = store.acked_seq()
    doc["online"] = True
    doc["seq"] = last
    doc["acked"] = acked
    doc["pending"] = last - acked
    if hasattr(store, "usage"):
        use = store.usage()  # the journal's (bytes used, bytes max, records pending)
        doc["journal"] = {"used": use[0], "max": use[1]} if isinstance(use, tuple) else use
    doc["versions"] = versions
    if downlink:  # a list version being collected ({"ver", "got", "parts"}), the last one refused ({"ver", "reason"})
        doc["downlink"] = downlink
    doc["t"], doc["tq"] = clock.now()
    return json.dumps(doc).encode()


class Events:
    def __init__(self, size=_EVENT_QUEUE):
        self._q = []
        self._size = size
        self.dropped = 0

    def add(self, evt):
        evt = dict(evt)
        evt["t"], evt["tq"] = clock.now()
        if len(self._q) >= self._size:
            self._q.pop(0)
            self.dropped += 1
        self._q.append(evt)

    def __len__(self):
        return len(self._q)

    def peek(self):
        evt = self._q[0]
        if self.dropped:
            evt["dropped"] = self.dropped
        return json.dumps(evt).encode()

    def pop(self):
        self._q.pop(0)
        self.dropped = 0
