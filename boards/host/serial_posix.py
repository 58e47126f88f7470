# A serial device (or pseudo-terminal) on the host in termios raw mode, non-blocking reads.
# Implements the stream contract of firmware/hal/stream.py.
import termios

# Linux termios values the unix port does not export.
_SPEEDS = {1200: 0o11, 2400: 0o13, 4800: 0o14, 9600: 0o15, 19200: 0o16, 38400: 0o17,
           57600: 0o10001, 115200: 0o10002, 230400: 0o10003, 460800: 0o10004, 921600: 0o10007}
_CSIZE = 0o60
_CS = {7: 0o40, 8: 0o60}
_CSTOPB = 0o100
_PARENB = 0o400
_PARODD = 0o1000
_VTIME = 5
_VMIN = 6


class SerialStream:
    def __init__(self, path, baudrate=9600, bits=8, parity=None, stop=1):
        if baudrate not in _SPEEDS:
            raise ValueError("unsupported baud rate %d" % baudrate)
        if bits not in _CS or stop not in (1, 2):
            raise ValueError("unsupported frame %d bits, %d stop" % (bits, stop))
        self.url = path
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self._file = open(path, "r+b")
        fd = self._file.fileno()
        termios.setraw(fd)
        iflag, oflag, cflag, lflag, _, _, cc = termios.tcgetattr(fd)
        cflag &= ~(_CSIZE | _CSTOPB | _PARENB | _PARODD)
        cflag |= _CS[bits]
        if stop == 2:
            cflag |= _CSTOPB
        if parity in ("E", "O"):
            cflag |= _PARENB | (_PARODD if parity == "O" else 0)
        cc = list(cc)
        cc[_VMIN] = 0  # read returns at once with what is there: the drivers keep the deadlines
        cc[_VTIME] = 0
        speed = _SPEEDS[baudrate]
        termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, speed, speed, cc])

    def write(self, buf):
        n = self._file.write(buf)
        if n != len(buf):
            raise OSError("%s: short write %s of %d" % (self.url, n, len(buf)))
        return n

    def readinto(self, buf):
        n = self._file.readinto(buf)
        return n or 0

    def discard(self):
        scratch = bytearray(64)
        for _ in range(64):
            if not self.readinto(scratch):
                return

    def close(self):
        self._file.close()
