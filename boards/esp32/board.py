# The ESP32 board layer: the same interface as boards/host/board.py, on machine.UART, Pin and WDT.
#
# Which board this is comes from /board.txt (written by `tools/flash.py deploy --board NAME`);
# its pins and buses come from board_defs.BOARDS, with the config's "pins" overriding roles.
# The internal flash is LittleFS, mounted at "/" by MicroPython before boot.py; the firmware
# keeps its data (journal, keys, logs) under /data.
import os
import sys

import machine
from micropython import const

from board_chips import CHIPS
from board_defs import BOARDS, REQUIRED_ROLES, ROLE_DIRECTION

BOARD_FILE = "/board.txt"
CONFIG_FILE = "/config.json"
DATA_DIR = "/data"
MAINTENANCE_FLAG = "/maintenance"  # present: no watchdog (tools/flash.py maintenance on|off)
_DEFAULT = "esp32-devkitc"
_UART_RXBUF = const(1024)  # a full Modbus/PN532 frame many times over, read between polls
_RTC_SET_YEAR = const(2024)  # an RTC before this year was never set since power-up


def _read_name():
    try:
        with open(BOARD_FILE) as f:
            name = f.read().strip()
    except OSError:
        return _DEFAULT
    if name not in BOARDS:
        sys.print_exception(ValueError("%s names unknown board %r; using %s" % (BOARD_FILE, name, _DEFAULT)))
        return _DEFAULT
    return name


NAME = _read_name()
SPEC = BOARDS[NAME]
_overrides = None
_watchdog_armed = False


def config_path():
    return CONFIG_FILE


def mount_flash():
    """The internal flash is already mounted at /; data lives in /data. Returns that folder."""
    try:
        os.mkdir(DATA_DIR)
    except OSError:
        pass
    return DATA_DIR


def _pin_overrides():
    # Only the "pins" object of config.json; app.config validated the whole file already
    # (and tools/flash.py checked the pins against this board before deploying it).
    global _overrides
    if _overrides is None:
        _overrides = {}
        try:
            import json

            with open(CONFIG_FILE) as f:
                pins = json.load(f).get("pins") or {}
            if isinstance(pins, dict):
                _overrides = pins
        except (OSError, ValueError):
            pass
    return _overrides


def _gpio(value):
    if isinstance(value, int):
        return value
    text = str(value).upper()
    if text.startswith("GPIO"):
        text = text[4:]
    return int(text)


def gpio_of(role):
    """GPIO number of a role ("relay", "plug", ...), or None when the board has none."""
    value = _pin_overrides().get(role, SPEC["pins"].get(role))
    if role == "rs485_de" and value is None and SPEC.get("rs485"):
        value = SPEC["rs485"].get("de")
    if value is None:
        if role in REQUIRED_ROLES:
            raise ValueError("board %s has no %s pin: set pins.%s in config.json" % (NAME, role, role))
        return None
    return _gpio(value)


class _NoPin:
    """An optional output this board does not have (e.g. no buzzer): does nothing."""

    def value(self, v=None):
        return 0 if v is None else None

    def on(self):
        pass

    def off(self):
        pass


def pin(name, value=None):
    """A role ("relay") or GPIO number as a machine.Pin; value None makes it an input."""
    if isinstance(name, int) or (isinstance(name, str) and (name.isdigit() or name.upper().startswith("GPIO"))):
        gpio = _gpio(name)
    else:
        if name not in ROLE_DIRECTION:
            raise ValueError("unknown pin role %r; known roles: %s" % (name, ", ".join(ROLE_DIRECTION)))
        gpio = gpio_of(name)
        if gpio is None:
            return _NoPin()
    if value is None:
        # The maintenance button pulls to ground; input-only pins have no internal pull-up.
        pull = machine.Pin.PULL_UP if name == "maintenance" and gpio not in CHIPS[SPEC["chip"]]["input_only"] else None
        return machine.Pin(gpio, machine.Pin.IN, pull)
    return machine.Pin(gpio, machine.Pin.OUT, value=1 if value else 0)


def relay_pin():
    return pin("relay", 0)


