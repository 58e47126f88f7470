"""A PN532 (NXP UM0701-02) emulated in CPython, on any of its three host interfaces.

HSU (the default): frames as a byte stream over TCP or a pseudo-terminal. I2C and SPI (UM0701-02
6.2.4, 6.2.5): the chip holds each frame it has to send until the host reads it; the host polls a
status byte whose bit 0 (RDY) says a frame is waiting. I2C: address 0x24 (0x48 write, 0x49 read);
every read starts with the status byte, the frame follows when RDY is set. SPI (mode 0, each byte
least significant bit first): the first byte of each chip-select window says what the window is,
01 data write (the host's frame follows), 02 status read (the status byte comes back), 03 data
read (the frame comes back). These are reached through the host's bus bridges (sim/bus_bridge.py)
or called directly (`i2c_write`/`i2c_read`, `spi_select`/`spi_transfer`).

Tests put cards in the field (`present`, `remove`) and inject faults into the next exchanges
(`inject`). The emulator is written from the user manual, independently of the firmware's
parser, and is checked against adafruit-circuitpython-pn532 (host_tests/nfc/test_pn532_emu.py).

    with Pn532Emulator() as emu:       # or Pn532Emulator(bus="i2c") / bus="spi"
        url = emu.serve_tcp()          # or (HSU): path = emu.serve_pty()
        emu.present(bytes.fromhex("04a1b2c3d4e5f6"))
"""
from __future__ import annotations

import os
import random
import select
import socket
import threading
import time
import tty
from collections import Counter, deque
from dataclasses import dataclass, field

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
WAKE = 0x55

# Faults, each consumed by one exchange:
FAULTS = (
    "bad_lcs",  # the answer's length checksum is wrong (a NACK gets a good copy)
    "bad_dcs",  # the answer's data checksum is wrong (a NACK gets a good copy)
    "nack",  # the command is answered with NACK instead of ACK and not executed
    "silence",  # the command is ignored: no ACK, no answer
    "no_answer",  # ACK, then nothing
    "split",  # ACK and answer arrive in 1..3 byte pieces a few ms apart
    "noise",  # junk bytes before the ACK and between ACK and answer
    "truncated",  # the head of a lost frame arrives just before the real answer
    "error_frame",  # the PN532 reports a syntax error instead of ACK
)
STREAM_ONLY = ("split", "noise", "truncated")  # I2C and SPI carry whole frames: no such thing there
PACKET_FAULTS = tuple(f for f in FAULTS if f not in STREAM_ONLY)
BUSES = ("hsu", "i2c", "spi")
I2C_ADDRESS = 0x24  # 7-bit; 0x48/0x49 with the R/W bit
SPI_DW, SPI_SR, SPI_DR = 0x01, 0x02, 0x03
RDY = 0x01
_REVERSED = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))  # LSB-first bytes <-> wire order


def info_frame(payload: bytes, tfi: int = 0xD5) -> bytes:
    body = bytes([tfi]) + payload
    n = len(body)
    return bytes([0, 0, 0xFF, n, (-n) & 0xFF]) + body + bytes([(-sum(body)) & 0xFF, 0])


def default_atqa_sak(uid_len: int) -> tuple[bytes, int]:
    # ATQA bits 7..6 give the UID size (single, double, triple); SAK of a completed UID.
    return {4: (b"\x00\x04", 0x08), 7: (b"\x00\x44", 0x00), 10: (b"\x00\x84", 0x20)}[uid_len]


@dataclass
class Card:
    uid: bytes
    atqa: bytes
    sak: int
    ats: bytes = b""


@dataclass
class Stats:
    commands: Counter = field(default_factory=Counter)
    rx_bytes: int = 0
    tx_bytes: int = 0
    nacks_from_host: int = 0
    aborts: int = 0


