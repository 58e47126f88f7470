# PN532 NFC controller driver (NXP UM0701-02): wake, configure, list ISO 14443A cards.
#
# The link (pn532_link.Hsu/Spi/I2c) is passed in. Every command is: send frame, wait for
# the ACK, wait for the answer, each under its own deadline. A garbled answer is asked for
# again with a NACK; a command the chip refused (NACK, error frame, no ACK) is sent again
# once; a stale answer from an older command is skipped. After a timeout the pending
# command is aborted with an ACK so the next one starts clean.
from micropython import const

from hal import clock
from nfc import ReaderError, ReaderTimeout
from nfc.pn532_frame import (
    ACK, ERROR_TFI, GOT_ACK, GOT_FRAME, GOT_NACK, NACK, NONE, TFI_PN532, BAD_FRAME, Parser, build,
)

_GET_FIRMWARE_VERSION = const(0x02)
_SAM_CONFIGURATION = const(0x14)
_RF_CONFIGURATION = const(0x32)
_IN_LIST_PASSIVE_TARGET = const(0x4A)
_IN_RELEASE = const(0x52)

_RF_MAX_RETRIES = const(0x05)
_BR_106A = const(0x00)  # 106 kbps ISO/IEC 14443 type A
_IC_PN532 = const(0x32)
_SAM_NORMAL = const(0x01)
_SAM_TIMEOUT = const(0x14)  # x 50 ms; only used in virtual-card mode
_MAX_NACKS = const(2)
_UID_LENGTHS = (4, 7, 10)


class Pn532:
    def __init__(self, link, ack_ms=50, timeout_ms=150, max_retries=1, resend=1):
        """max_retries: passive activation retries per poll (0..254; 0xFF would wait forever)."""
        if not 0 <= max_retries < 0xFF:
            raise ValueError("max_retries must be 0..254: 255 makes the PN532 wait forever")
        self.link = link
        self.ack_ms = ack_ms
        self.timeout_ms = timeout_ms
        self.max_retries = max_retries
        self.resend = resend
        self.firmware = None  # (ic, ver, rev, support) after init()
        self._parser = Parser()
        self._tx = bytearray(32)
        self._txv = memoryview(self._tx)
        self._params = bytearray(4)

    async def init(self):
        """Wake the chip and configure it for bounded ISO 14443A polls."""
        await self.link.wake()
        p = self._params
        # SAMConfiguration first: it also takes a HSU chip out of LowVbat mode.
        p[0] = _SAM_NORMAL
        p[1] = _SAM_TIMEOUT
        p[2] = 0x01
        await self._call(_SAM_CONFIGURATION, memoryview(p)[:3])
        n = await self._call(_GET_FIRMWARE_VERSION)
        d = self._parser.data
        if n < 4 or d[2] != _IC_PN532:
            raise ReaderError("not a PN532 (GetFirmwareVersion)")
        self.firmware = (d[2], d[3], d[4], d[5])
        p[0] = _RF_MAX_RETRIES
        p[1] = 0x02  # MxRtyATR
        p[2] = 0x01  # MxRtyPSL
        p[3] = self.max_retries  # MxRtyPassiveActivation: finite, so a poll always ends
        await self._call(_RF_CONFIGURATION, p)

    async def read_uid(self, uid):
        """One poll: the UID of a card in the field into uid (>= 10 bytes); its length, 0 if none."""
        p = self._params
        p[0] = 1  # MaxTg: one card
        p[1] = _BR_106A
        n = await self._call(_IN_LIST_PASSIVE_TARGET, memoryview(p)[:2])
        d = self._parser.data
        # d[2:] = NbTg, Tg, SENS_RES(2), SEL_RES, NFCIDLength, NFCID1..., [ATS]
        if n < 1 or d[2] == 0:
            return 0
        if d[2] != 1 or n < 6:
            raise ReaderError("InListPassiveTarget: malformed answer")
        tg = d[3]
        length = d[7]
        if length not in _UID_LENGTHS or n < 6 + length:
            raise ReaderError("InListPassiveTarget: bad UID length")
        for i in range(length):
            uid[i] = d[8 + i]
        await self.release(tg)
        return length

    async def release(self, tg=0):
        """InRelease: let go of target tg (0: all) so the next poll starts from scratch."""
        p = self._params
        p[0] = tg
        await self._call(_IN_RELEASE, memoryview(p)[:1])

    async def _call(self, cmd, params=b""):
        """Run one command; return the answer's payload length (answer in parser.data[2:])."""
        link = self.link
        n = build(self._tx, cmd, params)
        for attempt in range(self.resend + 1):
            link.send(self._txv[:n])
            ev = await self._wait_ack()
            if ev == GOT_ACK:
                break
        else:
            if ev == NONE:
                raise ReaderTimeout("PN532: no ACK for command 0x%02x" % cmd)
            raise ReaderError("PN532: command 0x%02x refused" % cmd)
        parser = self._parser
        deadline = clock.io_deadline(self.timeout_ms)
        nacks = 0
        while True:
            ev = await link.receive(parser, deadline)
            if ev == GOT_FRAME:
                d = parser.data
                if d[0] == ERROR_TFI:
                    raise ReaderError("PN532: error frame for command 0x%02x" % cmd)
                if parser.length >= 2 and d[0] == TFI_PN532 and d[1] == cmd + 1:
                    return parser.length - 2
                continue  # an answer to something older: skip it
            if ev == BAD_FRAME:
                if nacks < _MAX_NACKS:
                    nacks += 1
                    link.send(NACK)  # "send that again"
                    continue
                raise ReaderError("PN532: corrupt answer to command 0x%02x" % cmd)
            if ev == NONE:
                link.send(ACK)  # abort whatever the chip is still doing
                raise ReaderTimeout("PN532: no answer to command 0x%02x" % cmd)

    async def _wait_ack(self):
        parser = self._parser
        parser.reset()
        deadline = clock.io_deadline(self.ack_ms)
        while True:
            ev = await self.link.receive(parser, deadline, 6)
            if ev == GOT_ACK or ev == GOT_NACK or ev == NONE:
                return ev
            if ev == GOT_FRAME and parser.data[0] == ERROR_TFI:
                return GOT_NACK
            # garbage or a stale frame: keep looking until the deadline
