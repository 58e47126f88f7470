# The authorization cache: the backend's signed online answers, kept across reboots until they
# expire.
#
# A fixed file of `size` 64-byte slots:
#   token(16) status(1) flags(1) pad(2) exp(4, epoch s) allowance(4, signed) bal_seq(4) contract(32)
# exp is the answer's expiry: a slot at or past it counts as empty (dropped). flags bit 0: the card
# is prepaid and allowance is the amount the backend allowed, which already includes this device's
# records up to bal_seq (like a list entry: billing/prepaid.py subtracts the later spends).
# flags bit 1: that amount is a reservation (docs/prepaid.md), named by (device, token, exp) and
# good for one session: bal_seq is then this device's last seq before it was granted, and the
# lookup's Entry carries rsv = exp (else rsv is None). contract: UTF-8, at most 32 bytes.
# Lookups scan at most `size` slots in 768-byte reads (bounded by the cache size, not by any
# list); an update rewrites one slot in place. When full, an empty or expired slot is taken
# first, then a non-accepted entry, then the one that expires first.
# Lookups need the time: with the device's time unknown a cached decision is not used.
import os
import struct

from micropython import const

from billing.authlist import STATUSES, Entry, token_bytes

_SLOT = const(64)
_CHUNK_SLOTS = const(12)  # lookups read 768 bytes at a time into one buffer
_FORMAT = "<16sBB2xIiI32s"
_CONTRACT = const(32)
_PREPAID = const(1)
_RESERVED = const(2)
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
            with open(path, "wb") as f:  # new, resized by config, or the older 24-byte format: start empty
                for _ in range(size):
                    f.write(bytes(_SLOT))

    def _scan(self, key, now):
        """(index of key or None, index of the slot to evict/fill)."""
        found, victim, victim_rank = None, 0, None
        buf = self._buf
        with open(self.path, "rb") as f:
            for i in range(self.size):
                f.readinto(buf)
                token, status, _, exp = struct.unpack_from("<16sBB2xI", buf)
                if token == key:
                    found = i
                # rank: empty or expired first, then not accepted, then the first to expire
                if token == _EMPTY or (now is not None and exp <= now):
                    rank = (0, 0)
                else:
                    rank = ((1 if status else 2), exp)
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

    def lookup(self, token, now):
        """The cached decision for token as an authlist.Entry (expiry = the answer's exp, balance =
        the prepaid allowance or None), or None: not cached, or expired at now (epoch s)."""
        if not self.size or now is None:
            return None
        found = self._find(token_bytes(token))
        if found is None:
            return None
        _, status, flags, exp, allowance, bal_seq, contract = struct.unpack_from(
            _FORMAT, self._chunk, (found % _CHUNK_SLOTS) * _SLOT)
        if now >= exp:
            return None  # expired: as good as gone (put() takes the slot first)
        contract = bytes(contract).rstrip(b"\x00")
        entry = Entry(token, STATUSES[status] if status < len(STATUSES) else "invalid", exp,
                      contract.decode() if contract else None, allowance if flags & _PREPAID else None, bal_seq)
        entry.rsv = exp if flags & _RESERVED and flags & _PREPAID else None
        return entry

    def put(self, token, status, exp, contract=None, allowance=None, bal_seq=0, now=None, reserved=False):
        """Keep an online decision until exp (epoch s); now (None when the time is unknown)
        lets expired slots be reused first; reserved: allowance is a reservation. ValueError for
        what the slot cannot hold."""
        if not self.size:
            return
        if status not in STATUSES:
            raise ValueError("bad status %r" % (status,))
        name = b""
        if contract is not None:
            name = contract.encode()
            if not 0 < len(name) <= _CONTRACT:
                raise ValueError("contract id must be 1..%d bytes" % _CONTRACT)
        if not 0 < exp <= 0xFFFFFFFF or not 0 <= bal_seq <= 0xFFFFFFFF:
            raise ValueError("exp or bal_seq out of range")
        if allowance is not None and not -(1 << 31) <= allowance < (1 << 31):
            raise ValueError("allowance out of range")
        key = token_bytes(token)
        found, victim = self._scan(key, now)
        slot = found if found is not None else victim
        flags = 0 if allowance is None else (_PREPAID | _RESERVED if reserved else _PREPAID)
        struct.pack_into(_FORMAT, self._buf, 0, key, STATUSES.index(status), flags, exp, allowance or 0, bal_seq, name)
        with open(self.path, "r+b") as f:
            f.seek(slot * _SLOT)
            f.write(self._buf)
