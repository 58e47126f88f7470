# Prepaid spends the backend has not yet seen.
#
# The backend's list entry carries this charger's allowance for the card (its share of the
# balance, docs/prepaid.md) and bal_seq, the highest device record seq that allowance already
# includes. The device appends (token, seq, charged) for each prepaid session it closes, so
# available = allowance - charges of this token with seq > bal_seq. An online reservation is
# kept the same way, with bal_seq = the last seq before it was granted: used_since tells that a
# session has used it.
# 24-byte entries in one file; the scan is bounded by the number of prepaid sessions not yet
# folded into a list the backend pushed, and compact() drops the ones it has.
# A spend is booked just before its record is journaled, so a power cut between the two costs
# the driver nothing he did not get: the session is closed again at boot under the same seq,
# and a later entry for the same seq replaces the earlier one.
import os
import struct

from micropython import const

from billing.authlist import token_bytes

_ENTRY = const(24)
_FORMAT = "<16sIi"
_COMPACT_AT = const(512)


class Ledger:
    def __init__(self, path):
        self.path = path
        self._buf = bytearray(_ENTRY)
        try:
            self.count = os.stat(path)[6] // _ENTRY
        except OSError:
            self.count = 0

    def _entries(self):
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            for _ in range(self.count):
                if f.readinto(self._buf) != _ENTRY:
                    return
                yield struct.unpack(_FORMAT, self._buf)

    def spent_since(self, token, bal_seq):
        key = token_bytes(token)
        total = 0
        last_seq = last = 0
        for tok, seq, charged in self._entries():
            if tok == key and seq > bal_seq:
                if seq == last_seq:
                    total -= last  # booked again for the same record: the later charge replaces it
                total += charged
                last_seq, last = seq, charged
        return total

    def used_since(self, token, seq):
        """Whether a session of token closed with a record seq later than seq (even one that
        charged nothing): a backend reservation pays for one session (billing/authorize.py)."""
        key = token_bytes(token)
        for tok, s, _ in self._entries():
            if s > seq and tok == key:
                return True
        return False

    def record(self, token, seq, charged):
        """Called when a prepaid session's record (seq) is committed with its charge."""
        if not isinstance(charged, int) or charged < 0:
            raise ValueError("charge must be a non-negative integer")
        with open(self.path, "ab") as f:
            f.write(struct.pack(_FORMAT, token_bytes(token), seq, charged))
        self.count += 1

    def compact(self, authlist):
        """Drop spends that the list's balances already include (after a list update)."""
        if self.count < _COMPACT_AT:
            return
        import binascii

        keep = []
        for tok, seq, charged in self._entries():
            entry = authlist.lookup(binascii.hexlify(tok).decode())
            if entry is not None and entry.balance is not None and seq <= entry.bal_seq:
                continue
            keep.append(struct.pack(_FORMAT, tok, seq, charged))
        tmp = self.path + ".new"
        with open(tmp, "wb") as f:
            for item in keep:
                f.write(item)
        os.rename(tmp, self.path)
        self.count = len(keep)
