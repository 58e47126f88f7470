"""The Modbus master's own parts: CRC, timing constants, writes, argument checks, DE control."""
from __future__ import annotations

import random

import pytest
from pymodbus.framer.rtu import FramerRTU


def test_crc_matches_pymodbus(mpy):
    rng = random.Random(7)
    frames = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 256))) for _ in range(200)]
    frames += [b"", b"\x01\x04\x00\x48\x00\x02"]
    got = mpy.run(
        f"""
from meter.modbus import crc16
emit([crc16(bytes.fromhex(h)) for h in {[f.hex() for f in frames]!r}])
"""
    ).value
    # pymodbus gives the CRC as the two bytes on the wire read big-endian; ours is sent low byte first.
    assert [c.to_bytes(2, "little") for c in got] == [FramerRTU.compute_CRC(f).to_bytes(2, "big") for f in frames]


def test_gap_and_character_times(mpy):
    got = mpy.run(
        """
from hal.stream import char_time_us
from meter.modbus import gap_us
out = []
for baud, parity, stop in ((9600, None, 1), (9600, "E", 1), (19200, None, 1), (19200, None, 2), (38400, None, 1),
                           (115200, "E", 1)):
    c = char_time_us(baud, 8, parity, stop)
    out.append([c, gap_us(baud, c)])
emit(out)
"""
    ).value
    # 10 or 11 bits per character; 3.5 characters rounded up; 1750 us above 19200 baud.
    assert got == [[1042, 3647], [1146, 4011], [521, 1824], [573, 2006], [261, 1750], [96, 1750]]


def test_write_single_and_multiple_registers(peer, firmware):
    firmware.open(peer.url, "sdm630", retries=0)
    assert firmware.call("write", unit=1, addr=0x0014, value=0x4000) == {"ok": True}
    assert firmware.call("write", unit=1, addr=0x001C, values=[0x4000, 0x0000, 0xBEEF]) == {"ok": True}
    assert [peer.tables[3][a] for a in (0x14, 0x1C, 0x1D, 0x1E)] == [0x4000, 0x4000, 0, 0xBEEF]
    assert firmware.call("read", unit=1, fn=3, addr=0x1C, count=3) == {"ok": [0x40, 0, 0, 0, 0xBE, 0xEF]}
    peer.fault("exception", code=3)
    got = firmware.call("write", unit=1, addr=0x0014, value=1)
    assert got["cause"] == "ExceptionResponse" and got["code"] == 3


def test_another_unit_on_the_bus_is_silent(peer, firmware):
    firmware.open(peer.url, "sdm630", retries=1, timeout_ms=50)
    got = firmware.call("read", unit=7, fn=4, addr=0, count=2)
    assert got["cause"] == "Timeout"


@pytest.mark.parametrize(
    "call",
    [
        "m.read(0, 4, 0, 2)",
        "m.read(248, 4, 0, 2)",
        "m.read(1, 5, 0, 2)",
        "m.read(1, 4, 0, 0)",
        "m.read(1, 4, 0, 126)",
        "m.read(1, 4, 65535, 2)",
        "m.write_register(1, 0, 65536)",
        "m.write_register(1, 0, -1)",
        "m.write_registers(1, 0, [])",
        "m.write_registers(1, 0, [1, 70000])",
    ],
)
def test_bad_requests_are_refused_before_the_wire(mpy, call):
    out = mpy.run(
        f"""
import asyncio
from meter.modbus import ModbusMaster

class Wire:
    sent = 0
    def write(self, b): Wire.sent += len(b)
    def readinto(self, b): return 0
    def discard(self): pass

m = ModbusMaster(Wire(), timeout_ms=10, retries=0)
try:
    asyncio.run({call})
    emit("accepted")
except ValueError as e:
    emit(["refused", Wire.sent])
"""
    ).value
    assert out == ["refused", 0]


def test_bad_master_parameters(mpy):
    out = mpy.run(
        """
from meter.modbus import ModbusMaster
res = []
for kw in ({"timeout_ms": 0}, {"timeout_ms": 20000}, {"retries": -1}, {"retries": 11}):
    try:
        ModbusMaster(None, **kw); res.append("accepted")
    except ValueError:
        res.append("refused")
emit(res)
"""
    ).value
    assert out == ["refused"] * 4


def test_de_pin_high_only_while_sending(mpy):
    """Direction control: DE rises before the first byte, drops after the UART drained (flush)."""
    out = mpy.run(
        """
import asyncio
from meter.modbus import ModbusMaster, crc16

trace = []

class Pin:
    def value(self, v=None):
        trace.append(["de", v])

class Uart:
    baudrate = 19200
    def __init__(self):
        self.reply = b""
    def write(self, b):
        trace.append(["write", len(b)])
        # the meter's answer to "read 2 input registers at 0"
        body = bytes([1, 4, 4, 0x44, 0x7A, 0, 0])
        c = crc16(body)
        self.reply = body + bytes([c & 0xFF, c >> 8])
        return len(b)
    def flush(self):
        trace.append(["flush"])
    def readinto(self, b):
        n = len(self.reply)
        b[:n] = self.reply
        self.reply = b""
        return n
    def discard(self):
        pass

m = ModbusMaster(Uart(), de=Pin())
data = asyncio.run(m.read(1, 4, 0, 2))
emit([trace, list(data)])
"""
    ).value
    trace, data = out
    assert trace == [["de", 0], ["de", 1], ["write", 8], ["flush"], ["de", 0]]
    assert data == [0x44, 0x7A, 0, 0]


def test_de_without_flush_waits_out_the_wire_time(mpy):
    out = mpy.run(
        """
import time
from hal.rs485 import Rs485
states = []
class Pin:
    def value(self, v=None): states.append(v)
class Stream:
    def write(self, b): states.append("w"); return len(b)
port = Rs485(Stream(), Pin(), 1042)
port.write(b"12345678")
emit(states)
"""
    ).value
    assert out == [0, 1, "w", 0]
