"""Supervisor restart backoff under MicroPython (device clock sped up 50x)."""
import re

from sim import mpy

RARE_CRASHES = """
import asyncio
from app.supervisor import Supervisor
from hal import clock

runs = []

async def worker():
    runs.append(clock.monotonic_ms())
    if len(runs) <= 2:
        raise RuntimeError("crash loop %d" % len(runs))
    while True:  # then it runs well for 31 s of device time between crashes
        sup.progress("worker")
        await clock.sleep_ms(1000)
        if clock.monotonic_ms() - runs[-1] > 31000:
            raise RuntimeError("rare crash %d" % len(runs))

async def main():
    global sup
    sup = Supervisor()
    sup.spawn("worker", worker)
    asyncio.create_task(sup.run())
    while len(runs) < 5:
        await clock.sleep_ms(500)
    emit(len(runs))

asyncio.run(main())
"""


def test_backoff_grows_in_a_crash_loop_and_resets_after_a_good_run():
    res = mpy.run(RARE_CRASHES, env={"EVC_CLOCK_SPEED": "50"}, timeout=60)
    delays = [int(d) for d in re.findall(r"task worker crashed; restart \d+ in (\d+) ms", res.stdout)]
    assert delays[:2] == [500, 1000], res.stdout
    assert delays[2:4] == [500, 500], "a task that ran well for long is restarted without the crash-loop backoff"
