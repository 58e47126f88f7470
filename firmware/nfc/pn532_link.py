# The three ways to reach a PN532, each behind the same small interface:
#   await wake(); send(frame); await receive(parser, deadline) -> parser event (NONE: timed out)
#
# HSU  a byte stream (hal/stream.py contract). Frames arrive as a stream, so bytes after
#      one frame (a response right behind its ACK) are kept for the next receive.
# SPI  every transfer starts with an operation byte: 01 data write, 02 status read
#      (answer bit 0 = ready), 03 data read. The PN532 shifts LSB first; on a bus that
#      shifts MSB first (the default here) each byte is bit-reversed in software.
# I2C  address 0x24; every read starts with the status byte (bit 0 = ready), then the frame.
# SPI and I2C read a whole frame per transaction, so the tail of a transaction is dropped.
from micropython import const

from hal import clock
from nfc.pn532_frame import BAD_FRAME, NONE

_WAKE = b"\x55\x55" + bytes(14)  # 0x55 then a long preamble while the oscillator starts
_POLL_MS = const(2)  # a 20-byte frame takes 1.7 ms at 115200 Bd
_ACK_READ = const(6)
_FRAME_READ = const(72)  # preamble..postamble of the longest frame we accept

_SPI_DW = const(0x01)
_SPI_SR = const(0x02)
_SPI_DR = const(0x03)
I2C_ADDRESS = const(0x24)


class Hsu:
    packet = False

    def __init__(self, stream):
        self.stream = stream
        self._rx = bytearray(32)
        self._pos = 0
        self._end = 0
        self.bytes_out = 0
        self.bytes_in = 0

    async def wake(self):
        self.send(_WAKE)
        await clock.io_sleep_ms(2)

    def send(self, frame):
        # Whatever is still waiting belongs to an older exchange: drop it before asking anew.
        self.stream.discard()
        self._pos = self._end = 0
        self.stream.write(frame)
        self.bytes_out += len(frame)

    async def receive(self, parser, deadline, size=_FRAME_READ):
        rx = self._rx
        while True:
            while self._pos < self._end:
                b = rx[self._pos]
                self._pos += 1
                ev = parser.push(b)
                if ev:
                    return ev
            n = self.stream.readinto(rx)
            if n:
                self.bytes_in += n
                self._pos = 0
                self._end = n
                continue
            if clock.io_expired(deadline):
                return NONE
            await clock.io_sleep_ms(_POLL_MS)

    def close(self):
        self.stream.close()


def _bit_reverse_table():
    t = bytearray(256)
    for i in range(256):
        r = 0
        for bit in range(8):
            if i & (1 << bit):
                r |= 0x80 >> bit
        t[i] = r
    return bytes(t)


class _PacketLink:
    packet = True

    def __init__(self):
        self._buf = bytearray(_FRAME_READ + 2)
        self.bytes_out = 0
        self.bytes_in = 0

    async def wake(self):
        await clock.io_sleep_ms(2)

    async def receive(self, parser, deadline, size=_FRAME_READ):
        while not self._ready():
            if clock.io_expired(deadline):
                return NONE
            await clock.io_sleep_ms(_POLL_MS)
        data = self._read(size)
        parser.reset()
        for b in data:
            ev = parser.push(b)
            if ev:
                parser.reset()
                return ev
        return BAD_FRAME  # ready, yet no complete frame in the transaction


class Spi(_PacketLink):
    def __init__(self, spi, cs, lsb_first_bus=False):
        super().__init__()
        self.spi = spi
        self.cs = cs
        self._rev = None if lsb_first_bus else _bit_reverse_table()
        self._tx = bytearray(_FRAME_READ + 2)
        cs.value(1)

    def _swap(self, buf, n):
        rev = self._rev
        if rev is not None:
            for i in range(n):
                buf[i] = rev[buf[i]]

    async def wake(self):
        # Holding CS low wakes the PN532 from power-down (UM0701-02 6.3.2.2).
        self.cs.value(0)
        await clock.io_sleep_ms(2)
        self.cs.value(1)
        await clock.io_sleep_ms(2)

    def send(self, frame):
        n = len(frame) + 1
        tx = self._tx
        if n > len(tx):
            raise ValueError("PN532 frame too long for SPI buffer")
        tx[0] = _SPI_DW
        tx[1:n] = frame
        self._swap(tx, n)
        self.cs.value(0)
        try:
            self.spi.write(memoryview(tx)[:n])
        finally:
            self.cs.value(1)
        self.bytes_out += n

    def _ready(self):
        tx = self._tx
        buf = self._buf
        tx[0] = _SPI_SR
        tx[1] = 0
        self._swap(tx, 2)
        self.cs.value(0)
        try:
            self.spi.write_readinto(memoryview(tx)[:2], memoryview(buf)[:2])
        finally:
            self.cs.value(1)
        self._swap(buf, 2)
        self.bytes_out += 2
        self.bytes_in += 2
        return buf[1] & 1

    def _read(self, size):
        tx = self._tx
        buf = self._buf
        n = size + 1
        tx[0] = _SPI_DR
        for i in range(1, n):
            tx[i] = 0
        self._swap(tx, n)
        self.cs.value(0)
        try:
            self.spi.write_readinto(memoryview(tx)[:n], memoryview(buf)[:n])
        finally:
            self.cs.value(1)
        self._swap(buf, n)
        self.bytes_out += n
        self.bytes_in += n
        return memoryview(buf)[1:n]


class I2c(_PacketLink):
    def __init__(self, i2c, address=I2C_ADDRESS):
        super().__init__()
        self.i2c = i2c
        self.address = address

    def send(self, frame):
        self.i2c.writeto(self.address, frame)
        self.bytes_out += len(frame)

    def _ready(self):
        status = memoryview(self._buf)[:1]
        try:
            self.i2c.readfrom_into(self.address, status)
        except OSError:
            return 0  # a busy PN532 may NAK its address; that only means "not ready"
        self.bytes_in += 1
        return status[0] & 1

    def _read(self, size):
        n = size + 1
        view = memoryview(self._buf)[:n]
        self.i2c.readfrom_into(self.address, view)
        self.bytes_in += n
        return view[1:]
