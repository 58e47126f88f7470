# Store-and-forward of journaled records: in seq order, QoS 1, a window of several in
# flight, delivered only when the backend's cumulative ack {"seq": N} covers them.
#
# The record store (billing/journal.py on the device) offers:
#   pending(after_seq, limit, on_flash) -> iterable of (seq, signed), seq ascending, seq > after_seq;
#                             signed: bytes, or with on_flash a journal.OnFlash the conn reads
#   ack(seq)                  forget every record up to seq (durably)
#   acked_seq()               highest acknowledged seq (0 when none)
#   next_seq()                seq the next record will get (so next_seq() - 1 is the last)
# After any (re)connect everything unacknowledged is sent again; the backend stores by
# (dev, seq), so a resent record is never stored twice. Acks that do not move the cursor
# forward, or that name a seq beyond the last journaled record, are ignored. (An ack above what
# this boot has sent is believed: the backend may hold records sent before a reboot.)
import json

from micropython import const

from app import log
from hal import clock

_ACK_MAX_BYTES = const(64)


class Forwarder:
    def __init__(self, store, window=16, resend_ms=30000):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.store = store
        self.window = window
        self.resend_ms = resend_ms
        self._next = store.acked_seq() + 1  # next seq to publish on this connection
        self._ack_to = 0  # highest valid ack received, not yet written to the store
        self._progress_at = clock.io_ms()
        self.sent = 0
        self.resent = 0
        self.acks_ignored = 0

    def restart(self):
        """A new connection: everything unacknowledged goes again, from the oldest."""
        acked = self.store.acked_seq()
        if self._next > acked + 1:
            self.resent += self._next - acked - 1
        self._next = acked + 1
        self._progress_at = clock.io_ms()

    def on_ack(self, msg):
        """Handle an ack payload from the receive path (no flash writes here: commit() does them)."""
        seq = None
        if len(msg) <= _ACK_MAX_BYTES:
            try:
                doc = json.loads(msg)
                seq = doc.get("seq") if isinstance(doc, dict) else None
            except (ValueError, TypeError):
                seq = None
        if not isinstance(seq, int) or isinstance(seq, bool):
            self.acks_ignored += 1
            log.warn("fwd", "malformed ack ignored")
            return False
        floor = max(self._ack_to, self.store.acked_seq())
        if seq <= floor or seq >= self.store.next_seq():
            self.acks_ignored += 1  # duplicate, stale, or a seq the journal never had
            return False
        self._ack_to = seq
        return True

    def commit(self):
        """Write the newest ack to the store; returns True when the cursor moved."""
        seq = self._ack_to
        if seq <= self.store.acked_seq():
            return False
        self.store.ack(seq)
        self._progress_at = clock.io_ms()
        if self._next <= seq:
            self._next = seq + 1
        return True

    def in_flight(self):
        return max(0, self._next - 1 - self.store.acked_seq())

    def pending_count(self):
        return max(0, self.store.next_seq() - 1 - self.store.acked_seq())

    async def pump(self, publish, topic):
        """Publish what the window allows; returns the number of records queued.

        publish(topic, data, flush=False) buffers; the caller flushes afterwards.
        """
        acked = self.store.acked_seq()
        if self._next - 1 > acked and clock.io_ms() - self._progress_at > self.resend_ms:
            # records in flight but no ack for a long time: the backend may have lost them
            log.warn("fwd", "no ack for %d ms; resending from %d" % (self.resend_ms, acked + 1))
            self.resent += self._next - acked - 1
            self._next = acked + 1
            self._progress_at = clock.io_ms()
        room = self.window - (self._next - 1 - acked)
        if room <= 0 or self._next >= self.store.next_seq():
            return 0
        if self._next - 1 == acked:
            self._progress_at = clock.io_ms()  # the resend timer starts with the first in flight
        n = 0
        for seq, data in self.store.pending(self._next - 1, room, True):  # on flash, not copied to RAM
            if seq != self._next:
                raise ValueError("store returned seq %d, expected %d" % (seq, self._next))
            await publish(topic, data, flush=False)  # the window goes out in as few writes as fit
            self._next = seq + 1
            n += 1
        self.sent += n
        return n
