"""Network faults between the device and the broker: a TCP proxy that can delay, cut
connections mid-packet, or turn into a black hole (accepts, reads, never answers)."""
from __future__ import annotations

import heapq
import socket
import threading
import time


class FaultProxy:
    """127.0.0.1:<port> -> upstream. Modes (switchable at any time):

    forward    pass bytes both ways, each direction delayed by delay_s (RTT = 2 * delay_s)
    blackhole  accept new connections and swallow everything; existing ones freeze too
    cut_after  forward, but close a connection after cut_after upstream bytes (mid-packet);
               cut_down_after does the same on the bytes coming back from upstream
    """

    def __init__(self, upstream: tuple[str, int], delay_s: float = 0.0):
        self.upstream = upstream
        self.delay_s = delay_s
        self.mode = "forward"
        self.cut_after: int | None = None
        self.cut_down_after: int | None = None
        self.cuts = 0
        self.connections = 0
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> "FaultProxy":
        threading.Thread(target=self._accept_loop, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._srv.close()
        self.drop_all()

    def drop_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._srv.accept()
            except OSError:
                return
            self.connections += 1
            with self._lock:
                self._socks.append(client)
            if self.mode == "blackhole":
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                up = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                client.close()
                continue
            for s in (client, up):  # the proxy adds only the delay it is asked for
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._socks.append(up)
            for src, dst, cut in ((client, up, self.cut_after), (up, client, self.cut_down_after)):
                threading.Thread(target=self._pump, args=(src, dst, cut is not None, [cut], (client, up)),
                                 daemon=True).start()

    def _swallow(self, sock: socket.socket) -> None:
        try:
            while sock.recv(65536):
                pass
        except OSError:
            pass

    def _pump(self, src, dst, counted, budget, pair) -> None:
        # one reader thread per direction; the delay line is a heap of (due, n, data)
        line: list[tuple[float, int, bytes]] = []
        cond = threading.Condition()
        done = threading.Event()

        def writer() -> None:
            while True:
                with cond:
                    while not line and not done.is_set():
                        cond.wait(0.05)
                    if not line and done.is_set():
                        break
                    due, _, data = line[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        cond.wait(wait)
                        continue
                    heapq.heappop(line)
                if self.mode == "blackhole":
                    continue
                try:
                    dst.sendall(data)
                except OSError:
                    break
            for s in pair:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        threading.Thread(target=writer, daemon=True).start()
        n = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if counted and budget[0] is not None:
                    if len(data) >= budget[0]:
                        data = data[: max(1, budget[0])]
                        budget[0] = 0
                    else:
                        budget[0] -= len(data)
                with cond:
                    n += 1
                    heapq.heappush(line, (time.monotonic() + self.delay_s, n, data))
                    cond.notify()
                if counted and budget[0] == 0:
                    self.cuts += 1
                    time.sleep(self.delay_s + 0.05)
                    break
        except OSError:
            pass
        done.set()
        with cond:
            cond.notify()


def blackhole_server() -> FaultProxy:
    """A server that accepts TCP connections and never says a word."""
    p = FaultProxy(("127.0.0.1", 9))
    p.mode = "blackhole"
    return p.start()
