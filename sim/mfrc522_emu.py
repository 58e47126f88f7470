"""An MFRC522 emulated at the register level, with ISO/IEC 14443A cards in its field.

The firmware reaches it over the host SPI bridge (boards/host/spi_bridge.py): `serve_tcp()`
returns the tcp:// URL for `Mfrc522(SpiBridge(url), bridge.cs)`. Written from the NXP
MFRC522 datasheet and ISO/IEC 14443-3, independently of the firmware driver.

Cards follow the 14443-3 state machine (IDLE, READY, ACTIVE, HALT) with cascade levels, and
several cards in the field collide bit by bit, so the driver's anticollision really runs.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from sim.pn532_emu import EmulatorBase, default_atqa_sak

# registers
COMMAND, COM_IRQ, DIV_IRQ, ERROR, STATUS2 = 0x01, 0x04, 0x05, 0x06, 0x08
FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING, COLL = 0x09, 0x0A, 0x0C, 0x0D, 0x0E
MODE, TX_MODE, RX_MODE, TX_CONTROL = 0x11, 0x12, 0x13, 0x14
CRC_H, CRC_L = 0x21, 0x22
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37
# commands
IDLE, CALC_CRC, TRANSCEIVE, SOFT_RESET = 0x00, 0x03, 0x0C, 0x0F

FAULTS = (
    "no_answer",  # the cards miss the next frame (as if the RF was disturbed)
    "bad_crc",  # the next SAK arrives with a wrong CRC_A
    "parity",  # the next reception ends with a parity error
    "stuck",  # the next Transceive never finishes (no interrupt at all)
    "bridge_silence",  # the next SPI transfer is never answered
)


# ModeReg CRCPreset[1:0] -> the CRC coprocessor's preset (datasheet, ModeReg bits)
CRC_PRESETS = (0x0000, 0x6363, 0xA671, 0xFFFF)


def crc16(data: bytes, crc: int) -> int:
    """The CRC coprocessor (LSB first): reflected CRC-16/0x1021 from preset `crc`, no final XOR."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def crc_a(data: bytes) -> bytes:
    """CRC_A (ISO/IEC 14443-3 annex B): reflected CRC-16/0x1021, preset 0x6363; low byte first."""
    crc = crc16(data, 0x6363)
    return bytes([crc & 0xFF, crc >> 8])


def to_bits(data: bytes, nbits: int | None = None) -> list[int]:
    bits = [(b >> i) & 1 for b in data for i in range(8)]  # LSB first on the air
    return bits if nbits is None else bits[:nbits]


