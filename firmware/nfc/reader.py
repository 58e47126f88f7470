# The tap loop: polls a card reader driver and turns what it sees into taps.
#
# A card held on the reader is one tap; it counts as removed after `absent_polls` polls in
# a row without it (one missed poll is normal RF noise; by default as many as span _ABSENT_MS,
# so a short poll period, which a driver's tap waits on, never makes a card at the edge of the
# field tap twice); the same card back after that, or a different card at any time, is a new tap. Faults (no answer, bad frames) never count
# as "no card": they are reported, the driver is re-initialised, and polling resumes with
# exponential backoff up to backoff_max_ms, so a dead reader costs the rest nothing.
# The raw UID lives only in this object's buffers and the token derivation.
from micropython import const

from app import log
from hal import clock
from nfc.token import card_token, parse_secret

_UID_MAX = const(10)
_ABSENT_MS = const(500)  # a card missing this long is removed (2 polls of the former 250 ms period)
_TAG = "nfc"


class Tap:
    __slots__ = ("token", "uid_len")

    def __init__(self, token, uid_len):
        self.token = token
        self.uid_len = uid_len

    def __repr__(self):
        return "Tap(%s, %d)" % (self.token, self.uid_len)


class Reader:
    def __init__(self, driver, secret, poll_ms=80, absent_polls=None, backoff_max_ms=5000):
        if absent_polls is None:
            absent_polls = max(2, -(-_ABSENT_MS // max(1, poll_ms)))
        if poll_ms < 1 or absent_polls < 1:
            raise ValueError("poll_ms and absent_polls must be positive")
        self.driver = driver
        self.poll_ms = poll_ms
        self.absent_polls = absent_polls
        self.backoff_max_ms = backoff_max_ms
        self._secret = parse_secret(secret)
        self._uid = bytearray(_UID_MAX)
        self._held = bytearray(_UID_MAX)
        self._held_len = 0
        self._absent = 0
        self._ready = False
        self.polls = 0  # polls the reader answered
        self.taps = 0
        self.faults = 0
        self.fault_streak = 0
        self.last_fault = None

    @property
    def card_present(self):
        return self._held_len > 0

    async def poll(self):
        """One poll; a Tap for a newly presented card, else None. Raises on reader faults."""
        if not self._ready:
            await self.driver.init()
            self._ready = True
        uid = self._uid
        n = await self.driver.read_uid(uid)
        self.polls += 1
        if n == 0:
            if self._held_len:
                self._absent += 1
                if self._absent >= self.absent_polls:
                    self._held_len = 0
            return None
        self._absent = 0
        held = self._held
        if n == self._held_len:
            for i in range(n):
                if uid[i] != held[i]:
                    break
            else:
                return None  # the same card, still held
        for i in range(n):
            held[i] = uid[i]
        self._held_len = n
        self.taps += 1
        tap = Tap(card_token(self._secret, uid, n), n)
        for i in range(_UID_MAX):
            uid[i] = 0
        return tap

    def _fault(self, exc):
        self._ready = False
        self.faults += 1
        self.fault_streak += 1
        self.last_fault = "%s: %s" % (type(exc).__name__, exc)
        streak = self.fault_streak
        if streak & (streak - 1) == 0:  # 1st, 2nd, 4th, 8th...: a dead reader must not flood the log
            log.warn(_TAG, "reader fault #%d: %s" % (streak, self.last_fault))
        delay = self.poll_ms << min(streak, 6)
        return delay if delay < self.backoff_max_ms else self.backoff_max_ms

    async def run(self, on_tap, on_fault=None):
        """Poll forever; on_tap(tap) (plain or async) for each tap, on_fault(text) per fault."""
        while True:
            try:
                tap = await self.poll()
            except Exception as exc:  # any reader failure: report, back off, go on
                delay = self._fault(exc)
                if on_fault is not None:
                    try:
                        on_fault(self.last_fault)
                    except Exception as cb_exc:
                        log.exception(_TAG, cb_exc)
                await clock.io_sleep_ms(delay)
                continue
            if self.fault_streak:
                log.info(_TAG, "reader back after %d faults" % self.fault_streak)
                self.fault_streak = 0
            if tap is not None:
                try:
                    result = on_tap(tap)
                    if hasattr(result, "send"):  # a coroutine
                        await result
                except Exception as exc:
                    log.exception(_TAG, exc)
            await clock.io_sleep_ms(self.poll_ms)
