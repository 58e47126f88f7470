"""Fixtures for the meter tests: the pymodbus meter peer and the firmware meter under MicroPython."""
from __future__ import annotations

import json
import queue
import subprocess
import threading
from pathlib import Path

import pytest

from sim import mpy
from sim.meter_peer import MeterPeer

DRIVER = Path(__file__).with_name("mp") / "meter_driver.py"


class FirmwareMeter:
    """The firmware's Meter in a MicroPython process, driven one command at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(mpy.command(DRIVER), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=mpy.mpy_env())
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def call(self, op: str, timeout: float = 20, **kw):
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"firmware did not answer {op} within {timeout} s; log: {self.log[-20:]}") from None
            if line is None:
                raise AssertionError(f"firmware exited: {self.proc.stderr.read() if self.proc.stderr else ''}")
            if line.startswith("=> "):
                out = json.loads(line[3:])
                if isinstance(out, dict) and "crash" in out:
                    raise AssertionError(f"firmware raised {out['crash']}")
                return out
            self.log.append(line.rstrip())

    def open(self, url: str, model: str, **kw):
        return self.call("open", url=url, model=model, **kw)

    def poll(self):
        return self.call("poll")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def firmware():
    fw = FirmwareMeter()
    yield fw
    fw.close()


@pytest.fixture(params=["tcp"])
def peer(request):
    with MeterPeer(request.param) as p:
        yield p


@pytest.fixture(params=["tcp", "pty"])
def any_peer(request):
    with MeterPeer(request.param) as p:
        yield p
