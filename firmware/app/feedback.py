# What the driver sees and hears: LED and buzzer patterns from board pins (a display later).
#
# Patterns are data: a list of (pin role, on_ms, off_ms, times). A one-shot event (accepted,
# rejected, stopped) plays over the steady state of the charger's state (idle, charging,
# faulted), which then resumes. Pins without a role in the config are simply skipped.
try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from hal import clock

EVENTS = {
    "accepted": [("led_ok", 150, 100, 2), ("buzzer", 80, 0, 1)],
    "rejected": [("led_fault", 120, 120, 3), ("buzzer", 400, 0, 1)],
    "stopped": [("led_ok", 600, 0, 1), ("buzzer", 80, 80, 2)],
    "fault": [("led_fault", 1000, 0, 1), ("buzzer", 120, 120, 3)],
}

# steady state -> (role, on_ms, off_ms): on_ms 0 = off, off_ms 0 = solid
STEADY = {
    "idle": [("led_ok", 0, 0), ("led_fault", 0, 0)],
    "authorizing": [("led_ok", 100, 100), ("led_fault", 0, 0)],
    "charging": [("led_ok", 1000, 1000), ("led_fault", 0, 0)],
    "suspended": [("led_ok", 200, 1800), ("led_fault", 0, 0)],
    "finishing": [("led_ok", 100, 100), ("led_fault", 0, 0)],
    "faulted": [("led_ok", 0, 0), ("led_fault", 1, 0)],
    "full": [("led_ok", 0, 0), ("led_fault", 500, 500)],
    # the board's fault state (app/fault.py): the charger does not run at all; a short blink,
    # unlike the steady light of a running charger that is faulted
    "fault": [("led_ok", 0, 0), ("led_fault", 250, 750)],
}


class Feedback:
    def __init__(self, pins):
        self._pins = pins  # role -> pin object (on/off)
        self._events = []
        self.state = "idle"
        self._wake = asyncio.Event()

    def event(self, name):
        if name in EVENTS and len(self._events) < 4:  # never queue up a backlog of beeps
            self._events.append(name)
            self._wake.set()

    def steady(self, state):
        self.state = state
        self._wake.set()

    def _set(self, role, on):
        pin = self._pins.get(role)
        if pin is not None:
            pin.on() if on else pin.off()

    async def _play(self, name):
        for role, on_ms, off_ms, times in EVENTS[name]:
            for _ in range(times):
                self._set(role, True)
                await clock.sleep_ms(on_ms)
                self._set(role, False)
                if off_ms:
                    await clock.sleep_ms(off_ms)

    async def run(self):
        phase = False
        while True:
            while self._events:
                await self._play(self._events.pop(0))
            self._wake.clear()
            phase = not phase
            period = 500
            for role, on_ms, off_ms in STEADY.get(self.state, STEADY["idle"]):
                if on_ms == 0:
                    self._set(role, False)
                elif off_ms == 0:
                    self._set(role, True)
                else:
                    self._set(role, phase)
                    period = on_ms if phase else off_ms
            try:
                await asyncio.wait_for_ms(self._wake.wait(), max(1, period // clock.SPEED))
            except asyncio.TimeoutError:
                pass
