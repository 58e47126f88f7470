"""The MFRC522 emulator checked against the NXP MFRC522 datasheet and ISO/IEC 14443-3, not against our driver.

sim/mfrc522_emu.py was written together with firmware/nfc/mfrc522.py, so a misreading shared by both
would pass host_tests/nfc/test_mfrc522.py. Here nothing of firmware/nfc is used: the tests speak raw
SPI frames over the bridge's TCP protocol (boards/host/spi_bridge.py) and expect what the datasheet
says, with CRC_A computed independently (binascii's CRC-CCITT, bit-mirrored). The last tests drive
the emulator with an independent host library, pi-rc522, whose spidev bus is swapped for the bridge.
"""
from __future__ import annotations

import binascii
import importlib
import importlib.util
import socket
import struct
import sys
import time
import types
from functools import partial

import pytest

from host_tests.nfc.scenario import UID4, UID7, UID10

# Registers (datasheet section 9.2, register overview)
COMMAND, DIV_IEN, COM_IRQ, DIV_IRQ, ERROR = 0x01, 0x03, 0x04, 0x05, 0x06
STATUS2, FIFO_DATA, FIFO_LEVEL, CONTROL, BIT_FRAMING, COLL = 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x0E
MODE, TX_MODE, RX_MODE, TX_CONTROL, TX_ASK = 0x11, 0x12, 0x13, 0x14, 0x15
CRC_RESULT_H, CRC_RESULT_L = 0x21, 0x22
T_MODE, T_PRESCALER, T_RELOAD_H, T_RELOAD_L = 0x2A, 0x2B, 0x2C, 0x2D
VERSION = 0x37
# Commands (section 10.3, CommandReg Command[3:0])
IDLE, CALC_CRC, TRANSCEIVE, SOFT_RESET = 0x00, 0x03, 0x0C, 0x0F
# ComIrqReg bits
SET1, TX_IRQ, RX_IRQ, IDLE_IRQ, ERR_IRQ, TIMER_IRQ = 0x80, 0x40, 0x20, 0x10, 0x02, 0x01
CRC_IRQ = 0x04  # DivIrqReg
POWER_DOWN = 0x10  # CommandReg
START_SEND = 0x80  # BitFramingReg
FLUSH_BUFFER = 0x80  # FIFOLevelReg
BUFFER_OVFL, COLL_ERR = 0x10, 0x08  # ErrorReg
VALUES_AFTER_COLL, COLL_POS_NOT_VALID = 0x80, 0x20  # CollReg
# ISO/IEC 14443-3 type A
REQA, SEL = 0x26, (0x93, 0x95, 0x97)
CASCADE_TAG, SAK_CASCADE = 0x88, 0x04


# ---- CRC_A, independently: binascii.crc_hqx is the MSB-first CRC-CCITT (poly 0x1021, no final XOR);
# ISO/IEC 14443-3 annex B's CRC_A is the same polynomial LSB first, i.e. its bit mirror image.
def _mirror(value: int, width: int) -> int:
    return int(f"{value:0{width}b}"[::-1], 2)


def crc_ref(data: bytes, preset: int) -> int:
    return _mirror(binascii.crc_hqx(bytes(_mirror(b, 8) for b in data), _mirror(preset, 16)), 16)


def crc_a_ref(data: bytes) -> bytes:
    crc = crc_ref(data, 0x6363)
    return bytes([crc & 0xFF, crc >> 8])  # sent low byte first


def test_crc_reference_matches_iso_examples():
    # ISO/IEC 14443-3 annex B examples, and HLTA (50 00) as every reader sends it
    assert crc_a_ref(b"\x00\x00") == bytes.fromhex("a01e")
    assert crc_a_ref(b"\x12\x34") == bytes.fromhex("26cf")
    assert crc_a_ref(b"\x50\x00") == bytes.fromhex("57cd")


# ---- raw SPI over the bridge ----------------------------------------------------------------
def addr(reg: int, read: bool) -> int:
    """Datasheet 8.1.2.3: bit 7 = 1 read / 0 write, bits 6..1 the register, bit 0 = 0."""
    return (0x80 if read else 0x00) | (reg << 1)


