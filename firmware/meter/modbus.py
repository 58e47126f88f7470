# Modbus RTU master over a byte stream (the contract of firmware/hal/stream.py).
#
# One request at a time: wait out the inter-frame gap, drop whatever sits in the receive
# buffer (a late answer to an earlier request must never pass for this one), send, then
# poll the non-blocking stream with short asyncio sleeps until the reply is complete or the
# deadline passes. A reply counts only with a good CRC from the unit we asked, for the
# function we asked, with the byte count we asked for. Failures are typed (ModbusError
# subclasses) and retried a bounded number of times; an exception response is the meter's
# considered answer and is not retried (except "busy").
#
# Wire deadlines run on the real clock (time.ticks_ms), not the device clock the simulator
# speeds up: the meter on the other end of the wire answers in real time.
import time

from micropython import const

from hal.stream import char_time_us

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

READ_HOLDING = const(3)
READ_INPUT = const(4)
WRITE_SINGLE = const(6)
WRITE_MULTIPLE = const(16)

_MAX_READ = const(125)  # registers per read: 250 data bytes fill the 256-byte RTU frame
_MAX_WRITE = const(123)
_BUF = const(256)
_POLL_MS = const(1)
_FAST_GAP_US = const(1750)  # fixed inter-frame gap above 19200 baud (Modbus over serial line, 2.5.1.1)
_BUSY = const(6)

_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusError(Exception):
    """Any failed Modbus transaction."""


class Timeout(ModbusError):
    """No byte of a reply within the response timeout."""


class CrcError(ModbusError):
    """A complete reply whose CRC does not match."""


class FrameError(ModbusError):
    """A reply that is not the answer to our request: truncated, wrong unit, function or size."""


class LinkError(ModbusError):
    """The stream itself failed (TCP gateway down, serial device gone)."""


class ExceptionResponse(ModbusError):
    """The unit answered with a Modbus exception; .code is the exception code."""

    def __init__(self, unit, function, code):
        super().__init__("unit %d function %d: exception %d (%s)" % (unit, function, code, _EXCEPTIONS.get(code, "unknown")))
        self.unit = unit
        self.function = function
        self.code = code


# CRC-16/MODBUS lookup table split into low and high bytes: c = i, then 8 times
# c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1. Bytes literals stay in flash when frozen
# (a tuple of 256 ints took 2.4 KB of RAM); host_tests/meter checks crc16 against pymodbus.
_CRC_LO = (
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40\x00\xc1\x81\x40\x01\xc0\x80\x41"
    b"\x00\xc1\x81\x40\x01\xc0\x80\x41\x01\xc0\x80\x41\x00\xc1\x81\x40"
)
_CRC_HI = (
    b"\x00\xc0\xc1\x01\xc3\x03\x02\xc2\xc6\x06\x07\xc7\x05\xc5\xc4\x04\xcc\x0c\x0d\xcd\x0f\xcf\xce\x0e\x0a\xca\xcb\x0b\xc9\x09\x08\xc8\xd8\x18\x19\xd9\x1b\xdb\xda\x1a\x1e\xde\xdf\x1f\xdd\x1d\x1c\xdc"
    b"\x14\xd4\xd5\x15\xd7\x17\x16\xd6\xd2\x12\x13\xd3\x11\xd1\xd0\x10\xf0\x30\x31\xf1\x33\xf3\xf2\x32\x36\xf6\xf7\x37\xf5\x35\x34\xf4\x3c\xfc\xfd\x3d\xff\x3f\x3e\xfe\xfa\x3a\x3b\xfb\x39\xf9\xf8\x38"
    b"\x28\xe8\xe9\x29\xeb\x2b\x2a\xea\xee\x2e\x2f\xef\x2d\xed\xec\x2c\xe4\x24\x25\xe5\x27\xe7\xe6\x26\x22\xe2\xe3\x23\xe1\x21\x20\xe0\xa0\x60\x61\xa1\x63\xa3\xa2\x62\x66\xa6\xa7\x67\xa5\x65\x64\xa4"
    b"\x6c\xac\xad\x6d\xaf\x6f\x6e\xae\xaa\x6a\x6b\xab\x69\xa9\xa8\x68\x78\xb8\xb9\x79\xbb\x7b\x7a\xba\xbe\x7e\x7f\xbf\x7d\xbd\xbc\x7c\xb4\x74\x75\xb5\x77\xb7\xb6\x76\x72\xb2\xb3\x73\xb1\x71\x70\xb0"
    b"\x50\x90\x91\x51\x93\x53\x52\x92\x96\x56\x57\x97\x55\x95\x94\x54\x9c\x5c\x5d\x9d\x5f\x9f\x9e\x5e\x5a\x9a\x9b\x5b\x99\x59\x58\x98\x88\x48\x49\x89\x4b\x8b\x8a\x4a\x4e\x8e\x8f\x4f\x8d\x4d\x4c\x8c"
    b"\x44\x84\x85\x45\x87\x47\x46\x86\x82\x42\x43\x83\x41\x81\x80\x40"
)


