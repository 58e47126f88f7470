"""deploy through the board emulator with the real mpremote transport: compiled, hashed, incremental."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import flash
from tools.board_emulator import BoardEmulator
from tools.flashkit.device import FlashFull

from .conftest import GOOD_CONFIG, LIB_DIR, deploy


def _snapshot(flash_dir: Path) -> dict[str, float]:
    return {str(p.relative_to(flash_dir)): p.stat().st_mtime_ns for p in flash_dir.rglob("*")
            if p.is_file() and "evc" not in p.parts}


def test_deploy_compiles_installs_libs_writes_config_and_runs(deployed, tmp_path):
    flash_dir = deployed.flash_dir
    assert (flash_dir / "main.py").exists()  # run as a file by MicroPython: never compiled
    assert (flash_dir / "app" / "boot.mpy").exists() and not (flash_dir / "app" / "boot.py").exists()
    assert (flash_dir / "board.mpy").exists()  # the host board layer for this emulator
    assert (flash_dir / "lib" / "umqtt" / "simple.mpy").exists()  # the board lacked umqtt.simple
    assert json.loads((flash_dir / "evc" / "config.json").read_text()) == GOOD_CONFIG
    manifest = json.loads((flash_dir / ".evc-deploy.json").read_text())
    assert manifest["board"] == "host" and "/app/boot.mpy" in manifest["files"]
    # the deployed firmware imports and validates its config on the board itself
    out = subprocess.run([str(Path(sys.executable).with_name("mpremote")), "connect", deployed.port, "exec",
                          "import board\nfrom app import config\nfrom app.version import FW_VERSION\n"
                          "print(FW_VERSION, config.load(board.config_path())['device_id'])\nimport umqtt.simple"],
                         capture_output=True, text=True, timeout=60)
    fw = flash.checks._firmware_module("app.version").FW_VERSION
    assert out.stdout.split() == [fw, "cp-0001"], out


def test_second_deploy_copies_nothing(deployed, source, config_file):
    before = _snapshot(deployed.flash_dir)
    summary = deploy(deployed, source, config_file)
    assert summary["copied"] == [] and summary["removed"] == [] and not summary["config_written"]
    assert summary["unchanged"] > 40
    assert _snapshot(deployed.flash_dir) == before  # not one file rewritten


def test_changed_and_removed_files(emulator, tmp_path, config_file):
    import shutil

    src = tmp_path / "checkout"
    for name in ("firmware", "boards"):
        shutil.copytree(Path(__file__).resolve().parents[2] / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    extra = src / "firmware" / "app" / "scratch.py"
    extra.write_text("X = 1\n")
    deploy(emulator, src, config_file)
    assert (emulator.flash_dir / "app" / "scratch.mpy").exists()
    (src / "firmware" / "app" / "version.py").write_text('FW_VERSION = "9.9.9"\n\n\ndef get():\n    return {"fw": FW_VERSION}\n')
    extra.unlink()
    summary = deploy(emulator, src, config_file)
    assert summary["copied"] == ["/app/version.mpy"]
    assert summary["removed"] == ["/app/scratch.mpy"]
    assert not (emulator.flash_dir / "app" / "scratch.mpy").exists()
    assert flash.status(emulator.port)["fw"] == "9.9.9"


def test_copies_sources_without_a_matching_mpy_cross(emulator, source):
    summary = deploy(emulator, source, compile_mpy=False)
    assert not summary["compiled"]
    assert (emulator.flash_dir / "app" / "boot.py").exists()
    summary = deploy(emulator, source)  # now compiled: every .py is replaced by its .mpy
    assert "/app/boot.py" in summary["removed"] and (emulator.flash_dir / "app" / "boot.mpy").exists()
    assert not (emulator.flash_dir / "app" / "boot.py").exists()


def test_bad_config_never_reaches_the_board(emulator, source, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"meter": {"url": "tcp://nohost"}}))
    rc = flash.main(["deploy", "--port", emulator.port, "--board", "host", "--config", str(bad),
                     "--lib-dir", str(LIB_DIR), "--source", str(source)])
    assert rc == 2
    assert "meter.url" in capsys.readouterr().out
    assert list(emulator.flash_dir.iterdir()) == []


def test_flash_full_is_caught_before_copying(tmp_path, source):
    with BoardEmulator(tmp_path / "flash", run_main=False, littlefs_kb=96, env={"EVC_ROOT": "/evc"}) as emu:
        with pytest.raises(FlashFull, match="flash is too full.*KiB are free"):
            deploy(emu, source)


def test_cli_deploy_runs_as_a_script(emulator, source, config_file):
    """What a technician types; also proves flash.py imports without the MicroPython unix port."""
    env = dict(os.environ, PATH="/usr/bin:/bin")
    proc = subprocess.run([sys.executable, "tools/flash.py", "deploy", "--port", emulator.port, "--board", "host",
                           "--config", str(config_file), "--lib-dir", str(LIB_DIR), "--source", str(source)],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deploy done" in proc.stdout
