# The authorization cache: tokens the backend answered online, kept across reboots.
#
# A fixed file of `size` 24-byte slots: token(16) status(1) pad(3) seen(4, epoch s).
# Lookups scan at most `size` slots (bounded by the cache size, not by any list); an update
# rewrites one slot in place. When full, a non-accepted entry is evicted first, then the
# oldest one.
import os
import struct

from micropython import const

from billing.authlist import STATUSES, token_bytes

_SLOT = const(24)
_CHUNK_SLOTS = const(32)  # lookups read 768 bytes at a time into one buffer
_FORMAT = "<16sB3xI"
_EMPTY = b"\x00" * 16


class AuthCache:
    def __init__(self, path, size=256):
        self.path = path
        self.size = size
        self._buf = bytearray(_SLOT)
        self._chunk = bytearray(_SLOT * _CHUNK_SLOTS)
        try:
            length = os.stat(path)[6]
        except OSError:
            length = -1
        if length != size * _SLOT:
            with open(path, "wb") as f:  # new, or resized by config: start empty
                for _ in range(size):
                    f.write(bytes(_SLOT))

    def _scan(self, key):
        """(index of key or None, index of the slot to evict/fill)."""
        found, victim, victim_rank = None, 0, None
        buf = self._buf
        with open(self.path, "rb") as f:
            for i in range(self.size):
                f.readinto(buf)
                token, status, seen = struct.unpack(_FORMAT, buf)
                if token == key:
                    found = i
                # rank: empty first, then not accepted, then the oldest
                rank = (0, 0) if token == _EMPTY else ((1 if status else 2), seen)
                if victim_rank is None or rank < victim_rank:
                    victim, victim_rank = i, rank
        return found, victim

    def _find(self, key):
        """Slot index of key, or None; searches chunks in place (a tap must not churn the heap)."""
        chunk = self._chunk
        with open(self.path, "rb") as f:
            base = 0
            while base < self.size:
                n = f.readinto(chunk)
                if not n:
                    return None
                at = chunk.find(key)
                while 0 <= at < n:
                    if at % _SLOT == 0:
                        return base + at // _SLOT
                    at = chunk.find(key, at + 1)
                base += _CHUNK_SLOTS
        return None

    def lookup(self, token):
        """Status string of a cached token, or None."""
        if not self.size:
            return None
        found = self._find(token_bytes(token))
        if found is None:
            return None
        status = self._chunk[(found % _CHUNK_SLOTS) * _SLOT + 16]
        return STATUSES[status] if status < len(STATUSES) else "invalid"

    def put(self, token, status, now):
        if not self.size:
            return
        if status not in STATUSES:
            raise ValueError("bad status %r" % (status,))
        key = token_bytes(token)
        found, victim = self._scan(key)
        slot = found if found is not None else victim
        struct.pack_into(_FORMAT, self._buf, 0, key, STATUSES.index(status), now)
        with open(self.path, "r+b") as f:
            f.seek(slot * _SLOT)
            f.write(self._buf)
