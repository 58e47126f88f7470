"""tools/flash.py deploy through the board emulator: full vs incremental, .mpy vs .py."""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import Row

TITLE = "flash.py deploy over the raw REPL (board emulator on a pty, real mpremote transport)"
REPO = Path(__file__).resolve().parents[1]


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run() -> list[Row]:
    from tools import flash
    from tools.board_emulator import BoardEmulator
    from tools.flashkit.device import Device

    rows: list[Row] = []
    lib = REPO / ".venv" / "mplib"
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        src = Path(tmp) / "checkout"
        for name in ("firmware", "boards"):
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        results = {}
        for mode in ("mpy", "py"):
            with BoardEmulator(Path(tmp) / f"flash-{mode}", run_main=False, env={"EVC_ROOT": "/evc"}) as emu:
                full, t_full = _timed(lambda: flash.deploy(emu.port, "host", None, lib_dir=lib, source=src,
                                                           compile_mpy=mode == "mpy"))
                again, t_again = _timed(lambda: flash.deploy(emu.port, "host", None, lib_dir=lib, source=src,
                                                             compile_mpy=mode == "mpy"))
                results[mode] = (full, t_full, again, t_again)
                if mode == "mpy":
                    with Device(emu.port) as dev:
                        n = 50
                        _, t_exec = _timed(lambda: [dev.exec("x=1") for _ in range(n)])
                        rows.append(Row("flash", "raw-paste exec round trip", t_exec / n * 1000, "ms", "tiny statement"))
    for mode, (full, t_full, again, t_again) in results.items():
        rows.append(Row("flash", f"first deploy ({mode})", t_full, "s",
                        f"{len(full['copied'])} files, {full['bytes'] // 1024} KiB"))
        rows.append(Row("flash", f"second deploy, nothing changed ({mode})", t_again, "s",
                        f"{len(again['copied'])} files copied"))
    rows.append(Row("flash", "bytes to copy: .mpy vs .py", f"{results['mpy'][0]['bytes'] // 1024} KiB vs "
                    f"{results['py'][0]['bytes'] // 1024} KiB", "", "same run"))
    return rows
