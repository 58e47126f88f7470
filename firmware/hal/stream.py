# Byte streams to UART peripherals (meter bus, NFC reader), addressed by URL.
#
#   tcp://host:port   RTU/HSU framing carried over TCP (RS-485/serial Ethernet gateways,
#                     ser2net, the host test peers); works on every port.
#   anything else     handed to the board: a device path on the host, "uart1" on the ESP32.
#
# Contract shared by every stream: write(buf) sends all of buf or raises OSError;
# readinto(buf) never blocks and returns the byte count (0 when nothing is waiting);
# discard() drops pending input; close(). Drivers poll with short asyncio sleeps under
# their own deadlines, so a silent peer never blocks the event loop.
import errno
import socket
import time

from micropython import const

_CONNECT_TIMEOUT_S = 0.3  # a LAN gateway answers in milliseconds; never stall the loop longer
_RECONNECT_GAP_MS = const(1000)


def char_time_us(baudrate, bits=8, parity=None, stop=1):
    """Time of one character on the wire: start bit + data + parity + stop, in microseconds."""
    nbits = 1 + bits + (1 if parity else 0) + stop
    return (nbits * 1000000 + baudrate - 1) // baudrate


def parse_tcp_url(url):
    if not url.startswith("tcp://"):
        raise ValueError("not a tcp:// URL: %s" % url)
    hostport = url[6:].split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("bad tcp URL %r: want tcp://host:port" % url)
    return host, int(port)


class TcpStream:
    def __init__(self, url, baudrate=9600, bits=8, parity=None, stop=1):
        self.url = url
        self.host, self.port = parse_tcp_url(url)
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self._sock = None
        self._last_try = None

    def _connect(self):
        if self._sock is not None:
            return self._sock
        now = time.ticks_ms()
        if self._last_try is not None and time.ticks_diff(now, self._last_try) < _RECONNECT_GAP_MS:
            raise OSError("%s: not connected (retrying)" % self.url)
        self._last_try = now
        addr = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0][-1]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(_CONNECT_TIMEOUT_S)
            sock.connect(addr)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise OSError("%s: cannot connect (%s)" % (self.url, exc))
        self._sock = sock
        return sock

    def _drop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def write(self, buf):
        sock = self._connect()
        view = memoryview(buf)
        sent = 0
        deadline = time.ticks_add(time.ticks_ms(), 200)
        while sent < len(view):
            try:
                n = sock.send(view[sent:])
            except OSError as exc:
                if exc.args and exc.args[0] == errno.EAGAIN:  # socket buffer full
                    n = 0
                else:
                    self._drop()
                    raise
            sent += n or 0
            if sent < len(view) and time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                self._drop()
                raise OSError("%s: write stalled" % self.url)
        return sent

    def readinto(self, buf):
        sock = self._connect()
        try:
            n = sock.readinto(buf)
        except OSError as exc:
            if exc.args and exc.args[0] == errno.EAGAIN:
                return 0
            self._drop()
            raise
        if n is None:
            return 0
        if n == 0 and len(buf):  # orderly shutdown by the peer
            self._drop()
            raise OSError("%s: connection closed by peer" % self.url)
        return n

    def discard(self):
        if self._sock is None:
            return
        scratch = bytearray(64)
        for _ in range(64):  # bounded: a babbling peer cannot keep us here
            if not self.readinto(scratch):
                return

    def close(self):
        self._drop()


def open_stream(url, baudrate=9600, bits=8, parity=None, stop=1):
    """Open the byte stream named by url; see the module comment for the contract."""
    if not isinstance(url, str) or not url:
        raise ValueError("stream URL must be a non-empty string")
    if parity not in (None, "N", "E", "O"):
        raise ValueError("parity must be N, E or O")
    if parity == "N":
        parity = None
    if url.startswith("tcp://"):
        return TcpStream(url, baudrate, bits, parity, stop)
    import board

    return board.open_uart(url, baudrate, bits, parity, stop)
