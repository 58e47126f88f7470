"""PN532 framing and the SPI/I2C links at the frame level, under MicroPython with scripted buses."""
from __future__ import annotations

from host_tests.nfc.scenario import UID7
from sim.pn532_emu import ACK, info_frame

PARSE = """
from nfc import pn532_frame as f
p = f.Parser()
def events(data):
    out = []
    for b in data:
        ev = p.push(b)
        if ev == f.GOT_FRAME:
            out.append(["frame", bytes(p.data[:p.length]).hex()])
        elif ev:
            out.append({1: "ack", 2: "nack", 4: "bad"}[ev])
    return out
"""


def test_build_command_frame(mpy):
    out = mpy.run("""
from nfc.pn532_frame import build
buf = bytearray(32)
n = build(buf, 0x02)
emit(bytes(buf[:n]).hex())
buf2 = bytearray(32)
n2 = build(buf2, 0x4A, b"\\x01\\x00")
emit(bytes(buf2[:n2]).hex())
""").results
    assert out == ["0000ff02fed4022a00", "0000ff04fcd44a0100e100"]


def test_parser_ack_nack_frames_and_resync(mpy):
    good = info_frame(bytes([0x03, 0x32, 0x01, 0x06, 0x07]))
    bad_lcs = bytearray(good)
    bad_lcs[4] ^= 1
    bad_dcs = bytearray(good)
    bad_dcs[-2] ^= 1
    extended = bytes.fromhex("0000ffffff0001ff") + b"\x11" * 4
    stream = (b"\x13\x37\xff" + ACK + b"\x00\x00\x00" + bytes(bad_lcs) + bytes(bad_dcs) + extended
              + bytes.fromhex("0000ffff0000") + b"\x00\xff\x05" + good + bytes.fromhex("0000ff01ff7f8100"))
    out = mpy.run(PARSE + f"emit(events({stream!r}))").value
    assert out == ["ack", "bad", "bad", "nack", "bad", ["frame", good[5:-2].hex()], ["frame", "7f"]]


def test_parser_handles_one_byte_at_a_time_after_garbage(mpy):
    good = info_frame(b"\x4b\x01\x01\x00\x44\x00\x07" + UID7)
    stream = bytes.fromhex("0000ff09") + good
    out = mpy.run(PARSE + f"emit(events({stream!r}))").value
    # the stray header swallows part of the real frame: it must fail its checksum, never pass
    assert all(e == "bad" or e == ["frame", good[5:-2].hex()] for e in out)


SPI_FAKE = """
import asyncio
from nfc.pn532 import Pn532
from nfc.pn532_link import Spi, I2c

# Bit reversal worked out independently of the driver's table: through the binary digits.
REV = bytes(int("".join(reversed("{:08b}".format(i))), 2) for i in range(256))

class Cs:
    def __init__(self, bus):
        self.bus = bus
    def value(self, v=None):
        if v == 0:
            self.bus.cur = bytearray()
        elif v == 1 and self.bus.cur is not None:
            self.bus.wire.append(bytes(self.bus.cur))
            self.bus.cur = None

class FakeSpi:
    # The PN532's SPI side, LSB first on the wire, answering from a script of frames.
    def __init__(self, answers):
        self.answers = list(answers)
        self.wire = []
        self.cur = None
    def write(self, buf):
        self.cur += bytes(buf)
    def write_readinto(self, w, r):
        self.cur += bytes(w)
        op = REV[w[0]]
        out = [0] * len(r)
        if op == 2:
            out[1] = 1 if self.answers else 0
        elif op == 3:
            frame = self.answers.pop(0)
            for i in range(min(len(frame), len(r) - 1)):
                out[1 + i] = frame[i]
        for i in range(len(r)):
            r[i] = REV[out[i]]

class FakeI2c:
    def __init__(self, answers):
        self.answers = list(answers)
        self.writes = []
        self.reads = []
    def writeto(self, addr, buf):
        self.writes.append([addr, bytes(buf).hex()])
    def readfrom_into(self, addr, buf):
        self.reads.append([addr, len(buf)])
        for i in range(len(buf)):
            buf[i] = 0
        if not self.answers:
            return
        buf[0] = 1
        if len(buf) > 1:
            frame = self.answers.pop(0)
            for i in range(min(len(frame), len(buf) - 1)):
                buf[1 + i] = frame[i]
"""


def _answers() -> list[bytes]:
    listed = info_frame(b"\x4b\x01\x01\x00\x44\x00\x07" + UID7)
    return [ACK, listed, ACK, info_frame(b"\x53\x00")]


def test_spi_link_frames(mpy):
    out = mpy.run(SPI_FAKE + f"""
bus = FakeSpi({_answers()!r})
drv = Pn532(Spi(bus, Cs(bus)))
uid = bytearray(10)
n = asyncio.run(drv.read_uid(uid))
emit([n, bytes(uid[:n]).hex(), [bytes(REV[b] for b in t).hex() for t in bus.wire]])
""").value
    n, uid, wire = out
    assert (n, uid) == (7, UID7.hex())
    # data write = 01 + frame; status read = 02 00; data read = 03 + frame-long dummy bytes
    assert wire[0] == "01" + "0000ff04fcd44a0100e100"
    assert wire[1] == "0200"
    assert wire[2] == "03" + "00" * 6  # the ACK
    assert wire[3] == "0200" and wire[4].startswith("03") and len(wire[4]) == 2 * 73
    assert wire[5] == "01" + "0000ff03fdd45201d900"  # InRelease target 1


def test_spi_link_on_an_lsb_first_bus_sends_bytes_as_is(mpy):
    out = mpy.run(SPI_FAKE + f"""
bus = FakeSpi([])
link = Spi(bus, Cs(bus), lsb_first_bus=True)
link.send(b"\\x00\\x00\\xff\\x00\\xff\\x00")
emit(bus.wire[0].hex())
""").value
    assert out == "01" + ACK.hex()


def test_i2c_link_frames(mpy):
    out = mpy.run(SPI_FAKE + f"""
bus = FakeI2c({_answers()!r})
drv = Pn532(I2c(bus))
uid = bytearray(10)
n = asyncio.run(drv.read_uid(uid))
emit([n, bytes(uid[:n]).hex(), bus.writes, bus.reads])
""").value
    n, uid, writes, reads = out
    assert (n, uid) == (7, UID7.hex())
    assert writes[0] == [0x24, "0000ff04fcd44a0100e100"]  # frames go out as they are, no prefix
    # status polls read one byte; frame reads add the status byte in front of the frame
    assert reads[:2] == [[0x24, 1], [0x24, 7]] and [0x24, 73] in reads


def test_silent_packet_bus_times_out(mpy):
    out = mpy.run(SPI_FAKE + """
bus = FakeI2c([])
drv = Pn532(I2c(bus), ack_ms=20)
try:
    asyncio.run(drv.read_uid(bytearray(10)))
    emit("no error")
except Exception as exc:
    emit([type(exc).__name__, str(exc)])
""").value
    assert out == ["ReaderTimeout", "PN532: no ACK for command 0x4a"]
