# A stand-in for the ESP32 port's `machine` module, so boards/esp32/board.py runs on the unix port
# (host_tests/flash/test_esp32_board.py, test_esp32_nfc.py). Strict: each constructor takes what
# the ESP32 port takes (MicroPython v1.25: docs.micropython.org esp32 quickref and the machine.*
# pages; ports/esp32/machine_*.c) and nothing else, so a wrong keyword fails here as on a board.
# It records what the board layer asks of the hardware (`made`); `attach` wires a bus to an
# emulated peripheral; a starved WDT resets the process.
import errno
import sys
import time

CHIP = "esp32"  # "esp32s3" on an S3 board: which GPIOs exist and which are input-only
made = []  # ("Pin"|"UART"|"I2C"|"SoftI2C"|"SPI"|"WDT", args...) in creation order
levels = {}  # gpio -> level, for inputs the test sets
on_reset = None  # test hook: on_reset(cause) instead of ending the process
_peers = {}  # (kind, bus id) -> what the bus talks to; ("CS", gpio) -> an SPI peer's chip select

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
_GPIOS = {
    "esp32": tuple(range(0, 20)) + (21, 22, 23, 25, 26, 27) + tuple(range(32, 40)),
    "esp32s3": tuple(range(0, 22)) + tuple(range(26, 49)),
}
_FIRST_INPUT_ONLY = {"esp32": 34, "esp32s3": 99}  # the S3 has no input-only pins


def attach(kind, bus_id, peer, cs=None):
    """Test hook: the bus kind ("UART", "I2C", "SoftI2C" by its SCL GPIO, "SPI") number bus_id
    talks to peer (a stream for a UART, boards/host's i2c/spi bridge); cs: the GPIO that is the
    SPI peer's chip select."""
    _peers[(kind, bus_id)] = peer
    if cs is not None:
        _peers[("CS", cs)] = peer.cs


def _gpio(pin):
    # machine_pin_find: a Pin or a GPIO number that exists on the chip
    if isinstance(pin, Pin):
        return pin.gpio
    if isinstance(pin, int) and pin in _GPIOS[CHIP]:
        return pin
    raise ValueError("invalid pin")


def _int(name, value, allowed):
    if value not in allowed:
        raise ValueError("invalid %s %r" % (name, value))
    return value


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_DOWN = 1
    PULL_UP = 2
    IRQ_RISING = 1
    IRQ_FALLING = 2
    WAKE_LOW = 4
    WAKE_HIGH = 5
    DRIVE_0 = 0
    DRIVE_1 = 1
    DRIVE_2 = 2
    DRIVE_3 = 3

    def __init__(self, id, mode=None, pull=-1, *, value=None, drive=None, hold=None):
        self.gpio = _gpio(id)
        if mode is not None:
            _int("mode", mode, (Pin.IN, Pin.OUT, Pin.OPEN_DRAIN))
            if mode & 2 and self.gpio >= _FIRST_INPUT_ONLY[CHIP]:
                raise ValueError("pin can only be input")
        if pull is not None and pull != -1:
            _int("pull", pull, (Pin.PULL_DOWN, Pin.PULL_UP, Pin.PULL_DOWN | Pin.PULL_UP))
        if drive is not None:
            _int("drive", drive, (0, 1, 2, 3))
        made.append(("Pin", self.gpio, mode, None if pull == -1 else pull, value))
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return levels.get(self.gpio, 1)
        levels[self.gpio] = 1 if v else 0
        cs = _peers.get(("CS", self.gpio))
        if cs is not None:
            cs.value(levels[self.gpio])

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class UART:
    INV_TX = 32
    INV_RX = 4
    RTS = 1
    CTS = 2

    def __init__(self, id, baudrate=115200, bits=8, parity=None, stop=1, *, tx=None, rx=None, rts=None, cts=None,
                 txbuf=None, rxbuf=None, timeout=0, timeout_char=0, invert=0, flow=0):
        if id not in (0, 1, 2):
            raise ValueError("UART(%d) does not exist" % id)
        _int("data bits", bits, (5, 6, 7, 8))
        _int("parity", parity, (None, 0, 1))
        _int("stop bits", stop, (1, 2))
        settings = {"baudrate": baudrate, "bits": bits, "parity": parity, "stop": stop, "timeout": timeout,
                    "timeout_char": timeout_char}
        for name, pin in (("tx", tx), ("rx", rx), ("rts", rts), ("cts", cts)):
            if pin is not None:
                settings[name] = _gpio(pin)
        if rxbuf is not None:
            settings["rxbuf"] = rxbuf
        made.append(("UART", id, settings))
        self.rx = bytearray()
        self.tx = bytearray()
        self._peer = _peers.get(("UART", id))
        self._scratch = bytearray(64)

    def _pump(self):
        # what the attached peer sent has arrived in the receive buffer
        if self._peer is not None:
            n = self._peer.readinto(self._scratch)
            if n:
                self.rx.extend(self._scratch[:n])

    def any(self):
        self._pump()
        return len(self.rx)

    def read(self, nbytes=None):
        self._pump()
        if not self.rx:
            return None  # nothing came within timeout=0
        n = len(self.rx) if nbytes is None else min(nbytes, len(self.rx))
        out = bytes(self.rx[:n])
        self.rx = self.rx[n:]
        return out

    def readinto(self, buf, nbytes=None):
        data = self.read(len(buf) if nbytes is None else min(nbytes, len(buf)))
        if data is None:
            return None
        buf[: len(data)] = data
        return len(data)

    def write(self, buf):
        self.tx.extend(buf)
        if self._peer is not None:
            self._peer.write(buf)
        return len(buf)

    def flush(self):
        pass

    def deinit(self):
        made.append(("deinit",))


