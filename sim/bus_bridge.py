"""The emulator side of the host's bus bridges (boards/host/spi_bridge.py, boards/host/i2c_bridge.py):
a loopback TCP server per emulated chip, speaking the bridges' messages.

An SPI chip has `spi_select(active)` and `spi_transfer(data) -> bytes` (bytes in wire order: the
most significant bit is the first on the wire); an I2C chip has `i2c_write(addr, data) -> bool`
(False: nobody acknowledged the address) and `i2c_read(addr, n) -> bytes | None` (None: the same).
"""
from __future__ import annotations

import select
import socket
import struct
import threading
from typing import Callable

from sim.pn532_emu import LoopbackServer


def _recv_exact(conn: socket.socket, n: int, closing: threading.Event) -> bytes | None:
    buf = b""
    while len(buf) < n:
        if closing.is_set():
            return None
        ready, _, _ = select.select([conn], [], [], 0.05)
        if not ready:
            continue
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_spi(chip, silent: Callable[[], bool] = lambda: False) -> LoopbackServer:
    """Serve chip's SPI: "S"/"D" select and release it, "W" and "X" clock bytes (only "X" answers).
    silent() True drops the answer of the next "X", as a bridge that hangs would."""

    def client(conn: socket.socket, closing: threading.Event) -> None:
        try:
            while True:
                op = _recv_exact(conn, 1, closing)
                if op is None:
                    return
                if op in (b"S", b"D"):
                    chip.spi_select(op == b"S")
                    continue
                head = _recv_exact(conn, 2, closing)
                data = _recv_exact(conn, struct.unpack(">H", head)[0], closing) if head else None
                if data is None:
                    return
                answer = chip.spi_transfer(data)
                if op == b"X" and not silent():
                    conn.sendall(answer)
        except OSError:
            return

    return LoopbackServer(client)


def serve_i2c(chip) -> LoopbackServer:
    """Serve chip's I2C: "W" addr len data and "R" addr len, each answered by an acknowledge byte
    (then the bytes read)."""

    def client(conn: socket.socket, closing: threading.Event) -> None:
        try:
            while True:
                head = _recv_exact(conn, 4, closing)
                if head is None:
                    return
                op, addr, n = head[0:1], head[1], struct.unpack(">H", head[2:4])[0]
                if op == b"W":
                    data = _recv_exact(conn, n, closing)
                    if data is None:
                        return
                    conn.sendall(b"\x01" if chip.i2c_write(addr, data) else b"\x00")
                elif op == b"R":
                    data = chip.i2c_read(addr, n)
                    conn.sendall(b"\x00" if data is None else b"\x01" + bytes(data))
                else:
                    return  # not the bridge's protocol: hang up
        except OSError:
            return

    return LoopbackServer(client)
