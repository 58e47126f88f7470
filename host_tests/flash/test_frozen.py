"""A board running the frozen firmware image: the emulator plays one, deploy copies only what the
image lacks and removes files that would shadow it; a board without one gets a .mpy deploy with the
PSRAM warning."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools import flash
from tools.board_emulator import BoardEmulator
from tools.flashkit.device import FlashError

from .conftest import REPO, deploy

MPREMOTE = str(Path(sys.executable).with_name("mpremote"))
FW = flash.image.firmware_version(REPO / "firmware")


def mpremote_exec(port: str, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([MPREMOTE, "connect", port, "exec", code], capture_output=True, text=True, timeout=60)


def _files(flash_dir: Path) -> set[str]:
    return {p.relative_to(flash_dir).as_posix() for p in flash_dir.rglob("*") if p.is_file()}


def _firmware_files(flash_dir: Path) -> set[str]:
    """Files on the board's filesystem that belong to a frozen firmware module."""
    tops = {"app", "billing", "crypto", "hal", "journal", "meter", "nfc", "uplink", "board", "blockdev",
            "serial_posix", "tcp_bridge", "spi_bridge", "i2c_bridge"}
    return {f for f in _files(flash_dir) if f.split("/")[0].split(".")[0] in tops}


def test_emulated_image_imports_without_files_and_the_filesystem_shadows_it(frozen_emulator):
    flash_dir = frozen_emulator.flash_dir
    out = mpremote_exec(frozen_emulator.port, "import os, sys\nfrom app.version import FW_VERSION\nimport app\n"
                        "print(FW_VERSION, app.__path__, 'app' in os.listdir('/'))")
    assert out.stdout.split() == [FW, "/.frozen-image/app", "False"], out
    assert _files(flash_dir) == set()  # nothing on the filesystem
    (flash_dir / "app").mkdir()
    (flash_dir / "app" / "__init__.py").write_text("")
    (flash_dir / "app" / "version.py").write_text('FW_VERSION = "hotfix"\n')
    out = mpremote_exec(frozen_emulator.port, "from app.version import FW_VERSION\nprint(FW_VERSION)")
    assert out.stdout.strip() == "hotfix"  # "" comes before the image on sys.path, as on an ESP32


def test_deploy_to_a_frozen_image_copies_what_it_lacks_only(frozen_emulator, source, config_file, capsys):
    summary = deploy(frozen_emulator, source, config_file)
    out = capsys.readouterr().out
    assert summary["image"] == "frozen" and summary["image_fw"] == FW
    assert {"app", "billing", "board", "journal", "uplink"} <= set(summary["frozen"])
    # main.py (not frozen: MicroPython runs it as a file), the config, and umqtt.simple, which the
    # host manifest's require() brings in a real build but the emulated image leaves out
    assert _files(frozen_emulator.flash_dir) == {"main.py", "evc/config.json", ".evc-deploy.json",
                                                 "lib/umqtt/simple.mpy"}
    assert "runs the frozen firmware image" in out and "PSRAM" not in out
    manifest = json.loads((frozen_emulator.flash_dir / ".evc-deploy.json").read_text())
    assert manifest["image"] == "frozen" and "/app/boot.mpy" not in manifest["files"]
    st = flash.status(frozen_emulator.port)
    assert st["image"] == {"frozen": ["app"], "fw": FW, "running": "frozen"}
    assert flash.image_text(st) == f"frozen image (firmware {FW})"
    assert deploy(frozen_emulator, source, config_file)["copied"] == []  # nothing changed: nothing copied
    # the firmware runs from the image with the deployed config
    out = mpremote_exec(frozen_emulator.port, "import board\nfrom app import config\n"
                        "print(config.load(board.config_path())['device_id'])")
    assert out.stdout.strip() == "cp-0001", out


def test_dev_deploy_shadows_the_image_and_a_plain_deploy_removes_it(frozen_emulator, source, config_file, capsys):
    flash_dir = frozen_emulator.flash_dir
    deploy(frozen_emulator, source, config_file)
    summary = deploy(frozen_emulator, source, config_file, dev_files=True)
    out = capsys.readouterr().out
    assert summary["image"] == "files" and "/app/boot.mpy" in summary["copied"]
    assert "shadow the frozen firmware" in out and "PSRAM" in out and "build-image" in out
    st = flash.status(frozen_emulator.port)
    assert st["image"]["running"] == "filesystem" and "SHADOWED" in flash.image_text(st)
    # leftovers a technician may have copied by hand: each would shadow a frozen module too
    (flash_dir / "app" / "scratch.txt").write_text("notes")
    (flash_dir / "app" / "boot.mpy.new").write_bytes(b"half")
    (flash_dir / "billing.py").write_text("X = 1\n")
    (flash_dir / "hal" / "extra").mkdir()
    (flash_dir / "hal" / "extra" / "x.py").write_text("")
    capsys.readouterr()
    summary = deploy(frozen_emulator, source, config_file)
    out = capsys.readouterr().out
    assert summary["image"] == "frozen" and summary["copied"] == []
    assert "/app/scratch.txt" in summary["removed"] and "/billing.py" in summary["removed"]
    assert "/lib/umqtt/simple.mpy" not in summary["removed"]  # not frozen in this image: still needed
    assert "would shadow the frozen modules" in out and "/app/ (" in out
    assert _firmware_files(flash_dir) == set()
    assert not (flash_dir / "app").exists() and not (flash_dir / "hal").exists()
    assert flash.status(frozen_emulator.port)["image"]["running"] == "frozen"


