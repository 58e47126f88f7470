# The device's clocks.
#
# monotonic_ms(): milliseconds since boot as a plain integer that never wraps; every
#   duration (billing time, timeouts, deadlines) comes from it, so it stays right when the
#   wall clock is set or jumps.
# now(): (UTC epoch seconds, quality) with quality S synchronized (set by SNTP or the backend
#   within the last `time.max_age_s`), I informative (set, but the last sync is older, or the
#   RTC kept it across a soft reset), U unknown (power-up with no sync yet: RTC before 2024).
# set_time(): the only way the wall clock moves (hal/sntp.py: SNTP and the backend's `time`
#   command); it also sets the board's RTC, which keeps the time across soft and watchdog
#   resets (ESP32: machine.RTC; the quality after such a reset is I until the next sync).
# The host board may run the clock faster than real time (the simulator plays a day in
# minutes); everything that waits goes through sleep_ms() so it scales too. It starts with
# unknown time unless $EVC_TIME_QUALITY says otherwise (boards/host/board.py).
import time

import board

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio

# Bare-metal ports count from 2000-01-01; records always carry Unix epoch seconds.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_MIN_VALID_EPOCH = 1704067200  # 2024-01-01: an RTC before this was never set
_MAX_AGE_MS = 24 * 3600 * 1000  # S decays to I this long after the last sync (config time.max_age_s)

SPEED = getattr(board, "CLOCK_SPEED", 1)


def _rtc_epoch():
    if hasattr(board, "rtc_epoch"):  # the host board: the OS clock, or a never-set RTC
        return board.rtc_epoch()
    if hasattr(time, "time_ns"):
        return time.time_ns() // 1000000000 + _EPOCH_OFFSET
    return int(time.time()) + _EPOCH_OFFSET


def _write_rtc(epoch, ms):
    """Keep the time in the board's RTC across soft resets; a board without one keeps nothing."""
    hook = getattr(board, "set_rtc", None)
    try:
        if hook is not None:
            hook(epoch, ms)
            return True
        import machine

        rtc = machine.RTC()
    except (ImportError, AttributeError):  # the unix port: no RTC
        return False
    try:
        tm = time.gmtime(epoch - _EPOCH_OFFSET)
        # (year, month, day, weekday, hours, minutes, seconds, subseconds in us)
        rtc.datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], ms * 1000))
    except (OSError, ValueError, OverflowError):
        return False  # the clock in RAM is set; only the copy for the next soft reset is lost
    return True


class _Clock:
    def __init__(self):
        self._last_ticks = time.ticks_ms()
        self._mono = 0
        quality = board.rtc_quality() if hasattr(board, "rtc_quality") else "I"
        self._wall_base = _rtc_epoch()
        if quality != "U":
            self._wall_base += getattr(board, "CLOCK_OFFSET_S", 0)
        self._wall_mono = 0
        self._synced_mono = None
        self.max_age_ms = _MAX_AGE_MS
        self.source = None  # what set the clock last: "ntp", "backend", or "board" (at boot)
        if self._wall_base < _MIN_VALID_EPOCH:
            quality = "U"
        self._quality = quality
        if quality == "S":
            self._synced_mono = 0
        if quality != "U":
            self.source = "board"

    def monotonic_ms(self):
        now = time.ticks_ms()
        self._mono += time.ticks_diff(now, self._last_ticks) * SPEED
        self._last_ticks = now
        return self._mono

    def now(self):
        mono = self.monotonic_ms()
        epoch = self._wall_base + (mono - self._wall_mono) // 1000
        quality = self._quality
        if quality == "S" and mono - self._synced_mono > self.max_age_ms:
            quality = "I"
        return epoch, quality

    def set_time(self, epoch, quality="S", ms=0, source="ntp"):
        """Set wall time from NTP or the backend; quality S marks it synchronized.

        ms: milliseconds past epoch (0..999), so that a sync is exact to the millisecond."""
        if not isinstance(epoch, int) or epoch < _MIN_VALID_EPOCH:
            raise ValueError("refusing implausible time %r" % (epoch,))
        if quality not in ("S", "I"):
            raise ValueError("time quality must be S or I")
        if not isinstance(ms, int) or not 0 <= ms < 1000:
            raise ValueError("ms must be 0..999")
        mono = self.monotonic_ms()
        self._wall_base = epoch
        self._wall_mono = mono - ms
        self._quality = quality
        self.source = source
        if quality == "S":
            self._synced_mono = mono
        _write_rtc(epoch, ms)

    def sync_age_ms(self):
        """Device ms since the clock was last synchronized (quality S), or None: never."""
        if self._synced_mono is None:
            return None
        return self.monotonic_ms() - self._synced_mono

    def set_max_age(self, seconds):
        self.max_age_ms = seconds * 1000


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
sync_age_ms = _clock.sync_age_ms
set_max_age = _clock.set_max_age


def source():
    """What set the wall clock last: "ntp", "backend", "board" (kept or given at boot), or None."""
    return _clock.source


def sleep_ms(ms):
    """asyncio sleep for ms of device time (scaled on a fast host clock)."""
    return asyncio.sleep_ms(max(0, ms // SPEED) if SPEED > 1 else ms)


def deadline(ms):
    """A deadline ms of device time from now, for expired()."""
    return _clock.monotonic_ms() + ms


def expired(at):
    return _clock.monotonic_ms() >= at