class UartStream:
    """machine.UART under the stream contract of firmware/hal/stream.py (readinto never blocks)."""

    def __init__(self, uart_id, tx, rx, baudrate, bits, parity, stop):
        # machine.UART parity: None, 0 (even) or 1 (odd)
        parity = {None: None, "N": None, "E": 0, "O": 1}[parity]
        self._uart = machine.UART(uart_id, baudrate=baudrate, bits=bits, parity=parity, stop=stop,
                                  tx=tx, rx=rx, timeout=0, timeout_char=0, rxbuf=_UART_RXBUF)
        self.url = "uart%d" % uart_id
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self._scratch = bytearray(64)

    def write(self, buf):
        n = self._uart.write(buf)
        if n != len(buf):
            raise OSError("%s: wrote %s of %d bytes" % (self.url, n, len(buf)))
        return n

    def flush(self):
        # Returns when the last stop bit has left the transmitter (hal/rs485.py drops DE then).
        self._uart.flush()

    def readinto(self, buf):
        if not self._uart.any():
            return 0
        return self._uart.readinto(buf) or 0

    def discard(self):
        for _ in range(64):  # bounded: a babbling peer cannot keep us here
            if not self._uart.any():
                return
            self._uart.readinto(self._scratch)

    def close(self):
        self._uart.deinit()


def _uart_bus(spec):
    # "uart2", "rs485" or "nfc" -> the bus definition that uses that UART
    for field in ("rs485", "nfc"):
        conf = SPEC.get(field)
        if not conf or conf.get("bus", "uart") != "uart":
            continue
        if spec == field or spec == "uart%d" % conf["uart"]:
            return conf
    raise ValueError("board %s has no UART %r; use one of: %s" % (
        NAME, spec, ", ".join("%s (uart%d)" % (f, SPEC[f]["uart"]) for f in ("rs485", "nfc")
                              if SPEC.get(f) and SPEC[f].get("bus", "uart") == "uart")))


def open_uart(spec, baudrate=9600, bits=8, parity=None, stop=1):
    conf = _uart_bus(spec)
    return UartStream(conf["uart"], conf["tx"], conf["rx"], baudrate, bits, parity, stop)


def i2c(field, freq=100000):
    """machine.I2C (SoftI2C when the wiring says "soft") for a device the board puts on I2C."""
    conf = SPEC.get(field)
    if not conf or conf.get("bus") != "i2c":
        raise ValueError("board %s has no I2C %s" % (NAME, field))
    scl, sda = machine.Pin(conf["scl"]), machine.Pin(conf["sda"])
    if conf.get("soft"):
        return machine.SoftI2C(scl, sda, freq=freq)
    return machine.I2C(conf["i2c"], scl=scl, sda=sda, freq=freq)


def display_bus():
    """The display's I2C bus (board_defs "display"; the board's PN532 may share it: a bus, two
    addresses). 400 kHz: a 1 KiB OLED frame takes ~25 ms on the wire instead of ~100 ms."""
    return i2c("display", 400000)


def display_frames():
    return None  # frame files are the host board's


def spi(field, baudrate=1000000, lsb_first=False):
    """(machine.SPI, chip-select Pin) for a device the board puts on SPI, in mode 0 (what the
    PN532 and the MFRC522 speak); lsb_first shifts each byte least significant bit first (PN532)."""
    conf = SPEC.get(field)
    if not conf or conf.get("bus") != "spi":
        raise ValueError("board %s has no SPI %s" % (NAME, field))
    if conf.get("rst") is not None:
        machine.Pin(conf["rst"], machine.Pin.OUT, value=1)  # the reader's reset/power-down line: run
    bus = machine.SPI(conf["spi"], baudrate=baudrate, polarity=0, phase=0, bits=8,
                      firstbit=machine.SPI.LSB if lsb_first else machine.SPI.MSB,
                      sck=machine.Pin(conf["sck"]), mosi=machine.Pin(conf["mosi"]), miso=machine.Pin(conf["miso"]))
    return bus, machine.Pin(conf["cs"], machine.Pin.OUT, value=1)


def nfc_wirings():
    """{name: wiring} of the board's card-reader wirings: "nfc" and its alternatives ("nfc_spi")."""
    return {f: c for f, c in SPEC.items() if f.startswith("nfc") and c}


