# The host board: the same firmware on the MicroPython unix port.
#
# The device root ($EVC_ROOT) holds what a real board keeps on its flash and pins:
#   flash.img    LittleFS image, mounted at /flash   (size: $EVC_FLASH_KB, default 2048)
#   config.json  the device configuration
#   pins/NAME    one file per pin: "0" or "1"; outputs written here, inputs read from here,
#                so tests and the simulator see the relay and can plug the EV in.
#   pins/link    the network link (hal/net.py): "0" takes it down, "1" (or no file) up.
# Clock controls for the simulator: $EVC_CLOCK_SPEED (device time runs N times faster),
# $EVC_TIME_QUALITY (S, I or U at boot; default U: a board powered up with no network, whose
# time comes from SNTP or the backend), $EVC_CLOCK_OFFSET_S (shift the wall clock; S and I only).
# Test hooks: $EVC_STATUS_MS (status line interval), ROOT/inject/NAME (crash task NAME once).
import os
import sys

NAME = "host"

ROOT = os.getenv("EVC_ROOT") or "evc-device"
FLASH_MOUNT = "/flash"


def _int_env(name, default):
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError("%s must be an integer, got %r" % (name, value))


CLOCK_SPEED = _int_env("EVC_CLOCK_SPEED", 1)
CLOCK_OFFSET_S = _int_env("EVC_CLOCK_OFFSET_S", 0)
STATUS_MS = _int_env("EVC_STATUS_MS", 10000)  # status line interval (device ms)
GC_THRESHOLD = _int_env("EVC_GC_THRESHOLD", 8192)  # bytes between collections (app/charger.py); 0: only when full
HEAP_REPORT = _int_env("EVC_HEAP_REPORT", 0)  # 1: micropython.mem_info() with each status line (heap tests)
_FLASH_KB = _int_env("EVC_FLASH_KB", 2048)
_BLOCK = 4096


def _ensure_dir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


_POWER_UP_EPOCH = 946684800  # 2000-01-01: where an ESP32's RTC starts after power-up
NTP_DEFAULT = ()  # time.ntp null: no servers here (the tests and the simulator bring their own)


def rtc_quality():
    # Like a board after power-up: unknown until SNTP or the backend sets it. Tests and the
    # simulator that want the OS's clock (kept by the OS's NTP) say S or I.
    q = os.getenv("EVC_TIME_QUALITY") or "U"
    if q not in ("S", "I", "U"):
        raise ValueError("EVC_TIME_QUALITY must be S, I or U, got %r" % q)
    return q


def rtc_epoch():
    """The wall clock at boot: the OS's when $EVC_TIME_QUALITY says it is set, else a never-set RTC."""
    import time

    if rtc_quality() == "U":
        return _POWER_UP_EPOCH
    return time.time_ns() // 1000000000


def config_path():
    return ROOT + "/config.json"


