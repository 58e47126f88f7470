# Runs the firmware's asyncio tasks: a task that crashes is logged and restarted with
# backoff; the watchdog is fed only while every vital task reports progress (end-to-end
# liveness, not a timer), so a wedged task resets the board instead of leaving a charger
# that looks alive but does nothing. It also measures the event loop's longest stall.
try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import board

from app import log
from hal import clock

_TICK_MS = 100
_BACKOFF_MIN_MS = 500
_BACKOFF_MAX_MS = 30000
_inject = getattr(board, "inject", None)  # host test hook: crash a task on request


class _Task:
    def __init__(self, name, factory, vital, stall_ms):
        self.name = name
        self.factory = factory
        self.vital = vital
        self.stall_ms = stall_ms
        self.last_progress = clock.monotonic_ms()
        self.restarts = 0
        self.task = None


class Supervisor:
    def __init__(self, watchdog=None):
        # watchdog: an armed one (with feed()), or a function that arms one when run() starts, so
        # that nothing before the supervisor's loop (boot, recovery, a slow meter) can starve it
        self._arm = None
        if watchdog is not None and not hasattr(watchdog, "feed"):
            self._arm, watchdog = watchdog, None
        self._tasks = {}
        self._watchdog = watchdog
        self.max_lag_ms = 0  # longest event loop stall seen
        self.stalled = None  # name of a vital task that stopped making progress

    def spawn(self, name, factory, vital=True, stall_ms=10000):
        """Run factory() (a coroutine function) as a supervised task named name."""
        t = _Task(name, factory, vital, stall_ms)
        self._tasks[name] = t
        t.task = asyncio.create_task(self._guard(t))
        return t

    def progress(self, name):
        """Called by a task whenever it completes a unit of work."""
        if _inject is not None and _inject(name):
            raise RuntimeError("injected crash in %s" % name)
        t = self._tasks.get(name)
        if t is not None:
            t.last_progress = clock.monotonic_ms()

    def restarts(self, name):
        return self._tasks[name].restarts

    async def _guard(self, t):
        backoff = _BACKOFF_MIN_MS
        while True:
            began = clock.monotonic_ms()
            try:
                await t.factory()
                log.warn("sup", "task %s returned; restarting" % t.name)
            except asyncio.CancelledError:
                raise
            except MemoryError:  # survived: the task restarts after the backoff with the garbage freed
                log.out_of_memory("sup", t.name)
            except Exception as exc:  # a crashed task must never take the charger down
                if clock.monotonic_ms() - began >= _BACKOFF_MAX_MS:
                    backoff = _BACKOFF_MIN_MS  # it ran well for a while: a rare crash, not a crash loop
                log.exception("sup", exc)
                log.error("sup", "task %s crashed; restart %d in %d ms" % (t.name, t.restarts + 1, backoff))
            t.restarts += 1
            await clock.sleep_ms(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_MS)
            t.last_progress = clock.monotonic_ms()

    def healthy(self):
        now = clock.monotonic_ms()
        for t in self._tasks.values():
            if t.vital and now - t.last_progress > t.stall_ms:
                return t.name
        return None

    async def run(self):
        """The supervisor's own loop: lag measurement and watchdog feeding. Never returns."""
        if self._arm is not None:
            self._watchdog, self._arm = self._arm(), None
        last = clock.monotonic_ms()
        while True:
            await clock.sleep_ms(_TICK_MS)
            now = clock.monotonic_ms()
            lag = (now - last - _TICK_MS) // clock.SPEED
            if lag > self.max_lag_ms:
                self.max_lag_ms = lag
            last = now
            stalled = self.healthy()
            if stalled != self.stalled:
                if stalled:
                    log.error("sup", "vital task %s made no progress; watchdog will reset" % stalled)
                    log.flush()  # on flash before the reset
                self.stalled = stalled
            if stalled is None and self._watchdog is not None:
                self._watchdog.feed()
