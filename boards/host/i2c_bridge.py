# An I2C bus carried over TCP, for I2C peripherals emulated on the host (the PN532 emulator in
# sim/pn532_emu.py, served by sim/bus_bridge.py). It offers the parts of machine.I2C the drivers
# use (writeto, readfrom_into, readfrom) with the ESP32 port's errors: an address nobody
# acknowledges raises OSError(ENODEV), a peer that does not answer OSError(ETIMEDOUT).
#
# Wire protocol, one message per transaction (START, address, data, STOP):
#   "W" addr:u8 len:u16be data   write; the peer answers 1 byte: 1 = address acknowledged, 0 = not
#   "R" addr:u8 len:u16be        read; the peer answers 1 byte (as above), then len bytes if 1
import errno

from tcp_bridge import TcpBridge


class I2cBridge(TcpBridge):
    def __init__(self, url, timeout_ms=200):
        super().__init__(url, timeout_ms)
        self._head = bytearray(4)
        self._ack = bytearray(1)

    def _transaction(self, op, addr, n, data=None):
        head = self._head
        head[0] = op
        head[1] = addr
        head[2] = n >> 8
        head[3] = n & 0xFF
        self._send(head if data is None else bytes(head) + bytes(data))
        self._recv_into(self._ack)  # a silent peer: the socket's OSError(ETIMEDOUT)
        if not self._ack[0]:
            raise OSError(errno.ENODEV)

    def writeto(self, addr, buf, stop=True):
        self._transaction(0x57, addr, len(buf), buf)  # "W"
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._transaction(0x52, addr, len(buf))  # "R"
        self._recv_into(buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self.readfrom_into(addr, buf)
        return bytes(buf)
