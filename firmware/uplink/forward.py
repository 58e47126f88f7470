# Store-and-forward of journaled records: in seq order, QoS 1, a window of several in
# flight, delivered only when the backend's signed cumulative ack covers them.
#
# The record store (billing/journal.py on the device) offers:
#   pending(after_seq, limit, on_flash) -> iterable of (seq, signed), seq ascending, seq > after_seq;
#                             signed: bytes, or with on_flash a journal.OnFlash the conn reads
#   ack(seq)                  forget every record up to seq (durably)
#   acked_seq()               highest acknowledged seq (0 when none)
#   next_seq()                seq the next record will get (so next_seq() - 1 is the last)
#   digest(seq)               SHA-256 (32 bytes) of record seq's payload, None when unknown
# After any (re)connect everything unacknowledged is sent again; the backend stores by
# (dev, seq), so a resent record is never stored twice.
#
# An ack is a JWS (ES256) by the pinned backend key of {"type": "ack", "dev", "seq", "hash"}:
# the journal forgets records only when the signature verifies, dev is this device and hash is
# the SHA-256 (hex) of record seq's payload as the journal holds it. Verifying costs ~5 ms on the
# unix port and 20-50x that on an ESP32, so the receive path only reads the claimed seq and keeps
# the newest candidate (acks are cumulative: a newer one covers an older); the session loop
# verifies it (commit()), at most one per loop pass, and after a verification waits as long as it
# took before the next (ack checking takes at most half the loop's time). Acks that claim a seq
# not beyond the cursor or beyond the journal are dropped unverified; forged, foreign or
# mismatched ones are dropped after verification. Either way nothing moves (acks_ignored).
import json

from micropython import const

from app import log
from hal import clock

_ACK_MAX_BYTES = const(512)  # a signed ack is ~300 bytes (dev id up to 64 characters)

class Forwarder:
    def __init__(self, store, window=16, resend_ms=30000, dev=None, verify=None):
        if window < 1:
            raise ValueError("window must be >= 1")
        self.store = store
        self.window = window
        self.resend_ms = resend_ms
        self.dev = dev
        self.verify = verify  # compact JWS -> payload bytes by the pinned backend key; raises if not genuine
        self._next = store.acked_seq() + 1  # next seq to publish on this connection
        self._ack_to = 0  # highest verified ack, not yet written to the store
        self._cand = None  # bytearray: the newest ack received, not yet verified (allocated on the first)
        self._cand_n = 0
        self._cand_seq = 0
        self._verify_at = 0  # io ms before which no ack is verified
        self._progress_at = clock.io_ms()
        self.sent = 0
        self.resent = 0
        self.acks_ignored = 0
        self.acks_verified = 0

    def restart(self):
        """A new connection: everything unacknowledged goes again, from the oldest."""
        acked = self.store.acked_seq()
        if self._next > acked + 1:
            self.resent += self._next - acked - 1
        self._next = acked + 1
        self._progress_at = clock.io_ms()

    def on_ack(self, msg):
        """An ack payload from the receive path: kept when it claims to move the cursor (no
        signature check and no flash here: commit() does both). True when kept."""
        seq = _claimed_seq(msg) if len(msg) <= _ACK_MAX_BYTES else None
        if seq is None:
            self.acks_ignored += 1
            log.warn("fwd", "malformed ack ignored")
            return False
        floor = max(self._ack_to, self.store.acked_seq())
        if seq <= floor or seq < self._cand_seq or seq >= self.store.next_seq():
            self.acks_ignored += 1  # duplicate, stale, covered by a newer one, or a seq the journal never had
            return False
        if self._cand is None:
            self._cand = bytearray(_ACK_MAX_BYTES)
        if self._cand_n:
            self.acks_ignored += 1  # the candidate it replaces is never verified
        n = len(msg)
        memoryview(self._cand)[:n] = msg
        self._cand_n = n
        self._cand_seq = seq  # covers an older candidate; of two claiming one seq the later is kept
        return True

    def wait_ms(self, idle_ms):
        """How long the loop may sleep: shorter when a candidate ack waits for its turn."""
        if not self._cand_n:
            return idle_ms
        return max(1, min(idle_ms, self._verify_at - clock.io_ms()))

    def _check(self):
        # verify the candidate; on success it becomes the ack to write
        n, seq = self._cand_n, self._cand_seq
        self._cand_n = self._cand_seq = 0
        if seq <= max(self._ack_to, self.store.acked_seq()):
            self.acks_ignored += 1  # became stale while it waited
            return
        t0 = clock.io_ms()
        why = self._why_not(bytes(memoryview(self._cand)[:n]), seq)
        now = clock.io_ms()
        self._verify_at = now + (now - t0)  # at most half the loop's time goes to acks
        if why is not None:
            self.acks_ignored += 1
            log.warn("fwd", "ack for %d ignored: %s" % (seq, why))
            return
        self.acks_verified += 1
        self._ack_to = seq

    def _why_not(self, raw, seq):
        """None when raw is a genuine ack of record seq of this device, else the reason."""
        if self.verify is None:
            return "no backend key"
        try:
            doc = json.loads(self.verify(raw))
        except Exception as exc:  # not a JWS, bad signature, wrong key, not JSON
            return "signature (%s)" % (exc,)
        if not isinstance(doc, dict) or doc.get("type") != "ack" or doc.get("seq") != seq:
            return "malformed"
        if doc.get("dev") != self.dev:
            return "for device %r" % (doc.get("dev"),)
        want = self.store.digest(seq)
        got = doc.get("hash")
        if want is None or not isinstance(got, str) or got != _hex(want):
            return "hash does not match record %d" % seq
        return None

    def commit(self):
        """Verify the newest ack when it is due and write it to the store; True when the cursor moved."""
        if self._cand_n and clock.io_ms() >= self._verify_at:
            self._check()
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


def _claimed_seq(msg):
    # the seq an ack claims, read from its JWS payload without checking the signature (cheap:
    # it only picks the candidate commit() verifies); None when it is not shaped like an ack
    from crypto import jws

    doc = jws.claimed(msg)
    seq = doc.get("seq") if doc is not None else None
    if not isinstance(seq, int) or isinstance(seq, bool):
        return None
    return seq


def _hex(raw):
    from binascii import hexlify

    return hexlify(raw).decode()