def crc16(buf, n=None):
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of buf[:n]; sent low byte first."""
    crc = 0xFFFF
    lo, hi = _CRC_LO, _CRC_HI
    for i in range(len(buf) if n is None else n):
        j = (crc ^ buf[i]) & 0xFF
        crc = (crc >> 8) ^ (hi[j] << 8 | lo[j])
    return crc


def gap_us(baudrate, char_us):
    """The 3.5-character inter-frame silence; fixed at 1750 us above 19200 baud."""
    return _FAST_GAP_US if baudrate > 19200 else (7 * char_us + 1) // 2


class ModbusMaster:
    """Modbus RTU master on stream; de: an RS-485 direction pin (None: automatic direction)."""

    def __init__(self, stream, timeout_ms=200, retries=2, de=None):
        if not isinstance(timeout_ms, int) or not 1 <= timeout_ms <= 10000:
            raise ValueError("timeout_ms must be 1..10000")
        if not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ValueError("retries must be 0..10")
        baudrate = getattr(stream, "baudrate", 9600)
        self.char_us = char_time_us(baudrate, getattr(stream, "bits", 8), getattr(stream, "parity", None),
                                    getattr(stream, "stop", 1))
        self.gap_us = gap_us(baudrate, self.char_us)
        if de is not None:
            from hal.rs485 import Rs485

            stream = Rs485(stream, de, self.char_us)
        self.stream = stream
        self.timeout_ms = timeout_ms
        self.retries = retries
        self._tx = bytearray(_BUF)
        self._rx = bytearray(_BUF)
        self._rxv = memoryview(self._rx)
        self._idle_us = time.ticks_us()  # when the line last fell quiet
        # Counters for diagnostics and the benchmark.
        self.tx_bytes = 0
        self.rx_bytes = 0
        self.transactions = 0
        self.retried = 0
        self.failures = 0

    # -- public requests -------------------------------------------------------------

    async def read(self, unit, fn, addr, count):
        """Read count registers (fn 3 holding, 4 input) from addr; returns their 2*count bytes."""
        if fn not in (READ_HOLDING, READ_INPUT):
            raise ValueError("read function must be 3 or 4")
        _check_range(addr, count, _MAX_READ)
        self._pdu(unit, fn, addr, count)
        await self._transact(6, 5 + 2 * count, 2 * count)
        return bytes(self._rx[3:3 + 2 * count])

    async def write_register(self, unit, addr, value):
        """Function 06: write one holding register; the unit echoes the request."""
        if not isinstance(value, int) or not 0 <= value <= 0xFFFF:
            raise ValueError("register value must be 0..65535")
        _check_range(addr, 1, 1)
        self._pdu(unit, WRITE_SINGLE, addr, value)
        await self._transact(6, 8, None)
        if self._rx[2:6] != self._tx[2:6]:
            raise FrameError("unit %d: write echo differs from request" % unit)

    async def write_registers(self, unit, addr, values):
        """Function 16: write consecutive holding registers."""
        n = len(values)
        _check_range(addr, n, _MAX_WRITE)
        for v in values:
            if not isinstance(v, int) or not 0 <= v <= 0xFFFF:
                raise ValueError("register value must be 0..65535")
        self._pdu(unit, WRITE_MULTIPLE, addr, n)
        tx = self._tx
        tx[6] = 2 * n
        for i, v in enumerate(values):
            tx[7 + 2 * i] = v >> 8
            tx[8 + 2 * i] = v & 0xFF
        await self._transact(7 + 2 * n, 8, None)
        if self._rx[2:6] != tx[2:6]:
            raise FrameError("unit %d: write confirmation differs from request" % unit)

    # -- one transaction ---------------------------------------------------------------

    def _pdu(self, unit, fn, a, b):
        if not isinstance(unit, int) or not 1 <= unit <= 247:
            raise ValueError("unit id must be 1..247")
        tx = self._tx
        tx[0] = unit
        tx[1] = fn
        tx[2] = a >> 8
        tx[3] = a & 0xFF
        tx[4] = b >> 8
        tx[5] = b & 0xFF

    async def _transact(self, n, expect, byte_count):
        """Send tx[:n] (+CRC) and wait for a reply of expect bytes; retries; returns nothing."""
        crc = crc16(self._tx, n)
        self._tx[n] = crc & 0xFF
        self._tx[n + 1] = crc >> 8
        n += 2
        err = None
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
                await self._settle()
            try:
                await self._exchange(n, expect, byte_count)
                return
            except ExceptionResponse as exc:
                if exc.code != _BUSY:
                    self.failures += 1
                    raise
                err = exc
            except ModbusError as exc:
                err = exc
        self.failures += 1
        raise err

    async def _exchange(self, n, expect, byte_count):
        await self._wait_gap()
        s = self.stream
        tx = self._tx
        unit = tx[0]
        fn = tx[1]
        self.transactions += 1
        try:
            s.discard()
            s.write(memoryview(tx)[:n])
        except OSError as exc:
            raise LinkError("unit %d: %s" % (unit, exc))
        self.tx_bytes += n
        # The response timeout is the meter's turnaround; the wire time of both frames is added.
        wire_ms = ((n + expect) * self.char_us + 999) // 1000
        deadline = time.ticks_add(time.ticks_ms(), self.timeout_ms + wire_ms)
        rx = self._rx
        view = self._rxv
        need = expect
        got = 0
        try:
            while got < need:
                try:
                    k = s.readinto(view[got:need])
                except OSError as exc:
                    raise LinkError("unit %d: %s" % (unit, exc))
                if k:
                    got += k
                    if got >= 2 and need == expect:
                        if rx[1] == fn | 0x80:
                            need = 5
                        elif rx[1] != fn:
                            raise FrameError("unit %d: reply with function 0x%02x to function %d" % (unit, rx[1], fn))
                        elif byte_count is not None and got >= 3 and rx[2] != byte_count:
                            raise FrameError("unit %d: reply of %d bytes, asked for %d" % (unit, rx[2], byte_count))
                    continue
                if time.ticks_diff(deadline, time.ticks_ms()) <= 0:
                    if got:
                        raise FrameError("unit %d: truncated reply, %d of %d bytes" % (unit, got, need))
                    raise Timeout("unit %d: no reply within %d ms" % (unit, self.timeout_ms))
                await asyncio.sleep_ms(_POLL_MS)
        finally:
            self.rx_bytes += got
            self._idle_us = time.ticks_us()
        if crc16(rx, need - 2) != rx[need - 2] | rx[need - 1] << 8:
            raise CrcError("unit %d: bad CRC in %d-byte reply" % (unit, need))
        if rx[0] != unit:
            raise FrameError("reply from unit %d, asked unit %d" % (rx[0], unit))
        if need != expect:
            raise ExceptionResponse(unit, fn, rx[2])

    async def _wait_gap(self):
        since = time.ticks_diff(time.ticks_us(), self._idle_us)
        if 0 <= since < self.gap_us:  # negative: the tick counter wrapped during a long idle
            await asyncio.sleep_ms((self.gap_us - since + 999) // 1000)

    async def _settle(self):
        """After a failure: drain input until the line has been quiet for a gap (bounded)."""
        quiet_ms = max(2, (self.gap_us + 999) // 1000)
        start = last = time.ticks_ms()
        while time.ticks_diff(time.ticks_ms(), start) < self.timeout_ms:
            try:
                k = self.stream.readinto(self._rxv)
            except OSError:
                break
            now = time.ticks_ms()
            if k:
                last = now
            elif time.ticks_diff(now, last) >= quiet_ms:
                break
            await asyncio.sleep_ms(_POLL_MS)
        self._idle_us = time.ticks_us()


def _check_range(addr, count, most):
    if not isinstance(addr, int) or not isinstance(count, int):
        raise ValueError("address and count must be integers")
    if not 1 <= count <= most or not 0 <= addr or addr + count > 0x10000:
        raise ValueError("register range %d+%d out of bounds (1..%d registers)" % (addr, count, most))
