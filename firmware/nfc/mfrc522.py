# MFRC522 contactless reader IC (NXP MFRC522 datasheet rev 3.9) over SPI, ISO/IEC 14443A.
#
# The SPI bus and chip-select pin are passed in (machine.SPI + machine.Pin on the ESP32,
# boards/host/spi_bridge.py on the host). SPI address byte: bit 7 = read, bits 6..1 =
# register. One poll: WUPA (wakes idle and halted cards, so a card held since the last
# poll answers again), anticollision + select for cascade levels 1..3, then HLTA.
# CRC_A is computed here, not by the chip, to save bus round trips.
from micropython import const

from hal import clock
from nfc import ReaderError, ReaderTimeout

_COMMAND = const(0x01)
_COM_IRQ = const(0x04)
_ERROR = const(0x06)
_FIFO_DATA = const(0x09)
_FIFO_LEVEL = const(0x0A)
_CONTROL = const(0x0C)
_BIT_FRAMING = const(0x0D)
_COLL = const(0x0E)
_MODE = const(0x11)
_TX_CONTROL = const(0x14)
_TX_ASK = const(0x15)
_T_MODE = const(0x2A)
_T_PRESCALER = const(0x2B)
_T_RELOAD_H = const(0x2C)
_T_RELOAD_L = const(0x2D)
_VERSION = const(0x37)

_CMD_IDLE = const(0x00)
_CMD_TRANSCEIVE = const(0x0C)
_CMD_SOFT_RESET = const(0x0F)
_POWER_DOWN = const(0x10)

_IRQ_RX_IDLE = const(0x30)
_IRQ_TIMER = const(0x01)
_ERR_FATAL = const(0x13)  # BufferOvfl, ParityErr, ProtocolErr
_ERR_COLL = const(0x08)
_START_SEND = const(0x80)
_COLL_POS_NOT_VALID = const(0x20)

_REQA = const(0x26)
_WUPA = const(0x52)
_CASCADE_TAG = const(0x88)
_SAK_CASCADE = const(0x04)
_SEL = (0x93, 0x95, 0x97)
_VERSIONS = (0x91, 0x92, 0x88, 0xB2)  # MFRC522 v1, v2; FM17522 clones

_DONE_MS = const(40)  # the chip's own timer fires after 5 ms; this catches a stuck chip


def crc_a(data, n):
    """ISO/IEC 14443-3 CRC_A over data[:n]; sent low byte first."""
    crc = 0x6363
    for i in range(n):
        b = (data[i] ^ crc) & 0xFF
        b = (b ^ (b << 4)) & 0xFF
        crc = (crc >> 8) ^ (b << 8) ^ (b << 3) ^ (b >> 4)
    return crc


