"""An energy meter for tests: pymodbus serving RTU frames over TCP or a pseudo-terminal.

pymodbus (an independent Modbus implementation) decodes every request and encodes every
reply. Faults are injected where a real bus produces them, on the encoded reply frame:

    crc         last CRC byte flipped
    silence     no reply at all
    exception   a Modbus exception response (code=..., default 4)
    truncate    the reply cut short (drop=... bytes, default 3)
    wrong_unit  a valid reply, but from another unit id
    late        the reply held back for delay_ms (default 300) and then sent: it arrives after
                the master gave up and sits in its receive buffer as a stale answer
    garbage     noise instead of the reply
    noise       noise, then the real reply

Over a pty the firmware opens `peer.url` (a /dev/pts path); a bridge thread copies bytes
between that pty and a second one that pymodbus's serial server holds. With pace=True the
bridge delivers each chunk only after its time on the wire at the configured baud rate
(a pty by itself moves bytes at memory speed whatever baud rate is set).
"""
from __future__ import annotations

import asyncio
import os
import random
import select
import socket
import struct
import threading
import time
import tty
from collections import deque

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import DataType, SimData, SimDevice

FAULTS = ("crc", "silence", "exception", "truncate", "wrong_unit", "late", "garbage", "noise")
HOLDING, INPUT = 3, 4


def encode(kind: str, value) -> list[int]:
    """Registers (16-bit words, high word first unless *_ws) for a value, independently of the firmware."""
    if kind in ("f32", "f32_ws"):
        raw = struct.pack(">f", value) if isinstance(value, float) else struct.pack(">I", value)
    elif kind in ("u32", "u32_ws"):
        raw = struct.pack(">I", value)
    elif kind in ("i32", "i32_ws"):
        raw = struct.pack(">i", value)
    elif kind == "u64":
        raw = struct.pack(">Q", value)
    elif kind == "i64":
        raw = struct.pack(">q", value)
    elif kind == "u16":
        raw = struct.pack(">H", value)
    elif kind == "i16":
        raw = struct.pack(">h", value)
    elif kind.startswith("str"):
        n = int(kind[3:])
        raw = value.encode().ljust(2 * n, b"\0")[: 2 * n]
    else:
        raise ValueError(kind)
    words = list(struct.unpack(f">{len(raw) // 2}H", raw))
    if kind.endswith("_ws"):
        words.reverse()
    return words


class _FaultyHandler(ServerRequestHandler):
    """pymodbus's request handler, with the reply frame passed through the peer's fault queue."""

    def server_send(self, pdu, addr):
        peer: MeterPeer = self.server.peer
        if pdu is not None and pdu.dev_id != peer.unit:
            return None  # another unit on the bus: a real meter stays silent
        fault = peer._take_fault()
        if pdu is None or fault is None:
            return super().server_send(pdu, addr)
        kind, kw = fault
        if kind == "exception":
            pdu = ExceptionResponse(pdu.function_code, kw.get("code", ExcCodes.DEVICE_FAILURE),
                                    device_id=pdu.dev_id, transaction=pdu.transaction_id)
            return super().server_send(pdu, addr)
        if kind == "wrong_unit":
            pdu.dev_id = kw.get("unit", pdu.dev_id % 247 + 1)
            return super().server_send(pdu, addr)
        packet = self.framer.buildFrame(pdu)
        if kind == "silence":
            return None
        if kind == "crc":
            packet = packet[:-1] + bytes([packet[-1] ^ 0x5A])
        elif kind == "truncate":
            packet = packet[: max(1, len(packet) - kw.get("drop", 3))]
        elif kind == "garbage":
            packet = bytes([0x00, 0xFF]) + peer.rng.randbytes(len(packet))
        elif kind == "noise":
            packet = bytes([0x00, 0xFF]) + peer.rng.randbytes(5) + packet
        elif kind == "late":
            self.loop.call_later(kw.get("delay_ms", 300) / 1000, self._send_raw, packet, addr)
            return None
        self._send_raw(packet, addr)
        return None

    def _send_raw(self, packet: bytes, addr) -> None:
        self.low_level_send(self.trace_packet(True, packet), addr=addr)


class _Tcp(ModbusTcpServer):
    def callback_new_connection(self):
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _Serial(ModbusSerialServer):
    def callback_new_connection(self):
        return _FaultyHandler(self, self.trace_packet, self.trace_pdu, self.trace_connect)