def mount_flash():
    """Mount LittleFS from the flash image (format a blank one) and return the mount point."""
    import vfs
    from blockdev import FileBlockDevice

    _ensure_dir(ROOT)
    try:
        vfs.umount(FLASH_MOUNT)
    except OSError:
        pass
    dev = FileBlockDevice(ROOT + "/flash.img", _BLOCK, _FLASH_KB * 1024 // _BLOCK)
    try:
        vfs.mount(vfs.VfsLfs2(dev), FLASH_MOUNT)
    except OSError:
        vfs.VfsLfs2.mkfs(dev)
        vfs.mount(vfs.VfsLfs2(dev), FLASH_MOUNT)
    return FLASH_MOUNT


def open_uart(spec, baudrate=9600, bits=8, parity=None, stop=1):
    from serial_posix import SerialStream

    return SerialStream(spec, baudrate, bits, parity, stop)


def nfc_bus(url, bus=None, baudrate=115200, lsb_first=False):
    """The card reader's bus, as boards/esp32/board.py gives it: ("uart", stream, None),
    ("i2c", bus, None: the reader's own address) or ("spi", bus, chip-select pin).

    A serial device path or tcp:// carries HSU; with bus "i2c" or "spi", tcp:// reaches an
    emulated reader through a bus bridge (i2c_bridge.py, spi_bridge.py; lsb_first: the bus
    shifts least significant bit first, as a PN532 wants)."""
    if bus is None or bus == "uart":
        from hal.stream import open_stream

        return "uart", open_stream(url, baudrate), None
    if not url.startswith("tcp://"):
        raise ValueError("the host reaches an %s reader through a tcp:// bridge, not %r" % (bus, url))
    if bus == "i2c":
        from i2c_bridge import I2cBridge

        return "i2c", I2cBridge(url), None
    if bus == "spi":
        from spi_bridge import SpiBridge

        spi = SpiBridge(url, lsb_first=lsb_first)
        return "spi", spi, spi.cs
    raise ValueError("unknown reader bus %r: uart, i2c or spi" % (bus,))


class _QuietI2c:
    """A display bus nobody watches: every address acknowledges, every write is taken."""

    def writeto(self, addr, buf, stop=True):
        return len(buf)


def display_bus():
    """The display's I2C bus: $EVC_DISPLAY_I2C (tcp://) reaches an emulated display through the
    I2C bridge (sim/ssd1306_emu.py, sim/hd44780_emu.py); without it, a bus that takes every write
    (the frames still reach $EVC_DISPLAY_DIR: display_frames)."""
    url = os.getenv("EVC_DISPLAY_I2C")
    if url:
        from i2c_bridge import I2cBridge

        return I2cBridge(url)
    return _QuietI2c()


def display_frames():
    """Every frame the display draws as a file in $EVC_DISPLAY_DIR (display_files.py), or None."""
    folder = os.getenv("EVC_DISPLAY_DIR")
    if not folder:
        return None
    from display_files import FrameFiles

    return FrameFiles(folder)


class Pin:
    """A pin backed by ROOT/pins/NAME: writes for outputs, reads for inputs."""

    def __init__(self, name, value=None):
        _ensure_dir(ROOT)
        _ensure_dir(ROOT + "/pins")
        self.name = name
        self._path = ROOT + "/pins/" + name
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            try:
                with open(self._path) as f:
                    return 1 if f.read(1) == "1" else 0
            except OSError:
                return 0
        with open(self._path, "w") as f:
            f.write("1" if v else "0")
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


def pin(name, value=None):
    return Pin(name, value)


def network_link(net):
    """("lan", the simulated link): hal/net.py drives it as a network.LAN; no real network calls."""
    from hostlink import Link

    return "lan", Link(ROOT + "/pins/link")


class Watchdog:
    """A real watchdog: a thread kills the process when it is not fed in time.

    The unix port has no os.kill; the shell that os.system starts is our child, so its
    $PPID is this process.
    """

    def __init__(self, timeout_ms):
        import _thread
        import time

        self._time = time
        self.timeout_ms = timeout_ms
        self._fed = time.ticks_ms()
        self._stopped = False
        _thread.start_new_thread(self._watch, ())

    def feed(self):
        self._fed = self._time.ticks_ms()

    def stop(self):
        self._stopped = True

    def _watch(self):
        t = self._time
        while not self._stopped:
            t.sleep_ms(100)
            if t.ticks_diff(t.ticks_ms(), self._fed) > self.timeout_ms and not self._stopped:
                sys.stderr.write("WATCHDOG: not fed for %d ms, resetting\n" % self.timeout_ms)
                os.system("kill -9 $PPID")


def unique_id():
    # Stable per device root, like the ESP32's MAC.
    import hashlib

    return hashlib.sha256(ROOT.encode()).digest()[:6]


def inject(name):
    """Fault injection for tests: True once when ROOT/inject/NAME exists (the file is removed).

    One failed remove() when nothing is injected; the ESP32 board has no such hook."""
    try:
        os.remove(ROOT + "/inject/" + name)
    except OSError:
        return False
    return True


def reset():
    sys.exit(75)  # the simulator restarts a device that exits with 75, like a reset