class RawSpi:
    """One CS-low window per transfer, in the bridge's wire protocol: "S", "X" len:u16be data, "D"."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=2)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def transfer(self, mosi: bytes) -> bytes:
        self.sock.sendall(b"SX" + struct.pack(">H", len(mosi)) + bytes(mosi) + b"D")
        miso = b""
        while len(miso) < len(mosi):
            chunk = self.sock.recv(len(mosi) - len(miso))
            if not chunk:
                raise OSError("bridge closed")
            miso += chunk
        return miso

    def close(self) -> None:
        self.sock.close()


class Chip:
    """Register access as datasheet 8.1.2.1/8.1.2.2 describe it."""

    def __init__(self, spi: RawSpi) -> None:
        self.spi = spi

    def read(self, reg: int) -> int:
        return self.spi.transfer(bytes([addr(reg, True), 0x00]))[1]

    def read_burst(self, *regs: int) -> list[int]:
        # MOSI: address 0 .. address n, 00; MISO: X, data 0 .. data n
        return list(self.spi.transfer(bytes(addr(r, True) for r in regs) + b"\x00")[1:])

    def write(self, reg: int, *values: int) -> None:
        # MOSI: address 0, data 0 .. data n: every data byte goes to the same address
        self.spi.transfer(bytes([addr(reg, False), *values]))

    def fifo(self) -> bytes:
        n = self.read(FIFO_LEVEL) & 0x7F
        return bytes(self.read_burst(*[FIFO_DATA] * n)) if n else b""

    def soft_reset(self) -> None:
        self.write(COMMAND, SOFT_RESET)
        for _ in range(100):  # PowerDown reads 1 until the chip is ready again
            if not self.read(COMMAND) & POWER_DOWN:
                return
            time.sleep(0.001)
        raise AssertionError("PowerDown never cleared after SoftReset")

    def type_a(self, reload: int = 200) -> None:
        """Settings a type A reader makes after reset: timer (TAuto, 40 kHz ticks), 100 % ASK,
        CRC preset 6363h, antenna drivers TX1/TX2 on."""
        self.write(T_MODE, 0x80)
        self.write(T_PRESCALER, 169)  # 13.56 MHz / (2 * 169 + 1) = 40 kHz
        self.write(T_RELOAD_H, reload >> 8)
        self.write(T_RELOAD_L, reload & 0xFF)
        self.write(TX_ASK, 0x40)
        self.write(MODE, 0x3D)
        self.write(TX_CONTROL, self.read(TX_CONTROL) | 0x03)

    def start_transceive(self, frame: bytes, tx_last_bits: int = 0) -> None:
        self.write(COMMAND, IDLE)
        self.write(COM_IRQ, 0x7F)  # clear every request bit
        self.write(FIFO_LEVEL, FLUSH_BUFFER)
        self.write(FIFO_DATA, *frame)
        self.write(BIT_FRAMING, tx_last_bits)
        self.write(COMMAND, TRANSCEIVE)
        self.write(BIT_FRAMING, START_SEND | tx_last_bits)

    def transceive(self, frame: bytes, tx_last_bits: int = 0, timeout_s: float = 1.0) -> int:
        """Send, wait for RxIRq, TimerIRq or ErrIRq; return ComIrqReg."""
        self.start_transceive(frame, tx_last_bits)
        deadline = time.monotonic() + timeout_s
        while True:
            irq = self.read(COM_IRQ)
            if irq & (RX_IRQ | TIMER_IRQ | ERR_IRQ):
                return irq
            assert time.monotonic() < deadline, f"no interrupt request (ComIrqReg {irq:#04x})"
            time.sleep(0.0005)


@pytest.fixture
def emu(mfrc522):
    """The emulator behind the SPI bridge, started as for the driver's tests (conftest.py)."""
    return mfrc522


@pytest.fixture
def chip(emu):
    spi = RawSpi(emu.url)
    c = Chip(spi)
    c.soft_reset()
    yield c
    spi.close()


# ---- SPI -------------------------------------------------------------------------------------
def test_spi_address_byte_and_bursts(chip):
    assert addr(VERSION, True) == 0xEE and addr(FIFO_DATA, False) == 0x12
    version = chip.spi.transfer(bytes([0xEE, 0x00]))[1]
    assert version in (0x91, 0x92)  # VersionReg: MFRC522 version 1.0 or 2.0
    # a read burst: each MOSI byte addresses the next register, answers come one byte later
    assert chip.read_burst(VERSION, COMMAND, TX_CONTROL, VERSION) == [version, 0x20, 0x80, version]
    # a write burst: every data byte goes to the addressed register (here the FIFO)
    chip.spi.transfer(bytes([0x12, 0xAA, 0xBB, 0xCC]))
    assert chip.read(FIFO_LEVEL) == 3
    assert chip.fifo() == bytes.fromhex("aabbcc")