class Mfrc522:
    def __init__(self, spi, cs):
        self.spi = spi
        self.cs = cs
        self.version = None
        self.bytes_on_bus = 0
        self._reg = bytearray(2)
        self._regr = bytearray(2)
        self._fifo_tx = bytearray(17)
        self._fifo_rx = bytearray(17)
        self._frame = bytearray(9)  # SEL NVB CL0..CL3 BCC CRC CRC
        self._rx = bytearray(16)
        self.rx_bits = 0  # valid bits in the last received byte (0: all eight)
        self.collision = False
        cs.value(1)

    # ---- registers ----------------------------------------------------------------
    def _write(self, reg, value):
        b = self._reg
        b[0] = (reg << 1) & 0x7E
        b[1] = value
        self.cs.value(0)
        try:
            self.spi.write(b)
        finally:
            self.cs.value(1)
        self.bytes_on_bus += 2

    def _read(self, reg):
        b = self._reg
        b[0] = 0x80 | ((reg << 1) & 0x7E)
        b[1] = 0
        self.cs.value(0)
        try:
            self.spi.write_readinto(b, self._regr)
        finally:
            self.cs.value(1)
        self.bytes_on_bus += 2
        return self._regr[1]

    def _write_fifo(self, data, n):
        tx = self._fifo_tx
        tx[0] = (_FIFO_DATA << 1) & 0x7E
        for i in range(n):
            tx[1 + i] = data[i]
        self.cs.value(0)
        try:
            self.spi.write(memoryview(tx)[: n + 1])
        finally:
            self.cs.value(1)
        self.bytes_on_bus += n + 1

    def _read_fifo(self, n):
        tx = self._fifo_tx
        addr = 0x80 | ((_FIFO_DATA << 1) & 0x7E)
        for i in range(n):
            tx[i] = addr
        tx[n] = 0
        self.cs.value(0)
        try:
            self.spi.write_readinto(memoryview(tx)[: n + 1], memoryview(self._fifo_rx)[: n + 1])
        finally:
            self.cs.value(1)
        self.bytes_on_bus += n + 1
        rx = self._rx
        for i in range(n):
            rx[i] = self._fifo_rx[1 + i]

    # ---- chip ---------------------------------------------------------------------
    async def init(self):
        """Soft reset, check the version, set the 5 ms answer timer and switch the field on."""
        self._write(_COMMAND, _CMD_SOFT_RESET)
        deadline = clock.io_deadline(_DONE_MS)
        while self._read(_COMMAND) & _POWER_DOWN:
            if clock.io_expired(deadline):
                raise ReaderTimeout("MFRC522: stays in soft reset")
            await clock.io_sleep_ms(1)
        version = self._read(_VERSION)
        if version not in _VERSIONS:
            raise ReaderError("MFRC522: unknown version 0x%02x (wiring?)" % version)
        self.version = version
        # Timer: 13.56 MHz / (2 * 169 + 1) = 40 kHz, 200 ticks = 5 ms, started by each send.
        self._write(_T_MODE, 0x80)
        self._write(_T_PRESCALER, 169)
        self._write(_T_RELOAD_H, 0)
        self._write(_T_RELOAD_L, 200)
        self._write(_TX_ASK, 0x40)  # 100 % ASK, as type A needs
        self._write(_MODE, 0x3D)  # CRC preset 6363 (CRC_A)
        self._write(_TX_CONTROL, self._read(_TX_CONTROL) | 0x03)  # antenna drivers on

    async def transceive(self, data, n, tx_last_bits=0, rx_align=0):
        """Send data[:n] (last byte tx_last_bits long, 0 = full); answer in self._rx.

        Returns the number of bytes received, 0 when no card answered; sets self.collision.
        """
        self._write(_COMMAND, _CMD_IDLE)
        self._write(_COM_IRQ, 0x7F)  # clear every interrupt flag
        self._write(_FIFO_LEVEL, 0x80)  # flush
        self._write_fifo(data, n)
        framing = (rx_align << 4) | tx_last_bits
        self._write(_BIT_FRAMING, framing)
        self._write(_COMMAND, _CMD_TRANSCEIVE)
        self._write(_BIT_FRAMING, framing | _START_SEND)
        deadline = clock.io_deadline(_DONE_MS)
        while True:
            irq = self._read(_COM_IRQ)
            if irq & _IRQ_RX_IDLE:
                break
            if irq & _IRQ_TIMER:
                self._write(_COMMAND, _CMD_IDLE)
                return 0
            if clock.io_expired(deadline):
                self._write(_COMMAND, _CMD_IDLE)
                raise ReaderTimeout("MFRC522: transceive never finished")
            await clock.io_sleep_ms(1)
        self._write(_BIT_FRAMING, framing)
        err = self._read(_ERROR)
        if err & _ERR_FATAL:
            raise ReaderError("MFRC522: receive error 0x%02x" % err)
        self.collision = bool(err & _ERR_COLL)
        count = self._read(_FIFO_LEVEL) & 0x7F
        if count > len(self._rx):
            raise ReaderError("MFRC522: answer too long")
        self._read_fifo(count)
        self.rx_bits = self._read(_CONTROL) & 0x07
        return count

    # ---- ISO 14443A ----------------------------------------------------------------
    async def request(self, wake=True):
        """WUPA (wake=True) or REQA; True when a card answered with an ATQA."""
        f = self._frame
        f[0] = _WUPA if wake else _REQA
        n = await self.transceive(f, 1, 7)
        if n == 0:
            return False
        if self.collision:
            return True  # several cards answered at once: anticollision sorts them out
        if n != 2 or self.rx_bits:
            raise ReaderError("MFRC522: malformed ATQA")
        return True

    async def halt(self):
        f = self._frame
        f[0] = 0x50
        f[1] = 0
        crc = crc_a(f, 2)
        f[2] = crc & 0xFF
        f[3] = crc >> 8
        if await self.transceive(f, 4):
            raise ReaderError("MFRC522: card answered HLTA")  # a halted card stays silent

    async def _anticollision(self, level):
        """Resolve one cascade level into frame[2:7] (CLn + BCC) by bit-wise anticollision."""
        f = self._frame
        f[0] = _SEL[level]
        for i in range(2, 9):
            f[i] = 0
        known = 0  # valid UID bits of this level in f[2:]
        for _ in range(33):  # every round learns at least one more bit
            full = known >> 3
            extra = known & 7
            f[1] = ((2 + full) << 4) | extra
            n = await self.transceive(f, 2 + full + (1 if extra else 0), extra, extra)
            if n == 0:
                raise ReaderError("MFRC522: card left during anticollision")
            rx = self._rx
            keep = (1 << extra) - 1  # bits of the first byte we sent ourselves
            f[2 + full] = (f[2 + full] & keep) | (rx[0] & ~keep & 0xFF)
            for i in range(1, n):
                if 2 + full + i < 7:
                    f[2 + full + i] = rx[i]
            if not self.collision:
                if full + n != 5 or self.rx_bits:
                    raise ReaderError("MFRC522: short anticollision answer")
                if f[2] ^ f[3] ^ f[4] ^ f[5] ^ f[6]:
                    raise ReaderError("MFRC522: UID check byte wrong")
                return
            coll = self._read(_COLL)
            if coll & _COLL_POS_NOT_VALID:
                raise ReaderError("MFRC522: collision out of range")
            pos = coll & 0x1F or 32  # 1-based, counted from bit 0 of the first received byte
            bit = full * 8 + pos  # UID bits up to and including the colliding one
            if bit <= known or bit > 32:
                raise ReaderError("MFRC522: collision position went backwards")
            # Go on with the cards that have a 1 there; the others drop out.
            i = 2 + ((bit - 1) >> 3)
            f[i] = (f[i] & ((1 << ((bit - 1) & 7)) - 1)) | (1 << ((bit - 1) & 7))
            known = bit
        raise ReaderError("MFRC522: anticollision did not converge")

    async def _select(self):
        f = self._frame
        f[1] = 0x70
        crc = crc_a(f, 7)
        f[7] = crc & 0xFF
        f[8] = crc >> 8
        n = await self.transceive(f, 9)
        rx = self._rx
        if n != 3 or self.collision:
            raise ReaderError("MFRC522: no SAK")
        if crc_a(rx, 1) != rx[1] | (rx[2] << 8):
            raise ReaderError("MFRC522: SAK CRC wrong")
        return rx[0]

    async def read_uid(self, uid, wake=True):
        """One poll: the UID of a card in the field into uid (>= 10 bytes); its length, 0 if none.

        wake=False polls with REQA, which halted cards ignore: repeated, it walks through
        every card in the field once.
        """
        if not await self.request(wake):
            return 0
        length = 0
        f = self._frame
        for level in range(3):
            await self._anticollision(level)
            sak = await self._select()
            cascade = sak & _SAK_CASCADE
            if cascade and f[2] == _CASCADE_TAG and level < 2:
                for i in range(3):
                    uid[length + i] = f[3 + i]
                length += 3
                continue
            if cascade or f[2] == _CASCADE_TAG and level < 2:
                raise ReaderError("MFRC522: cascade bit and tag disagree")
            for i in range(4):
                uid[length + i] = f[2 + i]
            length += 4
            await self.halt()
            return length
        raise ReaderError("MFRC522: UID longer than three cascade levels")
