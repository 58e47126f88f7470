"""The frozen firmware image: MicroPython's own ESP32 build with the firmware frozen in.

`flash.py build-image` runs `make -C ports/esp32 BOARD=... FROZEN_MANIFEST=boards/esp32/manifest.py`
in a MicroPython checkout (ESP-IDF exported in the shell), checks that the image holds every
module the manifest freezes, and copies the merged image (bootloader, partition table and
MicroPython: what `install-micropython --bin` writes) with a JSON description next to it.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .build import BOARD_LAYERS, BOARDS, FIRMWARE, REPO
from .device import MIN_VERSION, FlashError

MANIFEST = BOARDS / "esp32" / "manifest.py"
# esptool image header: magic 0xE9, chip id at byte 12. The merged image starts with the
# bootloader, which carries the same header; it is written where the bootloader lives.
CHIP_IDS = {0: "esp32", 9: "esp32s3"}
FLASH_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0}
# MicroPython's generic board per chip: one image serves every board of ours with that chip
# (/board.txt names the board at run time).
MICROPYTHON_BOARDS = {"esp32": "ESP32_GENERIC", "esp32s3": "ESP32_GENERIC_S3"}


class SetupError(FlashError):
    """The build environment is not ready (no ESP-IDF, not a MicroPython checkout): nothing was
    built. flash.py exits with code 2."""


def image_chip(image: bytes) -> str:
    """The chip an ESP-IDF app image is built for (header magic 0xE9, chip id at byte 12)."""
    if len(image) < 24 or image[0] != 0xE9:
        raise FlashError("not an ESP32 firmware image (no 0xE9 header): use the firmware.bin of "
                         "flash.py build-image, or the .bin for your board from micropython.org/download "
                         "(ESP32_GENERIC or ESP32_GENERIC_S3)")
    chip_id = int.from_bytes(image[12:14], "little")
    if chip_id not in CHIP_IDS:
        raise FlashError(f"firmware image is for chip id {chip_id}, which this tool does not support")
    return CHIP_IDS[chip_id]


# ---------------------------------------------------------------------------- the manifest
def manifest_files(manifest: Path = MANIFEST) -> list[tuple[str, Path]]:
    """(frozen path such as "app/boot.py", source file) for what the manifest freezes from this
    repository: its package() and module() calls, resolved as MicroPython's tools/manifestfile.py
    resolves them. include() and require() (the port's own modules, micropython-lib) are the
    build's business."""
    folder = manifest.parent
    out: list[tuple[str, Path]] = []

    def ours(base_path: str) -> Path | None:
        return None if "$(" in base_path else (folder / base_path).resolve()

    def package(package_path: str, files: list[str] | None = None, base_path: str = ".", opt: int | None = None) -> None:
        base = ours(base_path)
        if base is None:
            return
        if files is not None:
            out.extend((f"{package_path}/{f}", base / package_path / f) for f in files)
            return
        for src in sorted((base / package_path).rglob("*.py")):
            if "__pycache__" not in src.parts:
                out.append((src.relative_to(base).as_posix(), src))

    def module(module_path: str, base_path: str = ".", opt: int | None = None) -> None:
        base = ours(base_path)
        if base is not None:
            out.append((module_path, base / module_path))

    def elsewhere(*_args, **_kw) -> None:
        pass

    names = {"package": package, "module": module, "include": elsewhere, "require": elsewhere,
             "metadata": elsewhere, "options": type("options", (), {})()}
    try:
        exec(compile(manifest.read_text(), str(manifest), "exec"), names)
    except OSError as exc:
        raise FlashError(f"cannot read {manifest}: {exc.strerror}") from None
    except Exception as exc:  # a manifest flash.py cannot read is a bug in it: say where
        raise FlashError(f"cannot read {manifest}: {type(exc).__name__}: {exc}") from None
    missing = [str(src) for _path, src in out if not src.exists()]
    if missing:
        raise FlashError(f"{manifest} freezes files that do not exist: {', '.join(missing)}")
    return out


def module_name(frozen_path: str) -> str:
    """"app/__init__.py" -> "app", "app/boot.py" -> "app.boot", "board.py" -> "board"."""
    name = frozen_path[: -len(".py")] if frozen_path.endswith(".py") else frozen_path
    if name.endswith("/__init__"):
        name = name[: -len("/__init__")]
    return name.replace("/", ".")


def unfrozen_firmware(frozen_paths: list[str], firmware: Path = FIRMWARE,
                      board_layer: list[str] | None = None) -> list[str]:
    """Firmware packages and board-layer modules the manifest leaves out (main.py is not frozen:
    MicroPython runs it as a file)."""
    frozen_tops = {p.split("/", 1)[0].removesuffix(".py") for p in frozen_paths}
    wanted = {p.name for p in firmware.iterdir() if (p / "__init__.py").exists()}
    wanted |= {name.removesuffix(".py") for name in (board_layer or BOARD_LAYERS["esp32"])}
    return sorted(wanted - frozen_tops)


# ---------------------------------------------------------------------------- the checkout
def micropython_version(checkout: Path) -> str:
    """"1.25.0" (or "1.26.0-preview") from py/mpconfig.h."""
    try:
        text = (checkout / "py" / "mpconfig.h").read_text(errors="replace")
    except OSError:
        raise SetupError(f"{checkout} is not a MicroPython checkout (no py/mpconfig.h): pass --micropython "
                         f"PATH of a clone of https://github.com/micropython/micropython (v1.22 or newer)") from None
    parts = []
    for field in ("MAJOR", "MINOR", "MICRO"):
        m = re.search(rf"#define MICROPY_VERSION_{field}\s+\(?(\d+)", text)
        if not m:
            raise SetupError(f"{checkout}/py/mpconfig.h names no MICROPY_VERSION_{field}: not a MicroPython checkout?")
        parts.append(int(m.group(1)))
    pre = re.search(r"#define MICROPY_VERSION_PRERELEASE\s+\(?(\d+)", text)
    version = ".".join(map(str, parts)) + ("-preview" if pre and pre.group(1) != "0" else "")
    if tuple(parts) < MIN_VERSION:
        raise SetupError(f"the MicroPython checkout at {checkout} is v{version}; the firmware needs "
                         f"{'.'.join(map(str, MIN_VERSION))} or newer: git -C {checkout} checkout v1.25.0 (or newer)")
    return version


def git_commit(folder: Path) -> str | None:
    """`git describe --always --dirty` plus the full commit id, or None (no git, not a clone)."""
    try:
        full = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=20)
        described = subprocess.run(["git", "-C", str(folder), "describe", "--tags", "--always", "--dirty"],
                                   capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if full.returncode != 0:
        return None
    name = described.stdout.strip() if described.returncode == 0 else ""
    commit = full.stdout.strip()
    return f"{name} ({commit})" if name and name != commit[: len(name)] else commit


def firmware_version(firmware: Path = FIRMWARE) -> str:
    text = (firmware / "app" / "version.py").read_text()
    m = re.search(r'^FW_VERSION\s*=\s*["\']([^"\']+)["\']', text, re.M)
    if not m:
        raise FlashError(f"{firmware}/app/version.py has no FW_VERSION = \"...\" line")
    return m.group(1)


def check_tools(checkout: Path, board: str, env: dict[str, str] | None = None) -> None:
    """make and ESP-IDF (idf.py) must be reachable from this shell: else SetupError saying how."""
    env = dict(os.environ if env is None else env)
    path = env.get("PATH", "")
    if not (checkout / "ports" / "esp32" / "Makefile").exists():
        raise SetupError(f"{checkout} is not a MicroPython checkout (no ports/esp32/Makefile): pass --micropython "
                         f"PATH of a clone of https://github.com/micropython/micropython")
    if shutil.which("make", path=path) is None:
        raise SetupError("no `make` on PATH: MicroPython's ESP32 build runs through make. Install it (Debian/Ubuntu: "
                         "sudo apt install build-essential; macOS: xcode-select --install); on Windows build in WSL2")
    if shutil.which("idf.py", path=path) is None:
        windows = os.name == "nt"
        if env.get("IDF_PATH"):
            export = f"{env['IDF_PATH']}\\export.bat" if windows else f". {env['IDF_PATH']}/export.sh"
            raise SetupError(f"IDF_PATH is set ({env['IDF_PATH']}) but idf.py is not on PATH: ESP-IDF is not exported "
                             f"in this shell. Run `{export}`, then build-image again")
        readme = checkout / "ports" / "esp32" / "README.md"
        idf = idf_version(readme)
        raise SetupError(
            "ESP-IDF is not set up in this shell (no idf.py on PATH, IDF_PATH not set); MicroPython's ESP32 build "
            f"needs it. Once, install the ESP-IDF version that {readme} names"
            + (f" ({idf}):" if idf else ", e.g.:") + "\n"
            f"  git clone -b {idf or 'v5.2.2'} --recursive https://github.com/espressif/esp-idf.git ~/esp-idf\n"
            + ("  ~/esp-idf/install.bat esp32,esp32s3\n" if windows else "  ~/esp-idf/install.sh esp32,esp32s3\n")
            + "then in every new shell: "
            + ("`~/esp-idf/export.bat` (or open the ESP-IDF shell)" if windows else "`. ~/esp-idf/export.sh`")
            + f", and run build-image again (board {board})")


def idf_version(readme: Path) -> str | None:
    """The ESP-IDF tag the checkout's ports/esp32/README.md tells to clone ("v5.2.2"), or None."""
    try:
        text = readme.read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"-b\s+(v\d+\.\d+(?:\.\d+)?)\s+--recursive\s+https://github.com/espressif/esp-idf", text)
    return m.group(1) if m else None