# ---- reset values (datasheet register tables) -------------------------------------------------
RESET = {
    # register: (value, mask of the bits the datasheet defines)
    COMMAND: (0x20, 0xFF),
    COM_IRQ: (0x14, 0xFF),
    DIV_IRQ: (0x00, 0x0F),  # x0h
    ERROR: (0x00, 0xFF),
    FIFO_LEVEL: (0x00, 0xFF),
    CONTROL: (0x10, 0xFF),
    BIT_FRAMING: (0x00, 0xFF),
    COLL: (0xA0, 0xE0),  # 101x xxxx: ValuesAfterColl = 1, CollPosNotValid = 1
    MODE: (0x3F, 0xFF),
    TX_CONTROL: (0x80, 0xFF),
    CRC_RESULT_H: (0xFF, 0xFF),
    CRC_RESULT_L: (0xFF, 0xFF),
    T_MODE: (0x00, 0xFF),
    T_PRESCALER: (0x00, 0xFF),
    T_RELOAD_H: (0x00, 0xFF),
    T_RELOAD_L: (0x00, 0xFF),
    # only stored by the emulator; their reset value is 00h as well
    DIV_IEN: (0x00, 0xFF),
    STATUS2: (0x00, 0xFF),
    TX_MODE: (0x00, 0xFF),
    RX_MODE: (0x00, 0xFF),
    TX_ASK: (0x00, 0xFF),
}


def _reset_values(chip) -> dict:
    regs = list(RESET)
    return {r: v & RESET[r][1] for r, v in zip(regs, chip.read_burst(*regs))}


def test_power_on_values(chip):
    assert _reset_values(chip) == {r: v for r, (v, _) in RESET.items()}
    assert chip.read(VERSION) in (0x91, 0x92)


def test_soft_reset_restores_every_reset_value(chip, emu):
    emu.present(UID4)
    chip.type_a()
    chip.write(T_MODE, 0x8D)
    chip.write(T_RELOAD_H, 0x01)
    for reg, value in ((DIV_IEN, 0x80), (TX_MODE, 0x80), (RX_MODE, 0x80), (COLL, 0x00)):
        chip.write(reg, value)
    assert chip.transceive(bytes([REQA]), 7) & RX_IRQ  # COMMAND, COM_IRQ, FIFO changed
    chip.write(COMMAND, IDLE)
    chip.write(FIFO_LEVEL, FLUSH_BUFFER)
    chip.write(FIFO_DATA, 0x00, 0x00)
    chip.write(COMMAND, CALC_CRC)  # CRC result, DivIrqReg
    chip.write(COMMAND, IDLE)
    chip.write(FIFO_DATA, *range(65))  # BufferOvfl in ErrorReg
    chip.write(BIT_FRAMING, 0x07)
    dirty = _reset_values(chip)
    assert dirty[ERROR] & BUFFER_OVFL and dirty[CRC_RESULT_L] == 0xA0 and dirty[MODE] == 0x3D
    chip.soft_reset()
    assert _reset_values(chip) == {r: v for r, (v, _) in RESET.items()}
    assert chip.read(VERSION) in (0x91, 0x92)


# ---- FIFO ------------------------------------------------------------------------------------
def test_fifo_counts_reads_in_order_and_flushes(chip):
    chip.write(FIFO_DATA, 1, 2, 3, 4)
    chip.write(FIFO_DATA, 5)
    chip.write(FIFO_DATA, 6, 7)
    assert chip.read(FIFO_LEVEL) == 7
    assert bytes(chip.read_burst(FIFO_DATA, FIFO_DATA, FIFO_DATA)) == bytes([1, 2, 3])  # first in, first out
    assert chip.read(FIFO_LEVEL) == 4  # reading decrements FIFOLevel
    chip.write(FIFO_LEVEL, FLUSH_BUFFER)
    assert chip.read(FIFO_LEVEL) == 0  # FlushBuffer empties it, and reads back as 0
    # 64 bytes fit; one more is an overflow: BufferOvfl, and ErrIRq since an ErrorReg bit is set
    chip.write(COM_IRQ, 0x7F)
    chip.write(FIFO_DATA, *range(64))
    assert chip.read(FIFO_LEVEL) == 64 and chip.read(ERROR) == 0
    chip.write(FIFO_DATA, 0xFF)
    assert chip.read(FIFO_LEVEL) == 64
    assert chip.read(ERROR) & BUFFER_OVFL
    assert chip.read(COM_IRQ) & ERR_IRQ
    chip.write(ERROR, 0x00)  # ErrorReg is read-only
    assert chip.read(ERROR) & BUFFER_OVFL
    chip.write(FIFO_LEVEL, FLUSH_BUFFER)  # FlushBuffer also clears BufferOvfl
    assert chip.read(FIFO_LEVEL) == 0 and chip.read(ERROR) == 0


