"""Run the uplink rig (sim/mp/uplink_rig.py) under MicroPython as a process, so a
test can break the network while the firmware runs."""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from sim import mpy


class DeviceRun:
    def __init__(self, spec: dict, heap: str | None = None):
        if spec.get("backend_key") is None:  # acks and auth answers are signed: pin the test backend's key
            from sim.backend_peer import default_signer

            spec = {**spec, "backend_key": default_signer().spki_hex}
        self.spec = spec
        self.heap = heap or spec.get("heap", "2m")
        self.results: list[dict] = []
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DeviceRun":
        # the spec goes in a file: the unix port dies on a command-line argument over 255 bytes
        fd, path = tempfile.mkstemp(prefix="uplink-spec-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(self.spec, f)
        self._spec_path = path
        self.proc = subprocess.Popen(
            [*mpy.command(mpy.MP_SUPPORT / "uplink_rig.py", self.heap), path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env=mpy.mpy_env({"EVC_TIME_QUALITY": "S"}),
        )
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            with self._cond:
                self.lines.append(line)
                if line.startswith(mpy.RESULT_PREFIX):
                    self.results.append(json.loads(line[len(mpy.RESULT_PREFIX):]))
                self._cond.notify_all()

    def wait_progress(self, acked: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(r.get("progress", -1) >= acked or "acked" in r for r in self.results):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"device did not reach {acked} acks\n{self.log()}")
                self._cond.wait(left)

    def wait_report(self, pred, timeout: float = 30) -> dict:
        """The first {"report": {...}} line (spec report_ms) for which pred(report) holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.results:
                    if "report" in r and pred(r["report"]):
                        return r["report"]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no report matched\n{self.log()}")
                self._cond.wait(left)

    def result(self, timeout: float = 120) -> dict:
        assert self.proc
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TimeoutError(f"device run did not finish\n{self.log()}")
        finally:
            os.unlink(self._spec_path) if os.path.exists(self._spec_path) else None
        time.sleep(0.05)
        final = [r for r in self.results if "acked" in r]
        if self.proc.returncode != 0 or not final:
            raise AssertionError(f"device run failed ({self.proc.returncode})\n{self.log()}")
        return final[-1]

    def log(self) -> str:
        with self._cond:
            return "\n".join(self.lines[-60:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def uplink_cfg(broker_url: str, **extra) -> dict:
    cfg = {"broker": broker_url, "keepalive_s": 5, "timeout_ms": 2000, "backoff_min_ms": 200,
           "backoff_max_ms": 2000, "resend_s": 5}
    cfg.update(extra)
    return cfg
