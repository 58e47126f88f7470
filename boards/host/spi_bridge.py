# An SPI bus carried over TCP, for SPI peripherals emulated on the host (the MFRC522 and PN532
# emulators in sim/, served by sim/bus_bridge.py). It offers the parts of machine.SPI the
# drivers use (write, readinto, write_readinto) and a chip-select pin as `cs`.
#
# Wire protocol, one message per bus action:
#   "S"                 chip select asserted (CS low)
#   "D"                 chip select released (CS high)
#   "W" len:u16be data  clock data out, ignore what comes back (no answer)
#   "X" len:u16be data  clock data out; the peer answers with exactly len bytes clocked in
# Bytes travel in wire order, most significant bit = first bit on the wire. lsb_first=True is
# machine.SPI's firstbit=SPI.LSB: each byte is shifted out (and in) least significant bit first.
# Actions that need no answer are queued and go out with the next one that does (or flush()),
# so a register write costs no round trip and Nagle's algorithm never holds a lone write back.
from micropython import const

from tcp_bridge import TcpBridge

_QUEUE_MAX = const(512)


def _reverse(b):
    r = 0
    for _ in range(8):
        r = (r << 1) | (b & 1)
        b >>= 1
    return r


class _ChipSelect:
    def __init__(self, bridge):
        self._bridge = bridge
        self._level = 1

    def value(self, v=None):
        if v is None:
            return self._level
        level = 1 if v else 0
        if level != self._level:
            self._bridge._queue(0x44 if level else 0x53)  # "D" / "S"
            self._level = level

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SpiBridge(TcpBridge):
    def __init__(self, url, timeout_ms=200, lsb_first=False):
        super().__init__(url, timeout_ms)
        self.lsb_first = lsb_first
        self._out = bytearray()  # queued actions; bounded by flushing at _QUEUE_MAX
        self._scratch = bytearray(64)
        self.cs = _ChipSelect(self)

    def _drop(self):
        self._out = bytearray()
        super()._drop()
        self.cs._level = 1

    def _queue(self, op, data=None):
        out = self._out
        out.append(op)
        if data is not None:
            n = len(data)
            out.append(n >> 8)
            out.append(n & 0xFF)
            if self.lsb_first:
                out.extend(bytes(_reverse(b) for b in data))
            else:
                out.extend(data)
        if len(out) > _QUEUE_MAX:
            self.flush()

    def flush(self):
        if not self._out:
            return
        out = self._out
        self._out = bytearray()
        self._send(out)

    def write(self, buf):
        self._queue(0x57, buf)  # "W"

    def write_readinto(self, wbuf, rbuf):
        if len(wbuf) != len(rbuf):
            raise ValueError("write_readinto: buffers differ in length")
        self._queue(0x58, wbuf)  # "X"
        self.flush()
        self._recv_into(rbuf)
        if self.lsb_first:
            for i in range(len(rbuf)):
                rbuf[i] = _reverse(rbuf[i])

    def readinto(self, buf, write=0):
        n = len(buf)
        if n > len(self._scratch):
            raise ValueError("readinto: at most %d bytes" % len(self._scratch))
        out = memoryview(self._scratch)[:n]
        for i in range(n):
            out[i] = write
        self.write_readinto(out, buf)

    def close(self):
        try:
            self.flush()
        except OSError:
            pass
        self._drop()