class _HostFrames:
    """Scanner for what the host sends: ACK, NACK, information frames (TFI D4)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        self.buf += data
        out: list[tuple[str, bytes]] = []
        while True:
            i = self.buf.find(b"\x00\xff")
            if i < 0:
                del self.buf[: max(0, len(self.buf) - 1)]
                return out
            rest = self.buf[i + 2 :]
            if len(rest) < 2:
                del self.buf[:i]
                return out
            n, lcs = rest[0], rest[1]
            if n == 0 and lcs == 0xFF:
                out.append(("ack", b""))
                del self.buf[: i + 4]
                continue
            if n == 0xFF and lcs == 0:
                out.append(("nack", b""))
                del self.buf[: i + 4]
                continue
            if (n + lcs) & 0xFF or n == 0:
                del self.buf[: i + 2]  # not a frame header: look further
                continue
            if len(rest) < 2 + n + 1:
                del self.buf[:i]
                return out
            body = bytes(rest[2 : 2 + n])
            dcs = rest[2 + n]
            del self.buf[: i + 2 + 2 + n + 1]
            if (sum(body) + dcs) & 0xFF:
                out.append(("bad", b""))
            else:
                out.append(("frame", body))


class LoopbackServer:
    """TCP on a free 127.0.0.1 port; on_client(conn, closing) runs in its own thread per client."""

    def __init__(self, on_client) -> None:
        self._on_client = on_client
        self._closing = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(4)
        self._srv.settimeout(0.1)
        self.port = self._srv.getsockname()[1]
        self.url = f"tcp://127.0.0.1:{self.port}"
        self._spawn(self._accept_loop)

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._srv.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.append(conn)
            self._spawn(self._on_client, conn, self._closing)

    def close(self) -> None:
        self._closing.set()
        for t in self._threads:
            t.join(timeout=1)
        for c in [self._srv, *self._conns]:
            c.close()


class EmulatorBase:
    """Threads and handles an emulator owns; close() (or leaving `with`) stops them all."""

    FAULTS: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.cards: list = []
        self._faults: list[str] = []
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._closers: list = []
        self._closing = threading.Event()

    def remove(self) -> None:
        """Take every card out of the field."""
        with self._lock:
            self.cards = []

    def inject(self, fault: str, count: int = 1) -> None:
        """Queue a fault (one of FAULTS) for the next exchange(s)."""
        if fault not in self.FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {self.FAULTS}")
        with self._lock:
            self._faults += [fault] * count

    def _spawn(self, target, *args) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        self._closing.set()
        for t in self._threads:
            t.join(timeout=1)
        for c in self._closers:
            try:
                c()
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Pn532Emulator(EmulatorBase):
    FAULTS = FAULTS

    def __init__(self, firmware: tuple[int, int, int, int] = (0x32, 0x01, 0x06, 0x07), seed: int = 1,
                 bus: str = "hsu") -> None:
        super().__init__()
        if bus not in BUSES:
            raise ValueError(f"bus must be one of {BUSES}")
        self.bus = bus
        self.packet = bus != "hsu"  # I2C, SPI: whole frames, read when the host asks
        if self.packet:
            self.FAULTS = PACKET_FAULTS
        self.firmware = firmware
        self.cards: list[Card] = []
        # A C106 starts in LowVbat mode (AN10609): on HSU it listens after the 0x55 wake-up; on I2C
        # and SPI the host's first access wakes it.
        self.asleep = bus == "hsu"
        self.max_retries = 0xFF  # power-on default: InListPassiveTarget waits for a card forever
        self.dead = False  # a reader that answers nothing at all
        self.stats = Stats()
        self._plan: list[tuple[bytes | None, str | None]] = []
        self._armed = False
        self.plan_done = threading.Event()
        self.lists_done = 0  # InListPassiveTarget commands executed
        self._scanner = _HostFrames()
        self._last_answer: bytes | None = None
        self._pending_list: int | None = None  # MaxTg of an InListPassiveTarget still waiting
        self._rng = random.Random(seed)
        self._write = lambda data: None
        self.port: int | None = None
        self._frames_out: deque[bytes] = deque()  # I2C/SPI: frames waiting for the host to read them
        self._spi_op: int | None = None  # SPI: the operation byte of the current chip-select window
        self._spi_in = bytearray()
        self._spi_out = b""
        self._spi_pos = 0
        if self.packet:
            self._write = self._frames_out.append

    # ---- test controls -------------------------------------------------------------
    def present(self, uid: bytes, atqa: bytes | None = None, sak: int | None = None) -> Card:
        card = self._card(uid, atqa, sak)
        with self._lock:
            self.cards = [card]
            if self._pending_list is not None:
                self._pending_list = None
                self._answer(self._list_answer(), None)
        return card

    @staticmethod
    def _card(uid: bytes, atqa: bytes | None = None, sak: int | None = None) -> Card:
        if len(uid) not in (4, 7, 10):
            raise ValueError("ISO 14443A UIDs are 4, 7 or 10 bytes")
        d_atqa, d_sak = default_atqa_sak(len(uid))
        card = Card(bytes(uid), atqa or d_atqa, d_sak if sak is None else sak)
        if card.sak & 0x20:
            card.ats = bytes([0x05, 0x78, 0x80, 0x70, 0x02])  # TL T0 TA TB TC of a typical ISO-DEP card
        return card

    def plan(self, steps: list) -> None:
        """What the field holds at each executed InListPassiveTarget: a UID, None (empty),
        or (UID or None, fault) to also inject a fault into that exchange. The field keeps
        the last state after the plan; plan_done is set then."""
        steps = [s if isinstance(s, tuple) else (s, None) for s in steps]
        for _, fault in steps:
            if fault is not None and fault not in self.FAULTS:
                raise ValueError(f"unknown fault {fault!r} on {self.bus}; one of {self.FAULTS}")
        with self._lock:
            self._plan = steps
            self._armed = False
            self.plan_done.clear()

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # ---- byte interface ------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        with self._lock:
            self.stats.rx_bytes += len(data)
            if self.dead:
                return
            if self.asleep:
                i = data.find(bytes([WAKE]))
                if i < 0:
                    return
                self.asleep = False
                data = data[i + 1 :]
            for kind, body in self._scanner.feed(data):
                self._on_host(kind, body)

    def _send(self, data: bytes) -> None:
        self.stats.tx_bytes += len(data)
        self._write(data)

    def _take_fault(self) -> str | None:
        return self._faults.pop(0) if self._faults else None

    def _on_host(self, kind: str, body: bytes) -> None:
        if self.packet:
            self._frames_out.clear()  # one output buffer: whatever the host did not read is gone
        if kind == "ack":  # the host aborts the running command
            self.stats.aborts += 1
            self._pending_list = None
            return
        if kind == "nack":
            self.stats.nacks_from_host += 1
            if self._last_answer is not None:
                if self._faults and self._faults[0] in ("bad_lcs", "bad_dcs"):
                    self._send(self._corrupt(self._last_answer, self._faults.pop(0)))
                else:
                    self._send(self._last_answer)
            return
        if kind == "bad":
            return  # a frame with a bad checksum is ignored; the host times out
        if len(body) < 2 or body[0] != 0xD4:
            self._send(ERROR_FRAME)
            return
        self._pending_list = None
        if body[1] == 0x4A and self._plan and not self._armed:
            self._armed = True  # the step's fault hits this exchange (and survives a resend)
            if self._plan[0][1]:
                self._faults.insert(0, self._plan[0][1])
        fault = self._take_fault()
        if fault == "silence":
            return
        if fault == "nack":
            self._send(NACK)
            return
        if fault == "error_frame":
            self._send(ERROR_FRAME)
            return
        cmd, params = body[1], body[2:]
        self.stats.commands[cmd] += 1
        if fault == "noise":
            self._send(self._noise())
        self._send_maybe_split(ACK, fault)
        answer = self._execute(cmd, params)
        if answer is None or fault == "no_answer":
            return
        self._answer(answer, fault)

    def _answer(self, payload: bytes, fault: str | None) -> None:
        frame = info_frame(payload)
        self._last_answer = frame
        if fault == "noise":
            self._send(self._noise())
        elif fault == "truncated":
            self._send(info_frame(b"\x4b\x01\x01\x00\x04\x08\x04")[:8])
        if fault in ("bad_lcs", "bad_dcs"):
            self._send(self._corrupt(frame, fault))
            return
        self._send_maybe_split(frame, fault)

    @staticmethod
    def _corrupt(frame: bytes, fault: str) -> bytes:
        bad = bytearray(frame)
        bad[4 if fault == "bad_lcs" else len(bad) - 2] ^= 0x5A
        return bytes(bad)

    def _send_maybe_split(self, data: bytes, fault: str | None) -> None:
        if fault != "split":
            self._send(data)
            return
        i = 0
        while i < len(data):
            n = self._rng.randint(1, 3)
            self._send(data[i : i + n])
            i += n
            time.sleep(0.003)

    def _noise(self) -> bytes:
        # No zero bytes, so the noise itself never contains a start code.
        return bytes(self._rng.randint(1, 255) for _ in range(self._rng.randint(3, 12)))

    def _execute(self, cmd: int, p: bytes) -> bytes | None:
        if cmd == 0x02:  # GetFirmwareVersion
            return bytes([0x03, *self.firmware])
        if cmd == 0x14:  # SAMConfiguration
            if not p or p[0] not in (1, 2, 3, 4):
                self._send(ERROR_FRAME)
                return None
            return b"\x15"
        if cmd == 0x32:  # RFConfiguration
            if len(p) >= 4 and p[0] == 0x05:
                self.max_retries = p[3]
            return b"\x33"
        if cmd == 0x4A:  # InListPassiveTarget
            self.lists_done += 1
            if self._plan:
                uid = self._plan.pop(0)[0]
                self._armed = False
                self.cards = [] if uid is None else [self._card(uid)]
                if not self._plan:
                    self.plan_done.set()
            if len(p) < 2 or p[0] not in (1, 2):
                self._send(ERROR_FRAME)
                return None
            if p[1] != 0x00:  # only 106 kbps type A cards live here
                return b"\x4b\x00"
            if self.cards:
                return self._list_answer()
            if self.max_retries == 0xFF:
                self._pending_list = p[0]  # answer when a card arrives or the host aborts
                return None
            time.sleep(0.001 * (self.max_retries + 1))  # each activation try takes ~1 ms
            return b"\x4b\x00"
        if cmd == 0x52:  # InRelease
            return b"\x53\x00"
        if cmd == 0x44:  # InDeselect
            return b"\x45\x00"
        self._send(ERROR_FRAME)
        return None

    def _list_answer(self) -> bytes:
        card = self.cards[0]
        ans = bytes([0x4B, 1, 1]) + card.atqa + bytes([card.sak, len(card.uid)]) + card.uid
        return ans + card.ats

    # ---- I2C and SPI -------------------------------------------------------------------
    def i2c_write(self, addr: int, data: bytes) -> bool:
        """One write transaction; False when the address is not acknowledged."""
        if addr != I2C_ADDRESS or self.dead:
            return False
        if data:  # an empty write is an address probe
            with self._lock:
                self._scanner = _HostFrames()  # each transaction stands alone
            self.feed(bytes(data))
        return True

    def i2c_read(self, addr: int, n: int) -> bytes | None:
        """One read transaction of n bytes: the status byte, then (when RDY) the waiting frame,
        which this read takes even if it stops early; None when the address is not acknowledged."""
        if addr != I2C_ADDRESS or self.dead:
            return None
        with self._lock:
            if not self._frames_out:
                return bytes(n)  # status 0: not ready (what follows means nothing)
            if n < 2:
                return bytes([RDY])[:n]  # a status poll leaves the frame waiting
            frame = self._frames_out.popleft()
        return (bytes([RDY]) + frame + bytes(n))[:n]

    def spi_select(self, active: bool) -> None:
        """Chip select: a window starts (active) or ends; a data-write window's frame is taken at its end."""
        with self._lock:
            frame = bytes(self._spi_in) if self._spi_op == SPI_DW else b""
            self._spi_op, self._spi_in, self._spi_out, self._spi_pos = None, bytearray(), b"", 0
        if frame and not active and not self.dead:
            with self._lock:
                self._scanner = _HostFrames()
            self.feed(frame)

    def spi_transfer(self, data: bytes) -> bytes:
        """Bytes clocked in a chip-select window, in wire order (the PN532 shifts LSB first)."""
        out = bytearray(len(data))
        if self.dead:
            return bytes(out)
        with self._lock:
            for i, wire in enumerate(data):
                b = _REVERSED[wire]
                if self._spi_op is None:
                    self._spi_op = b
                    if b == SPI_DR and self._frames_out:
                        self._spi_out = self._frames_out.popleft()
                    continue
                if self._spi_op == SPI_SR:
                    out[i] = RDY if self._frames_out else 0
                elif self._spi_op == SPI_DR:
                    if self._spi_pos < len(self._spi_out):
                        out[i] = self._spi_out[self._spi_pos]
                    self._spi_pos += 1
                elif self._spi_op == SPI_DW:
                    self._spi_in.append(b)
        return bytes(_REVERSED[b] for b in out)

    # ---- transports -----------------------------------------------------------------
    def serve_tcp(self) -> str:
        """Listen on a free loopback port; one client at a time (a new one replaces the old).
        HSU: the frames as a byte stream; I2C, SPI: the host's bus bridge protocol."""
        if self.bus == "i2c":
            from sim.bus_bridge import serve_i2c

            server = serve_i2c(self)
        elif self.bus == "spi":
            from sim.bus_bridge import serve_spi

            server = serve_spi(self)
        else:
            server = LoopbackServer(self._on_client)
        self.port = server.port
        self._closers.append(server.close)
        return server.url

    def _on_client(self, conn: socket.socket, closing: threading.Event) -> None:
        with self._lock:
            self._write = lambda data: self._sock_write(conn, data)
            self._scanner = _HostFrames()
        self._pump(lambda: conn.recv(256), conn)

    @staticmethod
    def _sock_write(conn: socket.socket, data: bytes) -> None:
        try:
            conn.sendall(data)
        except OSError:
            pass

    def serve_pty(self) -> str:
        """A pseudo-terminal; returns the path of its device side for the host driver (HSU)."""
        if self.packet:
            raise ValueError("a pseudo-terminal carries HSU only")
        master, slave = os.openpty()
        tty.setraw(master)
        tty.setraw(slave)
        path = os.ttyname(slave)
        self._closers += [lambda: os.close(master), lambda: os.close(slave)]

        def write(data: bytes) -> None:
            try:
                os.write(master, data)
            except OSError:
                pass

        self._write = write
        self._spawn(self._pump, lambda: os.read(master, 256), master)
        return path

    def _pump(self, read, fileobj) -> None:
        while not self._closing.is_set():
            try:
                ready, _, _ = select.select([fileobj], [], [], 0.05)
                if not ready:
                    continue
                data = read()
            except (OSError, ValueError):
                return
            if not data:
                return
            self.feed(data)
