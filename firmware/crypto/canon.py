# Exact JSON bytes for signed documents: no whitespace, objects in a fixed key order (Ordered)
# or sorted, strings escaped as CPython's json.dumps(ensure_ascii=False) does. Only str, int,
# bool, None, list/tuple, dict, Ordered and Raw: anything else (a float, say) is refused, so the
# bytes never depend on a port's float formatting.
#
# The bytes are written by a Writer straight into one bytearray, not gathered as a list of string
# fragments: sealing a record runs at the end of a session on a fragmented heap, and what it needs
# there should be a few small blocks, not a growing list, its joined string and the encoded copy.
# One Writer is kept between uses (take/give): the charger makes it first thing at boot with
# reserve(4096), while the heap is whole, and seals records in it without copying them out
# (billing/record.py seal with commit: OCMF string, payload and JWS side by side, journaled from
# memoryviews). Elsewhere (tools, tests) the first take() makes a 3 KiB one. A document that does
# not fit spills into a temporary larger buffer once; the kept one is used again afterwards.
from micropython import const

SIZE = const(3072)
# The letter after the backslash for the control characters 0..31 ("u": \u00XX); '"' and '\'
# escape as themselves.
_CTRL = b"uuuuuuuubtnufruuuuuuuuuuuuuuuuuu"
_HEX = b"0123456789abcdef"


class Ordered:
    """An object whose keys are written in the given order: Ordered([(key, value), ...])."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


class Raw:
    """A JSON number token written verbatim (e.g. an exact decimal "12.345")."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


class Writer:
    """Canonical JSON (and whatever else the caller appends) in one reusable bytearray.

    buf/mv: the buffer and a memoryview of it; pos: bytes written. The home buffer stays for the
    Writer's life; room() moves to a larger temporary one when a document does not fit, and
    reset() goes back home.
    """

    __slots__ = ("buf", "mv", "pos", "_home", "_home_mv")

    def __init__(self, size=SIZE):
        self.buf = self._home = bytearray(size)
        self.mv = self._home_mv = memoryview(self.buf)
        self.pos = 0

    def reset(self):
        self.buf = self._home
        self.mv = self._home_mv
        self.pos = 0

    def room(self, n):
        """Make sure n more bytes fit (one copy into a larger buffer when they do not)."""
        need = self.pos + n
        size = len(self.buf)
        if need > size:
            size = max(need, size + size // 2)
            size = (size + 255) & ~255
            buf = bytearray(size)
            buf[: self.pos] = self.mv[: self.pos]
            self.buf = buf
            self.mv = memoryview(buf)

    def getvalue(self):
        """The bytes written, as a bytes object of their exact size (a copy)."""
        return bytes(self.mv[: self.pos])

    def raw(self, data):
        """Append bytes-like data verbatim."""
        n = len(data)
        self.room(n)
        p = self.pos
        self.mv[p : p + n] = data
        self.pos = p + n

    def byte(self, c):
        self.room(1)
        self.buf[self.pos] = c
        self.pos += 1

    def num(self, v):
        self.raw(b"%d" % v)

    def text(self, data):
        """Append UTF-8 bytes data as the inside of a JSON string: '"', '\\' and control characters
        escaped, everything else (non-ASCII too) as it is. data may be a memoryview of an earlier
        part of this buffer."""
        n = len(data)
        self.room(n)
        buf = self.buf
        p = self.pos
        self.mv[p : p + n] = data  # most strings need no escape: one copy, then a scan
        i = 0
        for c in data:
            if c < 32 or c == 34 or c == 92:
                break
            i += 1
        if i == n:
            self.pos = p + n
            return
        # From the first escape on, rewrite byte by byte from data (no slices, no fragments).
        extra = 0
        for k in range(i, n):
            c = data[k]
            if c < 32:
                extra += 1 if _CTRL[c] != 117 else 5
            elif c == 34 or c == 92:
                extra += 1
        self.pos = p + i
        self.room(n - i + extra)
        buf = self.buf
        q = self.pos
        for k in range(i, n):
            c = data[k]
            if c < 32 or c == 34 or c == 92:
                buf[q] = 92
                e = _CTRL[c] if c < 32 else c
                buf[q + 1] = e
                q += 2
                if e == 117:  # \u00XX
                    buf[q] = 48
                    buf[q + 1] = 48
                    buf[q + 2] = _HEX[c >> 4]
                    buf[q + 3] = _HEX[c & 15]
                    q += 4
            else:
                buf[q] = c
                q += 1
        self.pos = q

    def string(self, s):
        """Append the str s as a JSON string."""
        self.byte(34)
        self.text(s.encode())  # MicroPython: shares s's bytes, no copy
        self.byte(34)

    def value(self, v):
        """Append any allowed value (see the top of the file); TypeError for anything else."""
        if v is None:
            self.raw(b"null")
        elif v is True:
            self.raw(b"true")
        elif v is False:
            self.raw(b"false")
        elif isinstance(v, str):
            self.string(v)
        elif isinstance(v, int):
            self.num(v)
        elif isinstance(v, Raw):
            self.raw(v.text.encode())
        elif isinstance(v, (list, tuple)):
            self.byte(91)
            first = True
            for item in v:
                if not first:
                    self.byte(44)
                first = False
                self.value(item)
            self.byte(93)
        elif isinstance(v, dict):
            self.byte(123)
            first = True
            for k in sorted(v):
                if not first:
                    self.byte(44)
                first = False
                self._pair(k, v[k])
            self.byte(125)
        elif isinstance(v, Ordered):
            self.byte(123)
            first = True
            for k, item in v.pairs:
                if not first:
                    self.byte(44)
                first = False
                self._pair(k, item)
            self.byte(125)
        else:
            raise TypeError("cannot encode %s in a signed document" % type(v).__name__)

    def _pair(self, k, v):
        if not isinstance(k, str):
            raise TypeError("JSON object keys must be strings")
        self.string(k)
        self.byte(58)
        self.value(v)


_kept = None  # the Writer kept between uses; None while it is in use (or before the first)


def take():
    """A reset Writer: the kept one, or a new one when it is in use (or not made yet)."""
    global _kept
    w = _kept
    if w is None:
        return Writer()
    _kept = None
    return w


def give(w):
    """Hand a Writer from take() back; it is kept for the next take()."""
    global _kept
    w.reset()
    _kept = w


def reserve(size=SIZE):
    """Make the kept Writer now rather than at the first take(): the charger does it first thing
    at boot, sized for a record's OCMF string, payload and JWS together (RECORD_SIZE)."""
    global _kept
    if _kept is None:
        _kept = Writer(size)


def dumps(value):
    """The exact UTF-8 JSON bytes of value."""
    w = take()
    try:
        w.value(value)
        return w.getvalue()
    finally:
        give(w)
