# The device's clocks.
#
# monotonic_ms(): milliseconds since boot as a plain integer that never wraps; every
#   duration (billing time, timeouts, deadlines) comes from it, so it stays right when the
#   wall clock is set or jumps.
# now(): (UTC epoch seconds, quality) with quality S synchronized, I informative (set, not
#   synced recently), U unknown (power-up with no network: year before 2024).
# The host board may run the clock faster than real time (the simulator plays a day in
# minutes); everything that waits goes through sleep_ms() so it scales too.
import time

import board

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio

# Bare-metal ports count from 2000-01-01; records always carry Unix epoch seconds.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_MIN_VALID_EPOCH = 1704067200  # 2024-01-01: an RTC before this was never set
_SYNC_VALID_MS = 24 * 3600 * 1000  # S decays to I a day after the last sync

SPEED = getattr(board, "CLOCK_SPEED", 1)


def _rtc_epoch():
    if hasattr(time, "time_ns"):
        return time.time_ns() // 1000000000 + _EPOCH_OFFSET
    return int(time.time()) + _EPOCH_OFFSET


class _Clock:
    def __init__(self):
        self._last_ticks = time.ticks_ms()
        self._mono = 0
        self._wall_base = _rtc_epoch() + getattr(board, "CLOCK_OFFSET_S", 0)
        self._wall_mono = 0
        self._synced_mono = None
        quality = board.rtc_quality() if hasattr(board, "rtc_quality") else "I"
        if self._wall_base < _MIN_VALID_EPOCH:
            quality = "U"
        self._quality = quality
        if quality == "S":
            self._synced_mono = 0

    def monotonic_ms(self):
        now = time.ticks_ms()
        self._mono += time.ticks_diff(now, self._last_ticks) * SPEED
        self._last_ticks = now
        return self._mono

    def now(self):
        mono = self.monotonic_ms()
        epoch = self._wall_base + (mono - self._wall_mono) // 1000
        quality = self._quality
        if quality == "S" and mono - self._synced_mono > _SYNC_VALID_MS:
            quality = "I"
        return epoch, quality

    def set_time(self, epoch, quality="S"):
        """Set wall time from NTP or the backend; quality S marks it synchronized."""
        if not isinstance(epoch, int) or epoch < _MIN_VALID_EPOCH:
            raise ValueError("refusing implausible time %r" % (epoch,))
        if quality not in ("S", "I"):
            raise ValueError("time quality must be S or I")
        mono = self.monotonic_ms()
        self._wall_base = epoch
        self._wall_mono = mono
        self._quality = quality
        if quality == "S":
            self._synced_mono = mono


# Wire time. A meter, a card reader or a broker answers in real milliseconds whatever the
# device clock does, so I/O timeouts, poll intervals and network timers use these, which the
# simulator's speed-up leaves alone. Billing and session durations use monotonic_ms().
class _IoClock:
    def __init__(self):
        self._last = time.ticks_ms()
        self._ms = 0

    def ms(self):
        now = time.ticks_ms()
        self._ms += time.ticks_diff(now, self._last)
        self._last = now
        return self._ms


_io = _IoClock()
io_ms = _io.ms


def io_deadline(ms):
    return _io.ms() + ms


def io_expired(at):
    return _io.ms() >= at


def io_sleep_ms(ms):
    return asyncio.sleep_ms(ms)


_clock = _Clock()
monotonic_ms = _clock.monotonic_ms
now = _clock.now
set_time = _clock.set_time


def sleep_ms(ms):
    """asyncio sleep for ms of device time (scaled on a fast host clock)."""
    return asyncio.sleep_ms(max(0, ms // SPEED) if SPEED > 1 else ms)


def deadline(ms):
    """A deadline ms of device time from now, for expired()."""
    return _clock.monotonic_ms() + ms


def expired(at):
    return _clock.monotonic_ms() >= at
