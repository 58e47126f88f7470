"""build-image: MicroPython's own ESP32 build with boards/esp32/manifest.py. ESP-IDF cannot run
here: a fake `make` on PATH records its arguments and writes what the port's build leaves in
ports/esp32/build-BOARD/."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import flash
from tools.flashkit import image

from .conftest import REPO

FAKE_MAKE = '''#!{python}
import json, os, sys
from pathlib import Path
argv = sys.argv[1:]
with open(os.environ["FAKE_MAKE_LOG"], "a") as log:
    log.write(json.dumps({{"argv": argv, "cwd": os.getcwd()}}) + "\\n")
port = Path(argv[argv.index("-C") + 1])
var = dict(a.split("=", 1) for a in argv if "=" in a)
if "submodules" in argv:
    lib = port.parents[1] / "lib" / "micropython-lib"
    lib.mkdir(parents=True, exist_ok=True)
    (lib / "README.md").write_text("micropython-lib")
    sys.exit(0)
rc = int(os.environ.get("FAKE_MAKE_RC", "0"))
if rc:
    print("ninja: build stopped: subcommand failed.")
    sys.exit(rc)
build = port / ("build-" + var["BOARD"])
build.mkdir(parents=True, exist_ok=True)
chip = 9 if var["BOARD"].endswith("_S3") else 0
header = bytes([0xE9, 3, 2, 0x20]) + bytes(8) + chip.to_bytes(2, "little") + bytes(10)
(build / "firmware.bin").write_bytes(header + os.urandom(4096))
names = os.environ.get("FAKE_FROZEN")
if names:
    body = "".join('    "%s\\\\0"\\n' % n for n in Path(names).read_text().split())
    (build / "frozen_content.c").write_text("const char mp_frozen_names[] = {{\\n" + body + "    \\"\\\\0\\"\\n}};\\n")
print("Project build complete.")
'''


@pytest.fixture
def checkout(tmp_path) -> Path:
    """A MicroPython checkout as far as build-image looks at one."""
    mp = tmp_path / "micropython"
    (mp / "py").mkdir(parents=True)
    (mp / "py" / "mpconfig.h").write_text("#define MICROPY_VERSION_MAJOR 1\n#define MICROPY_VERSION_MINOR 25\n"
                                          "#define MICROPY_VERSION_MICRO 0\n#define MICROPY_VERSION_PRERELEASE 0\n")
    (mp / "ports" / "esp32").mkdir(parents=True)
    (mp / "ports" / "esp32" / "Makefile").write_text("# the fake make never reads it\n")
    return mp


def _bin(tmp_path: Path, idf: bool) -> Path:
    folder = tmp_path / ("bin-idf" if idf else "bin")
    folder.mkdir()
    make = folder / "make"
    make.write_text(FAKE_MAKE.format(python=sys.executable))
    make.chmod(0o755)
    if idf:
        (folder / "idf.py").write_text("#!/bin/sh\nexit 0\n")
        (folder / "idf.py").chmod(0o755)
    return folder


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """PATH with the fake make and an idf.py; returns the log of make's calls."""
    monkeypatch.setenv("PATH", f"{_bin(tmp_path, idf=True)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("IDF_PATH", raising=False)
    log = tmp_path / "make.log"
    monkeypatch.setenv("FAKE_MAKE_LOG", str(log))
    frozen = tmp_path / "frozen.txt"
    ours = [p for p, _src in image.manifest_files(image.MANIFEST)]
    frozen.write_text("\n".join(["asyncio/__init__.py", "umqtt/simple.py", *ours]))
    monkeypatch.setenv("FAKE_FROZEN", str(frozen))
    return log


def _calls(log: Path) -> list[list[str]]:
    return [json.loads(line)["argv"] for line in log.read_text().splitlines()] if log.exists() else []


def test_builds_with_the_manifest_and_describes_the_image(checkout, fake_env, tmp_path, capsys):
    out = tmp_path / "out"
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc", "--out", str(out)]) == 0
    port = str((checkout / "ports" / "esp32").resolve())
    assert _calls(fake_env) == [
        ["-C", port, "BOARD=ESP32_GENERIC", "submodules"],  # micropython-lib was missing (require("umqtt.simple"))
        ["-C", port, "BOARD=ESP32_GENERIC", f"FROZEN_MANIFEST={(REPO / 'boards' / 'esp32' / 'manifest.py').resolve()}"],
    ]
    fw = image.firmware_version()
    bin_path = out / f"evc-{fw}-ESP32_GENERIC.bin"
    built = (checkout / "ports" / "esp32" / "build-ESP32_GENERIC" / "firmware.bin").read_bytes()
    assert bin_path.read_bytes() == built
    meta = json.loads((out / f"evc-{fw}-ESP32_GENERIC.json").read_text())
    assert meta["board"] == "esp32-devkitc" and meta["micropython_board"] == "ESP32_GENERIC" and meta["chip"] == "esp32"
    assert meta["micropython_version"] == "1.25.0" and meta["micropython_commit"] is None  # not a git clone
    assert meta["firmware_version"] == fw and meta["image"] == bin_path.name
    assert meta["sha256"] == hashlib.sha256(built).hexdigest() and meta["flash_offset"] == "0x1000"
    packages = {p.name for p in (REPO / "firmware").iterdir() if (p / "__init__.py").exists()}
    assert packages | {"app.boot", "board", "board_defs", "board_chips", "pincheck"} <= set(meta["frozen_modules"])
    assert "main" not in meta["frozen_modules"]  # MicroPython runs main.py from the filesystem
    assert meta["other_frozen_modules"] == ["asyncio", "umqtt.simple"]
    printed = capsys.readouterr().out
    assert "install-micropython" in printed and "esp32-devkitc, olimex-esp32-poe" in printed
    # the second build finds micropython-lib in place: make runs once
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc", "--out", str(out)]) == 0
    assert len(_calls(fake_env)) == 3
    # install-micropython recognises the image by the description beside it
    assert image.read_meta(bin_path)["sha256"] == hashlib.sha256(bin_path.read_bytes()).hexdigest()


def test_s3_board_builds_esp32_generic_s3(checkout, fake_env, tmp_path):
    (checkout / "lib" / "micropython-lib").mkdir(parents=True)
    (checkout / "lib" / "micropython-lib" / "README.md").write_text("")
    out = tmp_path / "out"
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-s3-devkitc-1", "--out", str(out)]) == 0
    [call] = _calls(fake_env)
    assert "BOARD=ESP32_GENERIC_S3" in call
    meta = json.loads(next(out.glob("*.json")).read_text())
    assert meta["chip"] == "esp32s3" and meta["flash_offset"] == "0x0"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "tools/flash.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env=env)


def test_without_esp_idf_it_says_how_to_set_it_up(checkout, tmp_path):
    log = tmp_path / "make.log"
    env = {k: v for k, v in os.environ.items() if k != "IDF_PATH"}
    env.update(PATH=f"{_bin(tmp_path, idf=False)}{os.pathsep}/usr/bin{os.pathsep}/bin", FAKE_MAKE_LOG=str(log),
               COLUMNS="200")
    proc = _run(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc", "--out", str(tmp_path / "o")],
                env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "ESP-IDF is not set up" in proc.stdout and "export.sh" in proc.stdout and "install.sh" in proc.stdout
    assert not log.exists() and not (tmp_path / "o").exists()  # nothing was run, nothing was written
    # IDF_PATH set, but export.sh was not run in this shell
    env["IDF_PATH"] = str(tmp_path / "esp-idf")
    proc = _run(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc"], env)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "idf.py is not on PATH" in proc.stdout and f"{tmp_path / 'esp-idf'}/export.sh" in proc.stdout


def test_not_a_micropython_checkout(fake_env, tmp_path, capsys):
    assert flash.main(["build-image", "--micropython", str(tmp_path / "nowhere"), "--board", "esp32-devkitc"]) == 2
    assert "not a MicroPython checkout" in capsys.readouterr().out
    assert _calls(fake_env) == []


def test_too_old_a_micropython(checkout, fake_env, capsys):
    text = (checkout / "py" / "mpconfig.h").read_text().replace("MINOR 25", "MINOR 19")
    (checkout / "py" / "mpconfig.h").write_text(text)
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc"]) == 2
    assert "v1.19.0" in capsys.readouterr().out


def test_a_failed_build(checkout, fake_env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_MAKE_RC", "2")
    out = tmp_path / "out"
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc", "--out", str(out)]) == 1
    assert "MicroPython's build failed" in capsys.readouterr().out
    assert not out.exists()


def test_an_image_that_lacks_a_frozen_module(checkout, fake_env, tmp_path, monkeypatch, capsys):
    partial = tmp_path / "partial.txt"
    partial.write_text("\n".join(n for n in Path(os.environ["FAKE_FROZEN"]).read_text().split() if n != "app/boot.py"))
    monkeypatch.setenv("FAKE_FROZEN", str(partial))
    out = tmp_path / "out"
    assert flash.main(["build-image", "--micropython", str(checkout), "--board", "esp32-devkitc", "--out", str(out)]) == 1
    assert "the image lacks 1 modules the manifest freezes (app/boot.py)" in capsys.readouterr().out
    assert not out.exists()


def test_the_esp32_manifest_freezes_every_firmware_package_and_the_board_layer():
    files = image.manifest_files(image.MANIFEST)
    assert image.unfrozen_firmware([p for p, _src in files]) == []
    assert all(src.is_file() for _p, src in files)
    assert "main.py" not in [p for p, _src in files]  # MicroPython runs main.py as a file: deploy copies it
    assert image.module_name("app/__init__.py") == "app" and image.module_name("nfc/pn532.py") == "nfc.pn532"
