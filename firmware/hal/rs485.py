# RS-485 half-duplex direction control: DE/RE high while we transmit, low otherwise.
#
# Wraps any stream of firmware/hal/stream.py with a pin (on()/off() or value()). A write
# raises DE, sends, waits until the last stop bit has left the UART and one more character
# time, then drops DE. That wait blocks on purpose: the meter starts answering 3.5
# characters after our last byte (about 4 ms at 9600 baud) and an asyncio sleep cannot
# promise to wake in time, so DE must drop here, in line. It costs the request's wire time
# (8 bytes at 9600 baud: 9.2 ms). Transceivers with automatic direction need no wrapper.
import time


class Rs485:
    def __init__(self, stream, de, char_us):
        self._stream = stream
        self._de = de
        self._char_us = char_us
        self._set(0)  # listen by default
        for name in ("baudrate", "bits", "parity", "stop", "url"):
            if hasattr(stream, name):
                setattr(self, name, getattr(stream, name))

    def _set(self, v):
        self._de.value(v)

    def write(self, buf):
        self._set(1)
        try:
            n = self._stream.write(buf)
            drained = getattr(self._stream, "flush", None)
            if drained is not None:
                drained()  # machine.UART.flush(): returns when the transmitter is empty
            else:
                time.sleep_us(len(buf) * self._char_us)
            time.sleep_us(self._char_us)  # the last stop bit must be on the wire before DE drops
        finally:
            self._set(0)
        return n

    def readinto(self, buf):
        return self._stream.readinto(buf)

    def discard(self):
        self._stream.discard()

    def close(self):
        self._set(0)
        self._stream.close()