class _PtyBridge:
    """Two pseudo-terminals joined back to back: the firmware opens one, pymodbus the other."""

    def __init__(self, baudrate: int, pace: bool, char_bits: int = 10):
        self.char_s = char_bits / baudrate
        self.pace = pace
        self.fw_master, self._fw_slave = os.openpty()
        self.peer_master, self._peer_slave = os.openpty()
        for fd in (self._fw_slave, self._peer_slave):
            tty.setraw(fd)  # no echo or line editing before the real users open their ends
        self.fw_path = os.ttyname(self._fw_slave)
        self.peer_path = os.ttyname(self._peer_slave)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="pty-bridge", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        route = {self.fw_master: self.peer_master, self.peer_master: self.fw_master}
        while True:
            ready, _, _ = select.select([self.fw_master, self.peer_master, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # EIO: the other side closed; wait for it to reopen
                    time.sleep(0.005)
                    continue
                if self.pace:
                    time.sleep(len(data) * self.char_s)  # half duplex: one direction at a time
                os.write(route[fd], data)

    def close(self) -> None:
        os.write(self._stop_w, b"x")
        self._thread.join(2)
        for fd in (self.fw_master, self.peer_master, self._fw_slave, self._peer_slave, self._stop_r, self._stop_w):
            os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MeterPeer:
    """A Modbus RTU meter (unit `unit`) served by pymodbus; use as a context manager."""

    def __init__(self, transport: str = "tcp", unit: int = 1, baudrate: int = 9600, parity: str = "N",
                 stop: int = 1, pace: bool = False, seed: int = 1):
        if transport not in ("tcp", "pty"):
            raise ValueError("transport is tcp or pty")
        self.transport = transport
        self.unit = unit
        self.baudrate = baudrate
        self.parity = parity
        self.stop = stop
        self.pace = pace
        self.rng = random.Random(seed)
        self.url = ""
        self.tables: dict[int, dict[int, int]] = {HOLDING: {}, INPUT: {}}
        self.missing: set[tuple[int, int]] = set()  # (fn, addr): answered with "illegal data address"
        self.requests: list[tuple[int, int, int, int]] = []  # (unit, fn, addr, count) as pymodbus decoded them
        self.wire_bytes = [0, 0]  # [received, sent] by the meter
        self._faults: deque[tuple[str, dict]] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._bridge: _PtyBridge | None = None
        self._thread: threading.Thread | None = None

    # -- registers and faults (thread-safe, take effect on the next request) ------------

    def set_words(self, fn: int, addr: int, words: list[int]) -> None:
        with self._lock:
            for i, w in enumerate(words):
                self.tables[fn][addr + i] = w & 0xFFFF

    def set(self, quantity: tuple, value) -> None:
        """Set a model quantity (fn, addr, kind, unit) to value (float, int bits or str)."""
        fn, addr, kind = quantity[:3]
        self.set_words(fn, addr, encode(kind, value))

    def fault(self, kind: str, count: int = 1, **kw) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind}")
        with self._lock:
            self._faults.extend([(kind, kw)] * count)

    def clear_faults(self) -> None:
        """The meter answers again."""
        with self._lock:
            self._faults.clear()

    def _take_fault(self):
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    async def _action(self, fc, start, address, count, registers, set_values):
        table = self.tables[HOLDING if fc in (3, 6, 16) else INPUT]
        with self._lock:
            if any((HOLDING if fc != 4 else INPUT, a) in self.missing for a in range(address, address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
            if set_values is not None:
                for i, v in enumerate(set_values):
                    table[address + i] = int(v)
            for a, v in table.items():
                registers[a - start] = v
        return None

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        self.wire_bytes[1 if sending else 0] += len(data)
        return data

    def _trace_pdu(self, sending: bool, pdu):
        if not sending:
            self.requests.append((pdu.dev_id, pdu.function_code, getattr(pdu, "address", -1), getattr(pdu, "count", -1)))
        return pdu

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> "MeterPeer":
        regs = SimData(0, count=65536, values=0, datatype=DataType.REGISTERS)
        bits = SimData(0, count=16, values=False, datatype=DataType.BITS)
        device = SimDevice(self.unit, simdata=([bits], [bits], [regs], [SimData(0, count=65536, values=0,
                                                                                 datatype=DataType.REGISTERS)]),
                           action=self._action)
        common = dict(framer=FramerType.RTU, ignore_missing_devices=True, trace_packet=self._trace_packet,
                      trace_pdu=self._trace_pdu)
        if self.transport == "pty":
            char_bits = 1 + 8 + (0 if self.parity == "N" else 1) + self.stop
            self._bridge = _PtyBridge(self.baudrate, self.pace, char_bits)
            self.url = self._bridge.fw_path

            def make():
                # A pty carries bytes, not bits: Linux refuses parity on it (EINVAL), so pymodbus's end
                # runs 8N1 while the firmware's end may be set to any parity.
                return _Serial(device, port=self._bridge.peer_path, baudrate=self.baudrate, parity="N",
                               stopbits=self.stop, bytesize=8, reconnect_delay=0.1, **common)
        else:
            port = _free_port()
            self.url = f"tcp://127.0.0.1:{port}"

            def make():
                return _Tcp(device, address=("127.0.0.1", port), **common)

        ready = threading.Event()
        failure: list[BaseException] = []

        async def serve():
            try:
                self._server = make()
                self._server.peer = self
                await self._server.serve_forever(background=True)
            except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
                failure.append(exc)
            ready.set()

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.create_task(serve())
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="meter-peer", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failure:
            self.stop_peer()
            raise RuntimeError(f"meter peer did not start: {failure}")
        return self

    def stop_peer(self) -> None:
        if self._loop is not None and self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception:  # noqa: BLE001 - shutting down anyway
                pass
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self._bridge is not None:
            self._bridge.close()
            self._bridge = None

    def __enter__(self) -> "MeterPeer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop_peer()