# ---- CalcCRC ---------------------------------------------------------------------------------
def _calc_crc(chip, data: bytes) -> bytes:
    chip.write(COMMAND, IDLE)
    chip.write(DIV_IRQ, CRC_IRQ)  # Set2 = 0: clear CRCIRq
    chip.write(FIFO_LEVEL, FLUSH_BUFFER)
    chip.write(FIFO_DATA, *data)
    chip.write(COMMAND, CALC_CRC)
    for _ in range(100):
        if chip.read(DIV_IRQ) & CRC_IRQ:
            low, high = chip.read_burst(CRC_RESULT_L, CRC_RESULT_H)
            return bytes([low, high])
    raise AssertionError("CRCIRq never set")


@pytest.mark.parametrize("data", ["0000", "1234", "5000", "9370a1b2c3d4"])
def test_calc_crc_gives_crc_a(chip, data):
    data = bytes.fromhex(data)
    chip.write(MODE, 0x3D)  # CRCPreset 01: 6363h, CRC_A
    assert _calc_crc(chip, data) == crc_a_ref(data)  # CRCResultRegL holds the byte sent first


def test_calc_crc_takes_the_fifo_and_runs_until_another_command(chip):
    chip.write(MODE, 0x3D)
    assert _calc_crc(chip, b"\x50") == crc_a_ref(b"\x50")
    assert chip.read(FIFO_LEVEL) == 0  # the FIFO content went to the coprocessor
    assert chip.read(COMMAND) & 0x0F == CALC_CRC  # CalcCRC does not terminate by itself
    chip.write(FIFO_DATA, 0x00)  # the next byte written to the FIFO is added to the calculation
    assert bytes(chip.read_burst(CRC_RESULT_L, CRC_RESULT_H)) == bytes.fromhex("57cd")
    chip.write(COMMAND, IDLE)
    chip.write(FIFO_DATA, 0x12)  # CalcCRC ended: the byte stays in the FIFO
    assert chip.read(FIFO_LEVEL) == 1
    assert bytes(chip.read_burst(CRC_RESULT_L, CRC_RESULT_H)) == bytes.fromhex("57cd")


@pytest.mark.parametrize("preset_bits, preset", [(0, 0x0000), (1, 0x6363), (2, 0xA671), (3, 0xFFFF)],
                         ids=["0000", "6363", "A671", "FFFF"])
def test_calc_crc_preset_follows_mode_reg(chip, preset_bits, preset):
    chip.write(MODE, 0x3C | preset_bits)
    crc = crc_ref(b"\x12\x34", preset)
    assert _calc_crc(chip, b"\x12\x34") == bytes([crc & 0xFF, crc >> 8])


def test_calc_crc_right_after_reset_uses_preset_ffff(chip):
    crc = crc_ref(b"\x00\x00", 0xFFFF)  # ModeReg resets to 3Fh
    assert _calc_crc(chip, b"\x00\x00") == bytes([crc & 0xFF, crc >> 8])


# ---- ISO/IEC 14443A through Transceive ----------------------------------------------------------
UIDS = pytest.mark.parametrize("uid", [UID4, UID7, UID10], ids=["4-byte", "7-byte", "10-byte"])


def _reqa(chip) -> bytes:
    irq = chip.transceive(bytes([REQA]), tx_last_bits=7)  # REQA is a 7-bit short frame
    assert irq & (TX_IRQ | RX_IRQ) == TX_IRQ | RX_IRQ and not irq & (ERR_IRQ | TIMER_IRQ)
    assert chip.read(ERROR) == 0
    assert chip.read(CONTROL) & 0x07 == 0  # RxLastBits: whole bytes
    return chip.fifo()


@UIDS
def test_reqa_answers_atqa(chip, emu, uid):
    emu.present(uid)
    chip.type_a()
    atqa = _reqa(chip)
    assert len(atqa) == 2
    # ATQA (14443-3, sent b1 first): b8..b7 the UID size, exactly one of b5..b1 (bit frame anticollision)
    assert atqa[0] >> 6 == {4: 0, 7: 1, 10: 2}[len(uid)]
    assert bin(atqa[0] & 0x1F).count("1") == 1
    # Transceive does not end by itself: CommandReg keeps it, and IdleIRq stays clear
    assert chip.read(COMMAND) & 0x0F == TRANSCEIVE
    assert not chip.read(COM_IRQ) & IDLE_IRQ


