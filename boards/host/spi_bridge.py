# An SPI bus carried over TCP, for SPI peripherals emulated on the host (the MFRC522
# emulator in sim/mfrc522_emu.py). It offers the parts of machine.SPI the
# drivers use (write, readinto, write_readinto) and a chip-select pin as `cs`.
#
# Wire protocol, one message per bus action:
#   "S"                 chip select asserted (CS low)
#   "D"                 chip select released (CS high)
#   "W" len:u16be data  clock data out, ignore what comes back (no answer)
#   "X" len:u16be data  clock data out; the peer answers with exactly len bytes clocked in
# A real SPI transfer takes microseconds and blocks, so this one blocks too, but never
# longer than timeout_ms; a dead peer raises OSError like a broken bus. Actions that need
# no answer are queued and go out with the next one that does (or flush()), so a register
# write costs no round trip and Nagle's algorithm never holds a lone small write back.
import socket

from micropython import const

from hal.stream import parse_tcp_url

_QUEUE_MAX = const(512)


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


class SpiBridge:
    def __init__(self, url, timeout_ms=200):
        self.url = url
        self.host, self.port = parse_tcp_url(url)
        self.timeout_ms = timeout_ms
        self._sock = None
        self._out = bytearray()  # queued actions; bounded by flushing at _QUEUE_MAX
        self._scratch = bytearray(64)
        self.cs = _ChipSelect(self)

    def _connect(self):
        if self._sock is None:
            addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(self.timeout_ms / 1000)
            try:
                sock.connect(addr)
            except OSError as exc:
                sock.close()
                raise OSError("%s: cannot connect (%s)" % (self.url, exc))
            self._sock = sock
        return self._sock

    def _drop(self):
        self._out = bytearray()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.cs._level = 1

    def _queue(self, op, data=None):
        out = self._out
        out.append(op)
        if data is not None:
            n = len(data)
            out.append(n >> 8)
            out.append(n & 0xFF)
            out.extend(data)
        if len(out) > _QUEUE_MAX:
            self.flush()

    def flush(self):
        if not self._out:
            return
        sock = self._connect()
        try:
            view = memoryview(self._out)
            while len(view):
                n = sock.send(view)
                view = view[n:]
        except OSError:
            self._drop()
            raise
        finally:
            self._out = bytearray()

    def _recv_into(self, buf):
        view = memoryview(buf)
        got = 0
        try:
            while got < len(view):
                n = self._sock.readinto(view[got:])
                if not n:
                    raise OSError("%s: bridge closed" % self.url)
                got += n
        except OSError:
            self._drop()
            raise

    def write(self, buf):
        self._queue(0x57, buf)  # "W"

    def write_readinto(self, wbuf, rbuf):
        if len(wbuf) != len(rbuf):
            raise ValueError("write_readinto: buffers differ in length")
        self._queue(0x58, wbuf)  # "X"
        self.flush()
        self._recv_into(rbuf)

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