def nfc_bus(url, bus=None, baudrate=115200, lsb_first=False):
    """The card reader's bus: ("uart", stream, None), ("i2c", I2C, address) or ("spi", SPI, cs Pin).

    url: tcp://host:port (HSU through a serial gateway), one of nfc_wirings() or the UART of one
    ("uart1"). bus: the bus the reader is expected on (None: the wiring's own). lsb_first: an SPI
    bus that shifts least significant bit first (the PN532 does)."""
    if url.startswith("tcp://"):
        if bus is not None and bus != "uart":
            raise ValueError("tcp:// carries a reader's HSU only, not %s" % bus)
        from hal.stream import open_stream

        return "uart", open_stream(url, baudrate), None
    wirings = nfc_wirings()
    field = None
    for name, conf in wirings.items():
        if url == name or (conf.get("bus", "uart") == "uart" and url == "uart%d" % conf["uart"]):
            field = name
            break
    if field is None:
        raise ValueError("board %s has no card reader wiring %r: use tcp://host:port or %s"
                         % (NAME, url, " or ".join(sorted(wirings))))
    conf = wirings[field]
    kind = conf.get("bus", "uart")
    if bus is not None and bus != kind:
        other = [n for n, c in wirings.items() if c.get("bus", "uart") == bus]
        raise ValueError("board %s wires reader %s on %s, not %s%s"
                         % (NAME, field, kind, bus, ": set nfc.url to " + other[0] if other else ""))
    if kind == "i2c":
        return kind, i2c(field), conf.get("addr")
    if kind == "spi":
        spi_bus, cs = spi(field, lsb_first=lsb_first)
        return kind, spi_bus, cs
    return kind, UartStream(conf["uart"], conf["tx"], conf["rx"], baudrate, 8, None, 1), None


def network_link(net):
    """("lan" | "wlan", interface) for hal/net.py, which activates and connects it.

    net is the config's "net" section. iface "auto" takes the board's wired Ethernet (the "eth"
    entry of board_defs: network.LAN with the ESP32's internal MAC) when it has one, else the
    WLAN station; "lan" or "wlan" say which. Raises ValueError for "lan" on a board without one."""
    import network

    eth = SPEC.get("eth")
    iface = net.get("iface", "auto")
    if iface == "lan" or (iface == "auto" and eth):
        if not eth:
            raise ValueError("board %s has no Ethernet: set net.iface to wlan or auto" % NAME)
        # the documented ESP32 form (docs.micropython.org, esp32 quickref, "LAN"); the RMII data
        # pins are fixed by the chip, ref_clk is the 50 MHz clock the ESP32 drives to the PHY
        return "lan", network.LAN(mdc=machine.Pin(eth["mdc"]), mdio=machine.Pin(eth["mdio"]),
                                  power=machine.Pin(eth["power"]), phy_type=getattr(network, "PHY_" + eth["phy"]),
                                  phy_addr=eth["phy_addr"], ref_clk=machine.Pin(eth["ref_clk"]),
                                  ref_clk_mode=machine.Pin.OUT)
    return "wlan", network.WLAN(network.STA_IF)


class Watchdog:
    """The hardware watchdog. Once started it cannot be stopped, not even by a soft reset:
    that is why maintenance mode exists (no watchdog, so the REPL stays usable)."""

    def __init__(self, timeout_ms):
        global _watchdog_armed
        self._wdt = machine.WDT(timeout=timeout_ms)
        self.timeout_ms = timeout_ms
        _watchdog_armed = True

    def feed(self):
        self._wdt.feed()


def watchdog_armed():
    return _watchdog_armed


def maintenance_mode():
    """True when the flag file exists or the maintenance button is held (low) at boot."""
    try:
        os.stat(MAINTENANCE_FLAG)
        return True
    except OSError:
        pass
    if gpio_of("maintenance") is None:
        return False
    return pin("maintenance").value() == 0


def unique_id():
    return machine.unique_id()


def rtc_quality():
    # The RTC survives soft and watchdog resets but starts over at power-up.
    import time

    return "I" if time.gmtime()[0] >= _RTC_SET_YEAR else "U"


def reset():
    machine.reset()