@UIDS
def test_anticollision_and_select_give_the_uid(chip, emu, uid):
    emu.present(uid)
    chip.type_a()
    _reqa(chip)
    got = b""
    for level in range(3):
        chip.transceive(bytes([SEL[level], 0x20]))  # NVB 20h: no UID bits known yet
        answer = chip.fifo()
        assert len(answer) == 5 and chip.read(CONTROL) & 0x07 == 0
        cl, bcc = answer[:4], answer[4]
        assert bcc == cl[0] ^ cl[1] ^ cl[2] ^ cl[3]
        select = bytes([SEL[level], 0x70]) + answer
        chip.transceive(select + crc_a_ref(select))
        sak_frame = chip.fifo()
        assert len(sak_frame) == 3 and sak_frame[1:] == crc_a_ref(sak_frame[:1])
        sak = sak_frame[0]
        if sak & SAK_CASCADE:  # UID not complete: CLn is CT + three UID bytes
            assert cl[0] == CASCADE_TAG
            got += cl[1:]
            continue
        got += cl
        break
    assert got == uid


def test_collision_sets_coll_err_and_coll_pos(chip, emu):
    a, b = bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b2c3d5")  # first differ in UID bit 25 (1-based)
    emu.present(a, b)
    chip.type_a()
    assert len(_reqa(chip)) == 2  # same ATQA from both: no collision there
    irq = chip.transceive(bytes([SEL[0], 0x20]))
    assert irq & ERR_IRQ and chip.read(ERROR) & COLL_ERR
    coll = chip.read(COLL)
    assert not coll & COLL_POS_NOT_VALID and coll & 0x1F == 25
    assert coll & VALUES_AFTER_COLL  # reset value, never written
    chip.write(COLL, 0x00)  # only ValuesAfterColl is writable
    assert chip.read(COLL) == coll & 0x7F


def test_no_card_ends_in_timer_irq_not_data(chip, emu):
    chip.type_a(reload=8000)  # (8000 + 1) / 40 kHz = 200 ms
    t0 = time.monotonic()
    chip.start_transceive(bytes([REQA]), 7)
    assert chip.read(COM_IRQ) & (TX_IRQ | RX_IRQ | TIMER_IRQ) == TX_IRQ
    while not chip.read(COM_IRQ) & TIMER_IRQ:
        assert time.monotonic() - t0 < 3, "TimerIRq never set"
        time.sleep(0.002)
    assert time.monotonic() - t0 >= 0.19  # not before TReload + 1 ticks
    assert not chip.read(COM_IRQ) & RX_IRQ and chip.read(FIFO_LEVEL) == 0
    assert chip.read(COMMAND) & 0x0F == TRANSCEIVE  # the timer does not end the command


def test_without_tauto_the_timer_does_not_start(chip):
    chip.type_a()
    chip.write(T_MODE, 0x00)
    chip.start_transceive(bytes([REQA]), 7)
    time.sleep(0.05)  # ten times the 5 ms reload
    assert chip.read(COM_IRQ) & (RX_IRQ | TIMER_IRQ) == 0


def test_antenna_off_after_reset_so_a_card_stays_silent(chip, emu):
    emu.present(UID4)
    chip.type_a()
    chip.write(TX_CONTROL, 0x80)  # TxControlReg reset value: Tx1RFEn and Tx2RFEn off
    irq = chip.transceive(bytes([REQA]), 7)
    assert irq & TIMER_IRQ and not irq & RX_IRQ and chip.read(FIFO_LEVEL) == 0
    chip.write(TX_CONTROL, 0x83)
    assert len(_reqa(chip)) == 2


# ---- Idle and interrupt request bits ---------------------------------------------------------
def test_idle_command(chip):
    chip.write(COMMAND, TRANSCEIVE)
    assert chip.read(COMMAND) == TRANSCEIVE
    chip.write(COM_IRQ, 0x7F)
    chip.write(COMMAND, IDLE)
    assert chip.read(COMMAND) == IDLE
    assert not chip.read(COM_IRQ) & IDLE_IRQ  # the host starting Idle does not set IdleIRq


