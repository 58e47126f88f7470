"""The board emulator speaks MicroPython's serial protocols well enough for the real mpremote."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mpremote.transport_serial import SerialTransport

from tools.board_emulator import BoardEmulator

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))


def mpremote(port: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MPREMOTE, "connect", port, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("raw_paste", [True, False], ids=["raw-paste", "raw-repl"])
def test_mpremote_exec_cp_cat_ls(tmp_path, raw_paste):
    src = tmp_path / "hello.py"
    src.write_text("GREETING = 'hello from flash'\n" + "# padding\n" * 300)  # > several paste windows
    with BoardEmulator(tmp_path / "flash", run_main=False, raw_paste=raw_paste) as emu:
        assert mpremote(emu.port, "exec", "print(6 * 7)").stdout == "42\n"
        cp = mpremote(emu.port, "fs", "cp", str(src), ":lib/hello.py")
        assert cp.returncode != 0  # no lib/ folder yet: the board's OSError reaches mpremote
        assert mpremote(emu.port, "fs", "mkdir", "lib").returncode == 0
        assert mpremote(emu.port, "fs", "cp", str(src), ":lib/hello.py").returncode == 0
        assert (tmp_path / "flash" / "lib" / "hello.py").read_bytes() == src.read_bytes()
        assert mpremote(emu.port, "exec", "import hello; print(hello.GREETING)").stdout == "hello from flash\n"
        assert mpremote(emu.port, "fs", "cat", "lib/hello.py").stdout.startswith("GREETING")
        again = mpremote(emu.port, "fs", "cp", str(src), ":lib/hello.py")
        assert "Up to date" in again.stdout  # mpremote's own hash check ran on the board
        failed = mpremote(emu.port, "exec", "1 // 0")
        assert failed.returncode == 1 and "ZeroDivisionError" in failed.stdout + failed.stderr


def test_absolute_paths_stay_inside_the_flash_folder(tmp_path):
    with BoardEmulator(tmp_path / "flash", run_main=False) as emu:
        out = mpremote(emu.port, "exec", "open('/x.txt', 'w').write('1'); import os; os.rename('/x.txt', '/y.txt'); print(os.listdir('/'))")
        assert out.stdout.strip() == "['y.txt']"
    assert (tmp_path / "flash" / "y.txt").read_text() == "1"


def test_state_survives_between_execs_until_soft_reset(tmp_path):
    with BoardEmulator(tmp_path / "flash", run_main=False) as emu:
        t = SerialTransport(emu.port, timeout=2)
        try:
            t.enter_raw_repl(soft_reset=False)
            t.exec("x = 41")
            assert t.eval("x + 1") == 42
            t.exit_raw_repl()
            t.enter_raw_repl(soft_reset=True)  # Ctrl-D: a fresh interpreter, like a real board
            assert t.eval("'x' in globals()") is False
        finally:
            t.close()
        assert emu.resets["soft"] == 1


def test_ctrl_c_interrupts_running_code(tmp_path):
    with BoardEmulator(tmp_path / "flash", run_main=False) as emu:
        t = SerialTransport(emu.port, timeout=2)
        try:
            t.enter_raw_repl(soft_reset=False)
            t.exec_raw_no_follow("n = 0\nwhile True:\n    n += 1\n")
            time.sleep(0.3)  # let it start looping
            t.enter_raw_repl(soft_reset=False)  # sends Ctrl-C first
            assert t.eval("n") > 0
        finally:
            t.close()


def _wait_for(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.02)


def test_main_py_runs_after_reset_and_is_interrupted_by_a_connection(tmp_path):
    flash_dir = tmp_path / "flash"
    flash_dir.mkdir()
    (flash_dir / "main.py").write_text(
        "import time\nboots = globals().get('boots', 0) + 1\nopen('running', 'w').write(str(boots))\n"
        "while True:\n    time.sleep_ms(10)\n")
    with BoardEmulator(flash_dir, run_main=True) as emu:
        _wait_for(flash_dir / "running")
        assert mpremote(emu.port, "resume", "exec", "print(boots)").stdout.strip() == "1"  # Ctrl-C stopped main.py
        (flash_dir / "running").unlink()
        mpremote(emu.port, "exec", "import sys; sys.exit(75)")  # a hard reset, like board.reset()
        _wait_for(flash_dir / "running")
        assert mpremote(emu.port, "resume", "exec", "print(boots)").stdout.strip() == "1"  # a fresh interpreter ran it
        assert emu.resets["hard"] == 1
