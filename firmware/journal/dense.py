# Dense form of the JSON the journal keeps (record payloads, JWS headers, session starts and
# checkpoints): the same bytes with the phrases of our own documents replaced by one or two bytes
# and runs of hex digits (hashes, tokens, signatures, timestamps) packed two digits to a byte.
# Exactly reversible for any input; about a third of a record's size.
#
# Codes: JSON text never holds raw bytes below 0x20, so they are free for codes.
#   0x00 b        the byte b itself (an input byte below 0x20: never in JSON, but any input works)
#   0x01..0x1A    PHRASES[code - 1]
#   0x1B i        PHRASES[26 + i]
#   0x1C n ..     2n lower-case hex digits [0-9a-f] packed into n bytes (n <= 64)
#   0x1D n ..     2n upper-case hex digits [0-9A-F] packed into n bytes
#   0x1E, 0x1F    never written: a decoder meeting one has damaged input
#
# PHRASES is part of the flash format: append only, never reorder or change an entry (journals
# written by older firmware are read with it). No phrase starts with a hex digit, so a hex run is
# never split by a phrase start.
import binascii

from micropython import const

_ESC = const(0x00)
_EXT = const(0x1B)
_LOW = const(0x1C)
_UP = const(0x1D)
_SHORT = const(26)
_MAX_RUN = const(64)  # packed bytes per hex code: a token stays well under a read chunk
_MIN_DIGITS = const(6)  # shorter runs cost more packed than plain
_ROOM = const(130)  # the longest text of one code: a hex run (128), longer than any phrase

PHRASES = (
    # the 26 one-byte codes: the most frequent in a session record
    b'\\",\\"', b'","', b'":"', b',"excl":', b',"incl":', b',"qty":', b',"price":', b',"from":', b',"to":',
    b'},{"billed":', b',"vat":', b',"unit":"Wh"', b',"unit":"s"', b',"dim":"ENERGY","el":', b',"dim":"TIME","el":',
    b',"dim":"PARKING_TIME","el":', b',"dim":"FLAT","el":', b',"unit":"session"', b'null', b',000+0000 ',
    b'\\",\\"RV\\":', b',\\"RI\\":\\"01-00:01.08.00\\",\\"RU\\":\\"kWh\\",\\"ST\\":\\"G\\"}', b'\\",\\"TX\\":\\"',
    b'","serial":"', b'","wh":', b',"tq":"',
    # record payload (billing/record.py order)
    b'{"v":1,"dev":"', b'","seq":', b',"prev":"', b'","token":"', b'","auth":"', b'","contract":', b',"tariff":{"id":"',
    b'","ver":', b'},"start":{"t":', b'},"stop":{"t":', b',"reason":"', b'"},"meter":{"model":"', b'"},"energy_wh":',
    b',"cost":{"currency":"', b',"lines":[{"billed":', b',"lines":[]', b'}],"flags":[', b'},"flags":[', b'],"fw":"',
    b'","ocmf":"OCMF|{\\"FV\\":\\"1.0\\",\\"GI\\":\\"EVC-FIRMWARE\\",\\"GS\\":\\"', b'\\",\\"GV\\":\\"',
    b'\\",\\"PG\\":\\"T', b'\\",\\"MV\\":\\"', b'\\",\\"MM\\":\\"', b'\\",\\"MS\\":\\"', b'\\",\\"IS\\":true,\\"IT\\":\\"UNDEFINED',
    b'\\",\\"ID\\":\\"', b'\\",\\"RD\\":[{\\"TM\\":\\"', b',{\\"TM\\":\\"', b']}|{\\"SA\\":\\"ECDSA-secp256r1-SHA256\\",\\"SD\\":\\"',
    b'\\"}"', b',"charged":', b',"parking_s":', b',"rsv":', b'"list"', b'"cache"', b'"online"', b'"offline"', b'"adhoc"',
    b'"card"', b'"unplugged"', b'"power-loss"', b'"time-unsynced"', b'"meter-fault"', b'"EUR"',
    # JWS header (crypto/keys.py)
    b'{"alg":"ES256","kid":"',
    # session start and checkpoint (app/session.py, through the journal's compact json)
    b'{"token":"', b',"available":', b',"rsv":null', b',"cap_wh":', b',"cap_cost":', b',"tariff":"', b',"tariff_ver":',
    b',"t":', b',"wh":', b',"model":"', b',"serial":"', b'{"t":', b',"cost":', b'"}',
)

# Tables derived from PHRASES, written out so that a frozen image keeps them in flash, not in the
# heap (host_tests/journal/test_compact.py derives them again and compares). _CLASS, per byte:
# bit 0 a phrase may start with it (bits 4-6: its row in _BY_FIRST), bit 1 [0-9a-f], bit 2 [0-9A-F],
# bit 3 below 0x20. _BY_FIRST: per first byte, the phrase indices, longest first (ties: lower index).
_CLASS = (
    b'\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08\x08'
    b'\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x11\x00\x00\x00\x06\x06\x06\x06\x06\x06\x06\x06\x06\x06\x00\x00\x00\x00\x00\x00'
    b'\x00\x04\x04\x04\x04\x04\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00!1\x00\x00'
    b'\x00\x02\x02\x02\x02\x02\x02\x00\x00\x00\x00\x00\x00\x00A\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00Q\x00a\x00\x00'
    b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
    b'\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
)
_BY_FIRST = (b'-%&D\x1fE\x17C\x1dB\x1e?\x1b!>\x18=@<AF\x01\x02U', b"\x15\x0f\r'(\x0e\x10\x11 N:I\x0bL\x0c$)69JMR\x13KQ\x06\x1c\x03\x04\x07T\x05\n\x19;\x08PO", b'35/\x16.0124\x14\x008', b'7,', b'\x12', b'G\x1aHS', b'"#\t*+')
_HEX_LOW = b"0123456789abcdef"
_HEX_UP = b"0123456789ABCDEF"
_CODE = b"\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a"


