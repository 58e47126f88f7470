# PN532 frames (NXP UM0701-02, section 6.2), independent of the bus.
#
#   information frame  00 00 FF LEN LCS TFI PD0..PDn DCS 00
#                      LEN counts TFI+PD; LEN+LCS = 0 and TFI+PD+DCS = 0 (mod 256)
#   ACK                00 00 FF 00 FF 00
#   NACK               00 00 FF FF 00 00
#   error frame        00 00 FF 01 FF 7F 81 00  (the PN532 could not parse our frame)
# TFI is D4 host to PN532, D5 PN532 to host. Extended frames (LEN > 255) are never
# needed for card UIDs and are skipped as noise.
from micropython import const

TFI_HOST = const(0xD4)
TFI_PN532 = const(0xD5)
ERROR_TFI = const(0x7F)
MAX_DATA = const(64)  # TFI + data we accept; the longest answer we ask for is ~40 bytes

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"

# Parser events
NONE = const(0)
GOT_ACK = const(1)
GOT_NACK = const(2)
GOT_FRAME = const(3)
BAD_FRAME = const(4)  # checksum or length wrong: the caller resyncs or asks again (NACK)

_SEEK = const(0)
_START = const(1)  # seen 00, want FF
_LEN = const(2)
_LCS = const(3)
_DATA = const(4)
_DCS = const(5)


def build(buf, cmd, params=b""):
    """Encode a host command into buf; return the frame length."""
    n = len(params)
    length = n + 2
    if length > 255 or len(buf) < length + 7:
        raise ValueError("PN532 frame too long")
    buf[0] = 0
    buf[1] = 0
    buf[2] = 0xFF
    buf[3] = length
    buf[4] = (0x100 - length) & 0xFF
    buf[5] = TFI_HOST
    buf[6] = cmd
    total = TFI_HOST + cmd
    for i in range(n):
        b = params[i]
        buf[7 + i] = b
        total += b
    buf[7 + n] = (0x100 - total) & 0xFF
    buf[8 + n] = 0
    return n + 9


class Parser:
    """Byte-at-a-time frame scanner that resynchronises on the next start code.

    After GOT_FRAME, data[:length] holds TFI and the payload.
    """

    def __init__(self):
        self.data = bytearray(MAX_DATA)
        self.length = 0
        self.reset()

    def reset(self):
        self._state = _SEEK
        self._want = 0
        self._got = 0
        self._sum = 0

    def push(self, b):
        s = self._state
        if s == _SEEK:
            if b == 0:
                self._state = _START
            return NONE
        if s == _START:
            if b == 0xFF:
                self._state = _LEN
            elif b != 0:
                self._state = _SEEK
            return NONE
        if s == _LEN:
            self._want = b
            self._state = _LCS
            return NONE
        if s == _LCS:
            n = self._want
            self._state = _SEEK
            if n == 0 and b == 0xFF:
                return GOT_ACK
            if n == 0xFF and b == 0:
                return GOT_NACK
            if n == 0xFF and b == 0xFF:
                return NONE  # extended frame: not ours, skip it as noise
            if (n + b) & 0xFF or n == 0 or n > MAX_DATA:
                if b == 0:  # the bad LCS may be the preamble of the real frame
                    self._state = _START
                return BAD_FRAME
            self._got = 0
            self._sum = 0
            self._state = _DATA
            return NONE
        if s == _DATA:
            self.data[self._got] = b
            self._got += 1
            self._sum += b
            if self._got == self._want:
                self._state = _DCS
            return NONE
        # _DCS
        self._state = _SEEK
        if (self._sum + b) & 0xFF:
            return BAD_FRAME
        self.length = self._want
        return GOT_FRAME
