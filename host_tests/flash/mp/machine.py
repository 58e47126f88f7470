# A stand-in for the ESP32's `machine` module, so boards/esp32/board.py runs on the unix port:
# records what the board layer asks of the hardware. Only for host_tests/flash/test_esp32_board.py.
IN = 1
OUT = 3
PULL_UP = 1
made = []  # ("Pin"|"UART"|"WDT", args...) in creation order
levels = {}  # gpio -> level, for inputs the test sets


class Pin:
    IN = IN
    OUT = OUT
    PULL_UP = PULL_UP

    def __init__(self, gpio, mode=None, pull=None, value=None):
        self.gpio = gpio
        made.append(("Pin", gpio, mode, pull, value))
        if value is not None:
            levels[gpio] = value

    def value(self, v=None):
        if v is None:
            return levels.get(self.gpio, 1)
        levels[self.gpio] = 1 if v else 0

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class UART:
    def __init__(self, uart_id, **kw):
        made.append(("UART", uart_id, kw))
        self.rx = bytearray()
        self.tx = bytearray()

    def any(self):
        return len(self.rx)

    def readinto(self, buf, n=None):
        if not self.rx:
            return None  # what the ESP32 port returns when nothing came within timeout=0
        n = min(len(buf), len(self.rx))
        buf[:n] = self.rx[:n]
        self.rx = self.rx[n:]
        return n

    def write(self, buf):
        self.tx.extend(buf)
        return len(buf)

    def flush(self):
        pass

    def deinit(self):
        made.append(("deinit",))


class WDT:
    def __init__(self, timeout):
        made.append(("WDT", timeout))

    def feed(self):
        pass


def unique_id():
    return b"\x24\x6f\x28\x01\x02\x03"


def reset():
    raise SystemExit(75)