def from_bits(bits: list[int]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        out[i // 8] |= bit << (i % 8)
    return bytes(out)


@dataclass
class Picc:
    """One ISO/IEC 14443A card."""

    uid: bytes
    atqa: bytes = b""  # written MSB first (0x0044 as 00 44), as PN532 reports it; LSB byte first on the air
    sak: int = -1
    state: str = "IDLE"
    halted: bool = False
    level: int = 0
    levels: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.uid) not in (4, 7, 10):
            raise ValueError("ISO 14443A UIDs are 4, 7 or 10 bytes")
        atqa, sak = default_atqa_sak(len(self.uid))
        self.atqa = self.atqa or atqa
        self.sak = sak if self.sak < 0 else self.sak
        u = self.uid
        self.levels = {4: [u], 7: [b"\x88" + u[:3], u[3:]], 10: [b"\x88" + u[:3], b"\x88" + u[3:6], u[6:]]}[len(u)]

    def _fall_back(self) -> None:
        self.state = "HALT" if self.halted else "IDLE"

    def receive(self, bits: list[int]) -> list[int] | None:
        """The card's answer (bits) to a frame, or None when it stays silent."""
        if len(bits) == 7:
            cmd = from_bits(bits)[0]
            if (cmd == 0x26 and self.state == "IDLE") or (cmd == 0x52 and self.state in ("IDLE", "HALT")):
                self.state, self.level = "READY", 0
                return to_bits(self.atqa[::-1])  # ISO/IEC 14443-3: b1 (UID size in b8..b7) goes first
            self._fall_back()
            return None
        data = from_bits(bits)
        if self.state == "READY" and len(bits) >= 16 and data[0] == (0x93, 0x95, 0x97)[self.level]:
            cl = self.levels[self.level]
            cl_bcc = cl + bytes([cl[0] ^ cl[1] ^ cl[2] ^ cl[3]])
            nvb = data[1]
            if nvb == 0x70 and len(bits) == 72:
                if data[2:7] != cl_bcc or crc_a(data[:7]) != data[7:9]:
                    return None
                if self.level + 1 < len(self.levels):
                    self.level += 1
                    sak = 0x04
                else:
                    self.state = "ACTIVE"
                    sak = self.sak & ~0x04
                return to_bits(bytes([sak]) + crc_a(bytes([sak])))
            known = ((nvb >> 4) - 2) * 8 + (nvb & 7)
            if 0 <= known <= 32 and len(bits) == 16 + known and bits[16:] == to_bits(cl_bcc)[:known]:
                return to_bits(cl_bcc)[known:]
            return None  # not this card's UID prefix: it stays READY and silent
        if self.state == "ACTIVE" and data[:2] == b"\x50\x00" and len(bits) == 32 and crc_a(data[:2]) == data[2:4]:
            self.state, self.halted = "HALT", True
            return None
        self._fall_back()
        return None


@dataclass
class Stats:
    frames: Counter = field(default_factory=Counter)  # first byte of each frame sent to the cards
    spi_bytes: int = 0
    transfers: int = 0


class Mfrc522Emulator(EmulatorBase):
    FAULTS = FAULTS

    def __init__(self, version: int = 0x92) -> None:
        super().__init__()
        self.version = version
        self.cards: list[Picc] = []
        self.stats = Stats()
        self._plan: list = []
        self._reset()

    # ---- test controls -------------------------------------------------------------
    def present(self, *uids: bytes) -> list[Picc]:
        """Put these cards (and only these) in the field."""
        with self._lock:
            self.cards = [Picc(bytes(u)) for u in uids]
            return self.cards

    def plan(self, steps: list) -> None:
        """What the field holds at each poll (each REQA/WUPA): a UID, a list of UIDs, None,
        or (that, fault) to inject a fault into the poll. The field keeps the last state."""
        with self._lock:
            self._plan = [s if isinstance(s, tuple) else (s, None) for s in steps]

    def _set_field(self, step) -> None:
        uids = [] if step is None else [step] if isinstance(step, (bytes, bytearray)) else list(step)
        kept = {c.uid: c for c in self.cards}  # a card that stays keeps its state (e.g. HALT)
        self.cards = [kept.get(bytes(u)) or Picc(bytes(u)) for u in uids]

    def _take(self, fault: str) -> bool:
        if self._faults and self._faults[0] == fault:
            self._faults.pop(0)
            return True
        return False

    # ---- registers -----------------------------------------------------------------
    def _reset(self) -> None:
        # Reset values from the datasheet's register tables, for the registers modelled here;
        # the others (e.g. ComIEnReg 80h, Status1Reg 21h, analog settings) are plain storage.
        self.regs = bytearray(64)
        self.regs[COMMAND] = 0x20  # Idle, RcvOff bit 1; PowerDown reads 0 once the reset completes
        self.regs[COM_IRQ] = 0x14
        self.regs[CONTROL] = 0x10
        self.regs[COLL] = 0xA0  # ValuesAfterColl, CollPosNotValid
        self.regs[MODE] = 0x3F  # CRCPreset 11: FFFFh (drivers set 3Dh for CRC_A's 6363h)
        self.regs[TX_CONTROL] = 0x80  # antenna drivers off
        self.regs[CRC_H] = self.regs[CRC_L] = 0xFF
        self.regs[VERSION] = self.version
        self.fifo = bytearray()
        self._crc = 0xFFFF
        self._timer_due: float | None = None
        self._stuck = False

    def read_reg(self, reg: int) -> int:
        if reg == FIFO_DATA:
            return self.fifo.pop(0) if self.fifo else 0
        if reg == FIFO_LEVEL:
            return len(self.fifo)
        if reg == COM_IRQ and self._timer_due is not None and time.monotonic() >= self._timer_due:
            self._timer_due = None
            self.regs[COM_IRQ] |= 0x01  # TimerIRq: nobody answered in time
        return self.regs[reg]

    def write_reg(self, reg: int, value: int) -> None:
        if reg in (COM_IRQ, DIV_IRQ):  # bit 7 Set1: set the marked bits, else clear them
            mask = value & 0x7F
            self.regs[reg] = (self.regs[reg] | mask) if value & 0x80 else (self.regs[reg] & ~mask)
            return
        if reg == FIFO_DATA:
            if self.regs[COMMAND] & 0x0F == CALC_CRC:  # a running CalcCRC takes each new byte
                self._calc_crc(bytes([value]))
            elif len(self.fifo) < 64:
                self.fifo.append(value)
            else:
                self.regs[ERROR] |= 0x10  # BufferOvfl
                self.regs[COM_IRQ] |= 0x02  # ErrIRq: an ErrorReg bit is set
            return
        if reg == FIFO_LEVEL:
            if value & 0x80:
                self.fifo.clear()
                self.regs[ERROR] &= ~0x10
            return
        if reg in (VERSION, ERROR):  # read-only
            return
        if reg == COLL:  # only ValuesAfterColl (bit 7) is writable
            self.regs[COLL] = (value & 0x80) | (self.regs[COLL] & 0x7F)
            return
        self.regs[reg] = value
        if reg == COMMAND:
            cmd = value & 0x0F
            if cmd == SOFT_RESET:
                self._reset()
            elif cmd == IDLE:
                self._timer_due = None
            elif cmd == CALC_CRC:  # the FIFO goes to the coprocessor; it runs until another command
                self._crc = CRC_PRESETS[self.regs[MODE] & 0x03]
                data = bytes(self.fifo)
                self.fifo.clear()
                self._calc_crc(data)
        elif reg == BIT_FRAMING and value & 0x80 and self.regs[COMMAND] & 0x0F == TRANSCEIVE:
            self._transceive()

    def _calc_crc(self, data: bytes) -> None:
        self._crc = crc16(data, self._crc)
        self.regs[CRC_L], self.regs[CRC_H] = self._crc & 0xFF, self._crc >> 8
        self.regs[DIV_IRQ] |= 0x04  # CRCIRq: CalcCRC active, all data processed

    def _timeout_s(self) -> float | None:
        if not self.regs[T_MODE] & 0x80:  # TAuto off: the timer never starts by itself
            return None
        prescaler = ((self.regs[T_MODE] & 0x0F) << 8) | self.regs[T_PRESCALER]
        reload = (self.regs[T_RELOAD_H] << 8) | self.regs[T_RELOAD_L]
        return (reload + 1) * (2 * prescaler + 1) / 13.56e6

    def _transceive(self) -> None:
        framing = self.regs[BIT_FRAMING]
        tx_last, rx_align = framing & 7, (framing >> 4) & 7
        data = bytes(self.fifo)
        self.fifo.clear()
        nbits = len(data) * 8 - ((8 - tx_last) if tx_last else 0)
        bits = to_bits(data, nbits)
        self.stats.frames[data[:1].hex()] += 1
        if nbits == 7 and self._plan:  # REQA/WUPA: a new poll begins
            step, fault = self._plan.pop(0)
            self._set_field(step)
            if fault:
                self._faults.insert(0, fault)
        self.regs[ERROR] = 0
        self.regs[COLL] = (self.regs[COLL] & 0x80) | 0x20  # CollPosNotValid until a collision is seen
        self.regs[COM_IRQ] |= 0x40  # TxIRq
        if self._take("stuck"):
            return  # no interrupt ever: the driver's own deadline must end this
        field_on = self.regs[TX_CONTROL] & 0x03 == 0x03
        if self._take("no_answer"):
            field_on = False  # the frame never reaches the cards: they keep their state
        answers = [a for a in (c.receive(bits) for c in self.cards) if a is not None] if field_on else []
        if not answers:
            t = self._timeout_s()
            self._timer_due = None if t is None else time.monotonic() + t
            return
        if len(answers[0]) == 24 and self._take("bad_crc"):
            answers = [answers[0][:8] + [1 - b for b in answers[0][8:]]]
        rx = self._merge(answers)
        out = [0] * rx_align + rx
        self.fifo[:] = from_bits(out)
        self.regs[CONTROL] = (self.regs[CONTROL] & ~0x07) | (len(out) % 8)
        # RxIRq only: Transceive does not end by itself (it waits for the next StartSend until
        # the host writes another command), so CommandReg keeps 0Ch and IdleIRq stays clear.
        self.regs[COM_IRQ] |= 0x20
        if self._take("parity"):
            self.regs[ERROR] |= 0x02
            self.regs[COM_IRQ] |= 0x02
        if self._collided is not None:
            self.regs[ERROR] |= 0x08
            self.regs[COM_IRQ] |= 0x02
            pos = rx_align + self._collided + 1
            self.regs[COLL] = (self.regs[COLL] & 0x80) | (pos & 0x1F)  # 32 shows as 0

    def _merge(self, answers: list[list[int]]) -> list[int]:
        """What the reader hears when several cards answer: bits up to the first collision."""
        self._collided = None
        length = max(len(a) for a in answers)
        out = []
        for i in range(length):
            values = {a[i] for a in answers if i < len(a)}
            if len(values) > 1:
                self._collided = i
                out.append(1)
                break
            out.append(values.pop())
        return out

    # ---- SPI -----------------------------------------------------------------------
    def spi_transfer(self, data: bytes) -> bytes:
        """One burst on the bus inside a CS-low window; returns the bytes clocked back."""
        with self._lock:
            self.stats.spi_bytes += len(data)
            self.stats.transfers += 1
            out = bytearray(len(data))
            st = self._spi
            for i, b in enumerate(data):
                if st["addr"] is None:  # first byte of the window: the address
                    st["addr"], st["read"] = (b >> 1) & 0x3F, bool(b & 0x80)
                    if st["read"]:
                        st["pending"] = self.read_reg(st["addr"])
                    continue
                if st["read"]:
                    out[i] = st["pending"]
                    st["pending"] = self.read_reg((b >> 1) & 0x3F) if b & 0x80 else 0
                else:
                    self.write_reg(st["addr"], b)
            return bytes(out)

    def spi_select(self, active: bool) -> None:
        with self._lock:
            self._spi = {"addr": None, "read": False, "pending": 0}

    _spi: dict = {"addr": None, "read": False, "pending": 0}

    # ---- SPI bridge over TCP -------------------------------------------------------------
    def serve_tcp(self) -> str:
        from sim.bus_bridge import serve_spi

        def silent() -> bool:
            with self._lock:
                return self._take("bridge_silence")

        server = serve_spi(self, silent)
        self._closers.append(server.close)
        return server.url