# ---------------------------------------------------------------------------- the build
def make_command(checkout: Path, mp_board: str, manifest: Path = MANIFEST, target: str | None = None) -> list[str]:
    cmd = ["make", "-C", str((checkout / "ports" / "esp32").resolve()), f"BOARD={mp_board}"]
    if target:
        return [*cmd, target]
    return [*cmd, f"FROZEN_MANIFEST={manifest.resolve()}"]


def build_dir(checkout: Path, mp_board: str) -> Path:
    return checkout / "ports" / "esp32" / f"build-{mp_board}"  # the port Makefile's BUILD ?= build-$(BOARD)


def built_frozen_paths(build: Path) -> list[str] | None:
    """What the build froze: mp_frozen_names of frozen_content.c (None when it is not there)."""
    try:
        text = (build / "frozen_content.c").read_text(errors="replace")
    except OSError:
        return None
    m = re.search(r"mp_frozen_names\[\]\s*=\s*\{(.*?)\};", text, re.S)
    return re.findall(r'"([^"\\]+)\\0"', m.group(1)) if m else None


@dataclass
class Image:
    bin: Path
    meta: Path
    info: dict


def build_image(checkout: Path, board: str, chip: str, out: Path, *, say: Callable[[str], None] = print,
                manifest: Path = MANIFEST, firmware: Path = FIRMWARE) -> Image:
    checkout = checkout.expanduser().resolve()
    mp_board = MICROPYTHON_BOARDS[chip]
    mp_version = micropython_version(checkout)
    check_tools(checkout, board)
    ours = manifest_files(manifest)
    left_out = unfrozen_firmware([p for p, _src in ours], firmware)
    if left_out:
        raise FlashError(f"{manifest} leaves out {', '.join(left_out)}: on a board without PSRAM every firmware "
                         f"package must be frozen; add it to the manifest")
    fw = firmware_version(firmware)
    if not (checkout / "lib" / "micropython-lib" / "README.md").exists():
        cmd = make_command(checkout, mp_board, target="submodules")
        say(f"fetching MicroPython's submodules (micropython-lib, once per checkout; needs git and internet): "
            f"{shlex.join(cmd)}")
        if subprocess.run(cmd).returncode != 0:
            raise FlashError(f"`{shlex.join(cmd)}` failed: check git and the internet connection, then run "
                             f"build-image again")
    cmd = make_command(checkout, mp_board, manifest)
    say(f"building MicroPython v{mp_version} for {mp_board} with the firmware frozen in (a few minutes the first "
        f"time): {shlex.join(cmd)}")
    started = time.time()
    if subprocess.run(cmd).returncode != 0:
        raise FlashError(f"MicroPython's build failed (see its output above). Command: {shlex.join(cmd)}")
    build = build_dir(checkout, mp_board)
    firmware_bin = build / "firmware.bin"
    if not firmware_bin.exists() or firmware_bin.stat().st_mtime < started - 2:
        raise FlashError(f"the build finished but left no new {firmware_bin}: is {checkout} a MicroPython "
                         f"v1.22+ checkout whose ports/esp32 Makefile builds into build-$(BOARD)?")
    data = firmware_bin.read_bytes()
    if image_chip(data) != chip:
        raise FlashError(f"{firmware_bin} is built for {image_chip(data)}, not {chip}: delete {build} and build again")
    frozen_paths = [p for p, _src in ours]
    built = built_frozen_paths(build)
    if built is None:
        say(f"[yellow]{build}/frozen_content.c not found: cannot check which modules the image froze[/]")
    else:
        absent = sorted(set(frozen_paths) - set(built))
        if absent:
            raise FlashError(f"the image lacks {len(absent)} modules the manifest freezes ({', '.join(absent[:5])}"
                             f"{', ...' if len(absent) > 5 else ''}): delete {build} and build again")
    name = f"evc-{fw}-{mp_board}"
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{name}.bin"
    tmp = target.with_suffix(".bin.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    info = {
        "board": board,
        "chip": chip,
        "micropython_board": mp_board,
        "micropython_version": mp_version,
        "micropython_commit": git_commit(checkout),
        "firmware_version": fw,
        "firmware_commit": git_commit(REPO),
        "image": target.name,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "flash_offset": f"{FLASH_OFFSET[chip]:#x}",
        "frozen_modules": sorted(module_name(p) for p in frozen_paths),
        "other_frozen_modules": (sorted(module_name(p) for p in set(built) - set(frozen_paths))
                                 if built is not None else None),
        "built_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    meta = out / f"{name}.json"
    meta.write_text(json.dumps(info, indent=1) + "\n")
    return Image(target, meta, info)


def read_meta(image_path: Path) -> dict | None:
    """The JSON build-image wrote next to an image, or None (e.g. a micropython.org download)."""
    try:
        data = json.loads(image_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("image") == image_path.name else None