class DenseError(ValueError):
    pass


def _phrase_at(mv, i, n):
    # index of the longest phrase at mv[i:], or -1 (compared in place: no slice is made)
    for k in _BY_FIRST[_CLASS[mv[i]] >> 4]:
        p = PHRASES[k]
        m = len(p)
        if i + m <= n:
            j = 1
            while j < m and mv[i + j] == p[j]:
                j += 1
            if j == m:
                return k
    return -1


def encode(data):
    """Yield the dense form of data (bytes-like) in pieces: slices of data for plain text,
    small bytes for codes. Deterministic: two passes give the same pieces (length and CRC first,
    then the write, with no copy of the whole in RAM)."""
    mv = memoryview(data)
    n = len(mv)
    cls = _CLASS
    i = plain = 0
    while i < n:
        while i < n and not cls[mv[i]]:  # plain text: the bulk, kept to a tight loop
            i += 1
        if i >= n:
            break
        k = cls[mv[i]]
        if k & 8:
            if plain < i:
                yield mv[plain:i]
            yield bytes((_ESC, mv[i]))
            i += 1
            plain = i
            continue
        if k & 1:
            p = _phrase_at(mv, i, n)
            if p >= 0 and i + 1 < n and cls[mv[i + 1]] & 1:
                q = _phrase_at(mv, i + 1, n)  # a longer phrase one byte on wins: '","excl":'
                if q >= 0 and len(PHRASES[q]) > len(PHRASES[p]) + 1:
                    p = -1
            if p >= 0:
                if plain < i:
                    yield mv[plain:i]
                yield _CODE[p + 1:p + 2] if p < _SHORT else bytes((_EXT, p - _SHORT))
                i += len(PHRASES[p])
                plain = i
                continue
            i += 1
            continue
        # a run of hex digits: the longer of the lower- and the upper-case reading
        lo = up = i
        while lo < n and cls[mv[lo]] & 2:
            lo += 1
        while up < n and cls[mv[up]] & 4:
            up += 1
        end, code = (lo, _LOW) if lo >= up else (up, _UP)
        if end - i < _MIN_DIGITS:
            i = end  # plain digits: none of them starts a phrase
            continue
        if plain < i:
            yield mv[plain:i]
        end = i + (end - i) // 2 * 2  # an odd last digit stays plain
        while i < end:
            j = min(end, i + 2 * _MAX_RUN)
            yield bytes((code, (j - i) // 2)) + binascii.unhexlify(mv[i:j])
            i = j
        plain = i
    if plain < n:
        yield mv[plain:n]


def pack(data):
    """The whole dense form of data, as bytes (for small texts)."""
    return b"".join(bytes(p) for p in encode(data))


def decode_to(src, n, dst, p, final=False):
    """Write the text of the codes in src[:n] into the bytearray dst from index p on, as far as
    it fits, allocating nothing but the result. Returns (bytes of src used, new p). A code cut
    by the end of src waits for more, unless final; a code whose text does not fit waits for
    room (dst with 130 bytes free always takes the next one)."""
    i = 0
    cap = len(dst)
    while i < n:
        c = src[i]
        if c >= 0x20:  # plain text, byte by byte: the scan visits each byte anyway, a slice is an object
            if p >= cap:
                break
            dst[p] = c
            p += 1
            i += 1
            continue
        if c == _ESC:
            if i + 1 >= n or p >= cap:
                break
            dst[p] = src[i + 1]
            p += 1
            i += 2
        elif c == _LOW or c == _UP:
            if i + 1 >= n:
                break
            m = src[i + 1]
            if not 0 < m <= _MAX_RUN:
                raise DenseError("bad hex run")
            if i + 2 + m > n or p + 2 * m > cap:
                break
            digits = _HEX_LOW if c == _LOW else _HEX_UP
            for k in range(i + 2, i + 2 + m):  # digit by digit: hexlify would make two objects
                b = src[k]
                dst[p] = digits[b >> 4]
                dst[p + 1] = digits[b & 15]
                p += 2
            i += 2 + m
        else:
            if c == _EXT:
                if i + 1 >= n:
                    break
                k = _SHORT + src[i + 1]
                if k >= len(PHRASES):
                    raise DenseError("unknown phrase %d" % k)
                used = 2
            elif 0 < c <= _SHORT:
                k = c - 1
                used = 1
            else:
                raise DenseError("bad code %d" % c)
            t = PHRASES[k]
            if p + len(t) > cap:
                break
            dst[p:p + len(t)] = t
            p += len(t)
            i += used
    if final and i < n and cap - p >= _ROOM:
        raise DenseError("dense text ends inside a code")
    return i, p


def decode(data):
    """The text of a whole dense form (bytes)."""
    src = memoryview(data)
    n = len(src)
    dst = bytearray(2 * _ROOM)
    out = bytearray()
    i = 0
    while i < n:
        used, p = decode_to(src[i:], n - i, dst, 0, True)
        out.extend(dst[:p])
        i += used
    return bytes(out)