class I2C:
    def __init__(self, id, *, scl=None, sda=None, freq=400000, timeout=50000):
        if id not in (0, 1):
            raise ValueError("I2C(%d) doesn't exist" % id)
        self._setup("I2C", id, scl, sda, freq)

    def _setup(self, kind, bus_id, scl, sda, freq):
        settings = {"freq": freq}
        if scl is not None:
            settings["scl"] = _gpio(scl)
        if sda is not None:
            settings["sda"] = _gpio(sda)
        made.append((kind, bus_id, settings))
        self._peer = _peers.get((kind, bus_id if kind == "I2C" else settings["scl"]))

    def _device(self):
        if self._peer is None:
            raise OSError(errno.ENODEV)  # nobody acknowledges the address
        return self._peer

    def writeto(self, addr, buf, stop=True):
        return self._device().writeto(addr, buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._device().readfrom_into(addr, buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)


class SoftI2C(I2C):
    def __init__(self, scl, sda, *, freq=400000, timeout=50000):
        self._setup("SoftI2C", None, scl, sda, freq)


class SPI:
    MSB = 0
    LSB = 1

    def __init__(self, id, baudrate=500000, *, polarity=0, phase=0, bits=8, firstbit=MSB, sck=None, mosi=None,
                 miso=None):
        if id not in (1, 2):
            raise ValueError("SPI(%d) doesn't exist" % id)
        _int("polarity", polarity, (0, 1))
        _int("phase", phase, (0, 1))
        _int("firstbit", firstbit, (SPI.MSB, SPI.LSB))
        settings = {"baudrate": baudrate, "polarity": polarity, "phase": phase, "bits": bits, "firstbit": firstbit}
        for name, pin in (("sck", sck), ("mosi", mosi), ("miso", miso)):
            if pin is not None:
                settings[name] = _gpio(pin)
        made.append(("SPI", id, settings))
        self._peer = _peers.get(("SPI", id))
        if self._peer is not None:
            self._peer.lsb_first = firstbit == SPI.LSB  # the bridge shifts as this bus is set up

    def write(self, buf):
        if self._peer is not None:
            self._peer.write(buf)

    def write_readinto(self, wbuf, rbuf):
        if self._peer is not None:
            self._peer.write_readinto(wbuf, rbuf)
        else:
            for i in range(len(rbuf)):
                rbuf[i] = 0xFF  # nobody drives MISO: the pull-up

    def readinto(self, buf, write=0):
        self.write_readinto(bytes([write]) * len(buf), buf)

    def read(self, nbytes, write=0):
        buf = bytearray(nbytes)
        self.readinto(buf, write)
        return bytes(buf)

    def deinit(self):
        pass


def _reset(cause, why):
    sys.stderr.write("machine: %s: reset\n" % why)
    if on_reset is not None:
        on_reset(cause)
        return
    import os

    os.system("kill -9 $PPID")  # the unix port has no os.kill; the shell is our child


class WDT:
    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError("WDT(%d) doesn't exist" % id)
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        made.append(("WDT", timeout))
        self._timeout = timeout
        self._fed = time.ticks_ms()
        import _thread

        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = time.ticks_ms()

    def _watch(self):
        # the hardware watchdog: nothing stops it, not even the program ending its work
        while time.ticks_diff(time.ticks_ms(), self._fed) <= self._timeout:
            time.sleep_ms(10)
        _reset(WDT_RESET, "WDT not fed for %d ms" % self._timeout)


def unique_id():
    return b"\x24\x6f\x28\x01\x02\x03"


def reset_cause():
    return PWRON_RESET


def reset():
    raise SystemExit(75)