def test_irq_registers_set1_semantics(chip):
    assert chip.read(COM_IRQ) == 0x14  # reset: IdleIRq, LoAlertIRq
    chip.write(COM_IRQ, 0x7F)  # Set1 = 0: the marked bits are cleared
    assert chip.read(COM_IRQ) == 0x00
    chip.write(COM_IRQ, SET1 | TX_IRQ | TIMER_IRQ)  # Set1 = 1: the marked bits are set
    assert chip.read(COM_IRQ) == TX_IRQ | TIMER_IRQ
    chip.write(COM_IRQ, TIMER_IRQ)  # only the marked bit is cleared
    assert chip.read(COM_IRQ) == TX_IRQ
    chip.write(COM_IRQ, SET1)  # nothing marked: nothing changes
    assert chip.read(COM_IRQ) == TX_IRQ
    chip.write(DIV_IRQ, 0x80 | CRC_IRQ)  # DivIrqReg: Set2, the same rule
    assert chip.read(DIV_IRQ) & 0x7F == CRC_IRQ
    chip.write(DIV_IRQ, CRC_IRQ)
    assert chip.read(DIV_IRQ) & 0x7F == 0


# ---- an independent host library: pi-rc522 ---------------------------------------------------
class BridgeSpiDev:
    """The part of spidev.SpiDev that pi-rc522 uses, carried over the emulator's SPI bridge."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.spi: RawSpi | None = None
        self.max_speed_hz = 0
        self.mode = 0

    def open(self, bus: int, device: int) -> None:
        self.spi = RawSpi(self.url)

    def xfer2(self, data: list[int]) -> list[int]:
        return list(self.spi.transfer(bytes(data)))

    def close(self) -> None:
        self.spi.close()


def _stub_module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


@pytest.fixture
def pirc522(monkeypatch, emu):
    """pi-rc522's RFID on the emulator: RPi.GPIO (which refuses to load off a Raspberry Pi) and
    spidev are stand-ins; the library itself is imported and used unchanged."""
    if importlib.util.find_spec("pirc522") is None:  # not imported yet: the real RPi.GPIO would refuse
        pytest.skip("pi-rc522 not installed (requirements-dev.txt)")
    noop = lambda *a, **k: None  # noqa: E731
    gpio = _stub_module("RPi.GPIO", BOARD=10, BCM=11, OUT=0, IN=1, PUD_UP=22, FALLING=32, setmode=noop,
                        setup=noop, output=noop, add_event_detect=noop, cleanup=noop, getmode=noop)
    monkeypatch.setitem(sys.modules, "RPi", _stub_module("RPi", GPIO=gpio))
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    monkeypatch.setitem(sys.modules, "spidev", _stub_module("spidev", SpiDev=BridgeSpiDev))
    for name in ("pirc522", "pirc522.rfid", "pirc522.util", "pirc522.version"):
        monkeypatch.setitem(sys.modules, name, None)  # imported afresh here, put back afterwards
        del sys.modules[name]
    rfid = importlib.import_module("pirc522.rfid")
    monkeypatch.setattr(rfid, "SPIClass", partial(BridgeSpiDev, emu.url))
    reader = rfid.RFID(pin_rst=0, pin_irq=None, pin_mode=None)  # init(): SoftReset, timer, antenna on
    yield emu, reader
    reader.spi.close()


def test_pirc522_request_anticoll_select(pirc522):
    emu, reader = pirc522
    emu.present(UID4)
    assert reader.request() == (False, 16)  # REQA: a 16-bit ATQA
    error, answer = reader.anticoll()
    assert not error and bytes(answer) == UID4 + bytes([UID4[0] ^ UID4[1] ^ UID4[2] ^ UID4[3]])
    assert reader.select_tag(answer) is False  # SELECT with the chip's CRC_A: a 24-bit SAK + CRC


def test_pirc522_reads_a_double_size_uid(pirc522):
    emu, reader = pirc522
    emu.present(UID7)
    assert bytes(reader.read_id()) == UID7  # cascade level 1 (88 + 3 bytes) selected, then level 2


def test_pirc522_crc_from_the_chip(pirc522):
    _, reader = pirc522
    assert reader.calculate_crc([0x50, 0x00]) == [0x57, 0xCD]
    # calculate_crc leaves CalcCRC running, which per the datasheet would take the next FIFO bytes
    # into the same CRC; the library's own card_write stops it with Idle before the FIFO is reused.
    reader.dev_write(0x01, reader.mode_idle)
    assert reader.calculate_crc([0x00, 0x00]) == [0xA0, 0x1E]


def test_pirc522_no_card(pirc522):
    _, reader = pirc522
    assert reader.request() == (True, None)
    assert reader.read_id() is None