def test_an_older_image_is_named(tmp_path, frozen_dir, source, config_file, capsys):
    old = tmp_path / "old-image"
    shutil.copytree(frozen_dir, old)
    (old / "app" / "version.py").write_text('FW_VERSION = "0.0.1"\n\n\ndef get():\n    return {"fw": FW_VERSION}\n')
    with BoardEmulator(tmp_path / "flash", run_main=False, env={"EVC_ROOT": "/evc"}, frozen=old) as emu:
        summary = deploy(emu, source, config_file)
    out = capsys.readouterr().out
    assert summary["image_fw"] == "0.0.1"
    assert f"the image carries firmware 0.0.1, this checkout is {FW}" in out and "build-image" in out


def test_a_board_without_the_image_gets_mpy_files_and_the_psram_warning(emulator, source, capsys):
    summary = deploy(emulator, source)
    out = capsys.readouterr().out
    assert summary["image"] == "files" and summary["frozen"] == []
    assert "/app/boot.mpy" in summary["copied"]
    assert "needs a board with PSRAM" in out and "flash.py build-image" in out and "install-micropython --bin" in out
    st = flash.status(emulator.port)
    assert st["image"] == {"frozen": [], "fw": None, "running": "filesystem"}
    assert flash.image_text(st).startswith(".mpy files on the filesystem")


def test_psram_warning_is_firm_when_the_heap_is_small(capsys):
    flash._files_deploy_warning({"heap": 110 * 1024}, "esp32", over_image=False)
    out = capsys.readouterr().out
    assert "heap is 110 KiB (no PSRAM in use)" in out and "will not fit" in out and "build-image" in out
    flash._files_deploy_warning({"heap": 4 * 1024 * 1024}, "esp32", over_image=False)
    assert "will not fit" not in capsys.readouterr().out


def test_module_tops():
    from tools.flashkit import build

    assert build.module_top("/app/boot.mpy") == "app" and build.module_top("/board.py") == "board"
    assert build.module_top("/lib/umqtt/simple.mpy") == "umqtt" and build.module_top("/board.txt") is None
    assert build.module_tops(["/main.py", "/boot.py", "/app/x.py", "/pincheck.mpy"]) == {"app", "pincheck"}


def test_detection_on_really_frozen_modules(tmp_path, source, config_file, esp32geom):
    """The esp32geom interpreter has the firmware frozen in by MicroPython's own tools (".frozen",
    no stand-in): deploy and status judge it as they judge the emulated image."""
    with BoardEmulator(tmp_path / "flash", run_main=False, env={"EVC_ROOT": "/evc"}, micropython=str(esp32geom)) as emu:
        summary = deploy(emu, source, config_file)
        assert summary["image"] == "frozen" and "app" in summary["frozen"]
        assert _files(emu.flash_dir) == {"main.py", "evc/config.json", ".evc-deploy.json"}  # umqtt is frozen too
        assert flash.status(emu.port)["image"]["running"] == "frozen"
        deploy(emu, source, config_file, dev_files=True, compile_mpy=False)
        assert flash.status(emu.port)["image"]["running"] == "filesystem"
        summary = deploy(emu, source, config_file)
        assert _firmware_files(emu.flash_dir) == set() and summary["removed"]
        assert flash.status(emu.port)["image"]["running"] == "frozen"


def test_image_helpers_leave_the_board_as_they_found_it(frozen_emulator):
    from tools.flashkit.device import Device

    with Device(frozen_emulator.port) as dev:
        before = dev.call("import sys\n_evc_say([list(sys.path), sorted(sys.modules)])")
        image = dev.call("_evc_image(['app', 'board', 'nothere'])")
        after = dev.call("import sys\n_evc_say([list(sys.path), sorted(sys.modules)])")
    assert image["frozen"] == ["app", "board"] and before == after


def test_install_micropython_checks_an_image_against_its_description(tmp_path, capsys):
    image = tmp_path / "evc-0.1.0-ESP32_GENERIC.bin"
    image.write_bytes(bytes([0xE9, 3, 2, 0x20]) + bytes(8) + (0).to_bytes(2, "little") + bytes(1000))
    (tmp_path / "evc-0.1.0-ESP32_GENERIC.json").write_text(json.dumps({"image": image.name, "sha256": "00" * 32}))
    with pytest.raises(FlashError, match="does not match evc-0.1.0-ESP32_GENERIC.json"):
        flash.install_micropython("/dev/null", image, "esp32-devkitc", 460800, True)
