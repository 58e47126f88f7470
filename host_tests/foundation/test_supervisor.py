"""Supervisor under MicroPython: crashed tasks restart; the real host watchdog resets a wedged board."""
import subprocess
import textwrap
import time

from sim import mpy

CRASHY = """
import asyncio
from app.supervisor import Supervisor
from hal import clock

runs = []

async def flaky():
    runs.append(1)
    if len(runs) <= 2:
        raise RuntimeError("injected crash %d" % len(runs))
    while True:
        sup.progress("flaky")
        await clock.sleep_ms(10)

async def main():
    global sup
    sup = Supervisor()
    sup.spawn("flaky", flaky)
    asyncio.create_task(sup.run())
    await clock.sleep_ms(2500)
    emit({"runs": len(runs), "restarts": sup.restarts("flaky"), "stalled": sup.healthy(), "lag": sup.max_lag_ms})

asyncio.run(main())
"""


def test_crashed_task_is_logged_and_restarted():
    res = mpy.run(CRASHY)
    assert res.value["runs"] == 3 and res.value["restarts"] == 2
    assert res.value["stalled"] is None
    assert "injected crash 1" in res.stdout and "injected crash 2" in res.stdout


HUNGRY = """
import asyncio, gc
from app import log
from app.supervisor import Supervisor
from hal import clock

runs = []
hog = []

async def hungry():
    runs.append(1)
    if len(runs) == 1:
        hog.extend([None] * 1500)
        i = 0
        for size in (1024, 64, 1):  # every block of the heap, down to the smallest: nothing to spare
            try:
                while True:
                    hog[i] = bytearray(size)
                    i += 1
            except MemoryError:
                pass
        raise MemoryError("heap full")
    hog.clear()  # the restarted task gives the memory back and works
    while True:
        sup.progress("hungry")
        await clock.sleep_ms(10)

async def relief():
    # someone else lets go of the memory a little later (a buffer freed, a document applied)
    while not log.oom_count:
        await clock.sleep_ms(50)
    await clock.sleep_ms(200)
    hog.clear()

async def main():
    global sup
    sup = Supervisor()
    asyncio.create_task(relief())
    sup.spawn("hungry", hungry)
    asyncio.create_task(sup.run())
    await clock.sleep_ms(2500)
    emit({"runs": len(runs), "restarts": sup.restarts("hungry"), "stalled": sup.healthy(), "oom": log.oom_count})

asyncio.run(main())
"""


def test_a_task_that_runs_out_of_memory_is_logged_and_restarted():
    # the heap is full to the last block when the task fails: the supervisor's error path must not
    # allocate (formatting a traceback would raise again and end the guard: the task never restarts)
    res = mpy.run(HUNGRY, heap="96k")
    assert res.value == {"runs": 2, "restarts": 1, "stalled": None, "oom": 1}, res.stdout
    assert "E sup: MemoryError in hungry" in res.stdout


def _watchdog_script(body: str) -> str:
    return textwrap.dedent(
        """
        import asyncio, sys, time
        import board
        from app.supervisor import Supervisor
        from hal import clock

        async def main():
            sup = Supervisor(board.Watchdog(800))
            asyncio.create_task(sup.run())
        """
    ) + textwrap.indent(textwrap.dedent(body), "    ") + "\nasyncio.run(main())\n"


def _run(script: str, tmp_path, timeout: float = 20) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run(
        [*mpy.command(), "-c", script], capture_output=True, text=True, timeout=timeout,
        env=mpy.mpy_env({"EVC_ROOT": str(tmp_path)}),
    )
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def test_watchdog_fed_while_vital_tasks_progress(tmp_path):
    rc, out, _ = _run(
        _watchdog_script(
            """
            async def worker():
                while True:
                    sup.progress("worker")
                    await clock.sleep_ms(50)
            sup.spawn("worker", worker, stall_ms=500)
            await clock.sleep_ms(2500)
            print("survived")
            sys.exit(0)
            """
        ),
        tmp_path,
    )
    assert rc == 0 and "survived" in out, out


def test_watchdog_resets_when_vital_task_stalls(tmp_path):
    rc, out, took = _run(
        _watchdog_script(
            """
            async def worker():
                for _ in range(5):
                    sup.progress("worker")
                    await clock.sleep_ms(50)
                while True:  # alive but making no progress: wedged on something
                    await clock.sleep_ms(50)
            sup.spawn("worker", worker, stall_ms=500)
            await clock.sleep_ms(10000)
            print("not reset")
            """
        ),
        tmp_path,
    )
    assert rc == -9, out  # killed by the watchdog, as a reset
    assert "vital task worker made no progress" in out and "WATCHDOG" in out
    assert "not reset" not in out


def test_watchdog_resets_when_event_loop_blocks(tmp_path):
    rc, out, _ = _run(
        _watchdog_script(
            """
            await clock.sleep_ms(300)
            time.sleep(10)  # a driver that blocks the loop
            print("not reset")
            """
        ),
        tmp_path,
    )
    assert rc == -9 and "WATCHDOG" in out and "not reset" not in out, out
