# Compact signed records on flash. A record goes out as a compact JWS, base64url(header) "."
# base64url(payload) "." base64url(signature); on flash it is kept as its header and payload in
# dense form (dense.py) and the raw 64-byte signature, about a third of the JWS. base64url
# without padding is canonical, so the same JWS bytes come back when it is read (checked at
# commit: the JWS's middle part must be exactly the base64url of the payload given).
#
# Body of a CREC entry:
#   0  u16  header length (JSON bytes)
#   2  u16  payload length
#   4  u16  length of the dense header
#   6  dense header, dense payload, then the 64-byte signature (r || s)
import struct

from micropython import const

from crypto import b64url
from journal import dense

_SIG = const(64)
_SIG_B64 = const(86)
_PREFIX = const(6)
_CHUNK = const(192)  # payload bytes per base64url check: a multiple of 3
_OUT_PIECE = const(256)
_PIECE = const(192)  # dense bytes read from flash per step (a code is at most 66)
_TEXT = const(384)  # decoded text per step: a multiple of 3, room for the longest code's text
_DOT = const(46)


def b64_len(n):
    return (4 * n + 2) // 3


def split(signed, payload):
    """(header JSON, signature) when `signed` is the compact JWS of `payload` with a 64-byte
    signature, else None (such a record is kept as it is)."""
    n = len(signed)
    mid = n - _SIG_B64 - 1  # the dot before the signature
    if mid < 2 or signed[mid] != _DOT or len(payload) > 0xFFFF:
        return None
    i = 0
    while i < mid and signed[i] != _DOT:
        i += 1
    if i == mid or mid - i - 1 != b64_len(len(payload)):
        return None
    try:
        header = b64url.decode(bytes(signed[:i]))
        sig = b64url.decode(bytes(signed[mid + 1:]))
    except ValueError:
        return None
    if len(sig) != _SIG or len(header) > 0xFFFF:
        return None
    pv = memoryview(payload)
    pos = i + 1
    for k in range(0, len(pv), _CHUNK):
        e = b64url.encode(pv[k:k + _CHUNK])
        if not signed[pos:pos + len(e)] == e:
            return None
        pos += len(e)
    return header, sig


def pack(header, payload, sig):
    """The CREC body as a list of pieces of at most 256 bytes (about a third of the JWS in all):
    sealing leaves the heap in small holes, so no larger block is asked for."""
    dh = dense.pack(header)
    out = [bytearray(struct.pack("<HHH", len(header), len(payload), len(dh)))]

    def add(p):
        last = out[-1]
        room = _OUT_PIECE - len(last)
        if len(p) > room:
            last.extend(p[:room])
            p = p[room:]
            while len(p) > _OUT_PIECE:
                out.append(bytearray(p[:_OUT_PIECE]))
                p = p[_OUT_PIECE:]
            last = bytearray()
            out.append(last)
        last.extend(p)

    add(dh)
    for p in dense.encode(payload):
        add(p)
    add(sig)
    return out


def jws(body):
    """The JWS bytes of a whole CREC body (in RAM)."""
    hl, pl, dl = struct.unpack_from("<HHH", body)
    mv = memoryview(body)
    n = len(body)
    header = dense.decode(mv[_PREFIX:_PREFIX + dl])
    payload = dense.decode(mv[_PREFIX + dl:n - _SIG])
    if len(header) != hl or len(payload) != pl:
        raise dense.DenseError("compact record does not match its lengths")
    return b64url.encode(header) + b"." + b64url.encode(payload) + b"." + b64url.encode(mv[n - _SIG:])


class Reader:
    """The JWS of a CREC entry on flash, rebuilt in pieces: len() is the JWS's length, readinto()
    fills a buffer with its next bytes. The file is open only within each call (the journal
    appends to it in between). Its three buffers are its own, made once: a record read costs
    the heap one open file per call and one base64 block per step, not a copy per piece."""

    def __init__(self, path, off, blen):
        with open(path, "rb") as f:
            f.seek(off)
            pre = f.read(_PREFIX)
        if len(pre) != _PREFIX:
            raise OSError("record ends early on flash")
        hl, pl, dl = struct.unpack("<HHH", pre)
        self.path = path
        self._ends = (off + _PREFIX + dl, off + blen - _SIG, off + blen)
        self._want = (hl, pl, _SIG)
        self._n = b64_len(hl) + b64_len(pl) + _SIG_B64 + 2
        self._pos = off + _PREFIX
        self._sec = 0  # 0 header, 1 payload, 2 signature, 3 done
        self._got = 0  # decoded bytes of the current section
        self._buf = bytearray(_PIECE)  # dense bytes from flash
        self._txt = bytearray(_TEXT)  # decoded text not yet encoded: _t bytes
        self._t = 0
        self._out = bytearray(b64_len(_TEXT) + 1)  # characters to hand out: _out[_o:_ol]
        self._o = self._ol = 0

    def __len__(self):
        return self._n

    def readinto(self, mv):
        k = 0
        want = len(mv)
        f = None
        try:
            while k < want:
                if self._o >= self._ol:
                    if self._sec > 2:
                        break
                    if f is None:  # one open per call: opening costs more than reading
                        f = open(self.path, "rb")
                    self._step(f)
                    continue
                m = min(want - k, self._ol - self._o)
                mv[k:k + m] = memoryview(self._out)[self._o:self._o + m]
                k += m
                self._o += m
        finally:
            if f is not None:
                f.close()
        return k

    def _step(self, f):
        # flash -> text -> base64url characters in _out; the text's last bytes short of a
        # 3-byte group wait in _txt for the next step
        end = self._ends[self._sec]
        want = min(_PIECE, end - self._pos)
        buf = memoryview(self._buf)[:want]
        f.seek(self._pos)
        got = f.readinto(buf) if want else 0
        if got != want:
            raise OSError("record ends early on flash")
        t0 = self._t
        if self._sec == 2:
            self._txt[t0:t0 + got] = buf
            used, t = got, t0 + got
        else:
            used, t = dense.decode_to(buf, got, self._txt, t0, self._pos + got >= end)
            if not used and got:  # cannot happen with intact text (a piece holds any code): never spin
                raise dense.DenseError("compact record does not decode")
        self._pos += used
        self._got += t - t0
        done = self._pos >= end
        k = t if done else t // 3 * 3
        if done and self._got != self._want[self._sec]:
            raise dense.DenseError("compact record does not match its lengths")
        self._ol = b64url.encode_into(memoryview(self._txt)[:k], self._out)
        self._o = 0
        txt = self._txt
        for i in range(k, t):  # at most 2 bytes
            txt[i - k] = txt[i]
        self._t = t - k
        if done:
            self._got = 0
            self._sec += 1
            if self._sec < 3:
                self._out[self._ol] = _DOT
                self._ol += 1

