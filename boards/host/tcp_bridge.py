# What the host's bus bridges (spi_bridge.py, i2c_bridge.py) share: a blocking TCP connection to
# an emulated peripheral (sim/bus_bridge.py). A real bus transfer takes microseconds and blocks,
# so these block too, but never longer than timeout_ms: a dead or silent peer raises OSError like
# a broken bus, and the next transfer connects again.
import socket

from hal.stream import parse_tcp_url


class TcpBridge:
    def __init__(self, url, timeout_ms=200):
        self.url = url
        self.host, self.port = parse_tcp_url(url)
        self.timeout_ms = timeout_ms
        self._sock = None

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
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, data):
        sock = self._connect()
        try:
            view = memoryview(data)
            while len(view):
                view = view[sock.send(view):]
        except OSError:
            self._drop()
            raise

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

    def close(self):
        self._drop()
