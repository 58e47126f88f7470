# Journal entry framing. Every entry carries its kind, sequence number, lengths and two CRC-32s,
# so a torn or bit-flipped entry is recognised and the entries after it are still found.
#
#   0  magic  E5 4A
#   2  kind   u8
#   3  klen   u8    length of the key: small identifying data protected together with the header
#   4  blen   u32   length of the body (little endian, as every field)
#   8  seq    u32   record sequence number (records) or the next record's number (other kinds)
#  12  bcrc   u32   CRC-32 of the body
#  16  hcrc   u32   CRC-32 of bytes 0..15 and the key
#  20  key, then body
#
# The header CRC is separate from the body CRC so that a damaged body still leaves the entry's
# length (to skip it exactly), its seq, and its key (record hash, session id) trustworthy.
import struct
from micropython import const

try:
    from binascii import crc32
except ImportError:  # ports built without binascii.crc32: table-driven CRC-32 (IEEE 802.3)
    crc32 = None

HEAD = const(20)
MAX_KEY = const(255)
MAX_BODY = const(65536)

# Kind codes differ from each other in at least four bits, so one flipped bit cannot turn an
# entry into another kind: recovery can still tell a damaged record from a damaged checkpoint.
BAD = const(0)  # not an entry: a damaged region up to the next good header (or the end)
BASE = const(0x11)  # first entry of a segment: chain state (older firmware: and the open sessions)
OPEN = const(0x22)  # session start, journaled before the relay closes (a slot file oK; older: segments)
CHECK = const(0x44)  # session checkpoint: meter reading, running cost (a slot file cK; older: segments)
DROP = const(0x88)  # session ended without a record (older firmware; now the slot files go)
REC = const(0xF0)  # finished signed record (closes its session in the same entry), as sent
CREC = const(0x0F)  # the same, compact: header and payload in dense form, raw signature (crec.py)
_KINDS = (BASE, OPEN, CHECK, DROP, REC, CREC)

_M0 = const(0xE5)
_M1 = const(0x4A)
_MAGIC = b"\xe5\x4a"
_CHUNK = const(256)

if crc32 is None:
    _TABLE = []
    for _n in range(256):
        _c = _n
        for _ in range(8):
            _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
        _TABLE.append(_c)

    def crc32(data, crc=0):
        crc ^= 0xFFFFFFFF
        for b in data:
            crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


def pack_head(head, kind, seq, key, body):
    """Fill the 20-byte `head` for an entry; returns the entry's total length. body: bytes-like,
    or a list of pieces written one after the other."""
    klen = len(key)
    if isinstance(body, list):
        blen = bcrc = 0
        for p in body:
            blen += len(p)
            bcrc = crc32(p, bcrc)
    else:
        blen, bcrc = len(body), crc32(body)
    if klen > MAX_KEY or blen > MAX_BODY:
        raise ValueError("journal entry too large: key %d, body %d bytes" % (klen, blen))
    head[0] = _M0
    head[1] = _M1
    struct.pack_into("<BBIII", head, 2, kind, klen, blen, seq, bcrc)
    struct.pack_into("<I", head, 16, crc32(key, crc32(memoryview(head)[:16])))
    return HEAD + klen + blen


class Reader:
    """Walks the entries of one open segment file, from `pos` up to `size` bytes.

    next() returns (offset, end, kind, seq, key) of the next entry whose header is good; kind is
    BAD for a damaged region, which runs to the next good header or to `size` (a torn tail).
    None at the end (iterating stops there). read_body()/verify_body() then check the body of
    that entry.
    """

    def __init__(self, f, size, pos=0):
        self.f = f
        self.size = size
        self.pos = pos
        self.bytes_read = 0
        self._head = bytearray(HEAD)
        self._buf = bytearray(_CHUNK)
        self._body = None  # (offset, length, crc) of the last entry's body

    def _read_into(self, buf):
        n = self.f.readinto(buf)
        self.bytes_read += n
        return n

    def _head_at(self, pos):
        # (kind, blen, seq, bcrc, key) of a valid header whose entry fits the file, else None.
        head = self._head
        if pos + HEAD > self.size:
            return None
        self.f.seek(pos)
        if self._read_into(head) != HEAD or head[0] != _M0 or head[1] != _M1:
            return None
        kind, klen, blen, seq, bcrc, hcrc = struct.unpack_from("<BBIIII", head, 2)
        if kind not in _KINDS or blen > MAX_BODY or pos + HEAD + klen + blen > self.size:
            return None
        key = self.f.read(klen) if klen else b""
        self.bytes_read += klen
        if len(key) != klen or crc32(key, crc32(memoryview(head)[:16])) != hcrc:
            return None
        return kind, blen, seq, bcrc, key

    def _resync(self, pos):
        # Next offset holding a valid header, or the end: the damaged bytes in between are skipped.
        buf = self._buf
        while pos + HEAD <= self.size:
            self.f.seek(pos)
            n = self._read_into(buf)
            if n < 2:
                break
            chunk = bytes(memoryview(buf)[:n])
            i = chunk.find(_MAGIC)
            while i >= 0:
                if self._head_at(pos + i) is not None:
                    return pos + i
                i = chunk.find(_MAGIC, i + 1)
            pos += n - 1  # keep one byte: the magic may straddle two chunks
        return self.size

    def __iter__(self):
        return self

    def __next__(self):
        e = self.next()
        if e is None:
            raise StopIteration
        return e

    def next(self):
        pos = self.pos
        self._body = None
        if pos >= self.size:
            return None
        h = self._head_at(pos)
        if h is None:
            end = self._resync(pos + 1)
            self.pos = end
            return pos, end, BAD, 0, b""
        kind, blen, seq, bcrc, key = h
        end = pos + HEAD + len(key) + blen
        self._body = (end - blen, blen, bcrc)
        self.pos = end
        return pos, end, kind, seq, key

    def read_body(self):
        """The last entry's body, or None when its CRC fails."""
        off, n, crc = self._body
        self.f.seek(off)
        body = self.f.read(n) if n else b""
        self.bytes_read += len(body)
        return body if len(body) == n and crc32(body) == crc else None

    def body_at(self):
        """(offset, length) of the last entry's body in the file."""
        return self._body[0], self._body[1]

    def verify_body(self):
        """Whether the last entry's body passes its CRC, read in small chunks."""
        off, n, want = self._body
        self.f.seek(off)
        mv = memoryview(self._buf)
        crc = 0
        while n > 0:
            got = self._read_into(mv[: min(n, _CHUNK)])
            if got <= 0:
                return False
            crc = crc32(mv[:got], crc)
            n -= got
        return crc == want
