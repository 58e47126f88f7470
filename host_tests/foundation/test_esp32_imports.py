"""Gate: the firmware uses only modules and module attributes the MicroPython ESP32 port has.

The MicroPython unix port that runs the host tests is no judge of that: it has os.system,
termios, ffi and a socket module on the OS's resolver, and lacks machine, network and esp32.
So this gate reads the firmware (firmware/ and the ESP32 board layer boards/esp32/; not
boards/host/, the unix port's board) with CPython's ast and checks every `import X`,
`from X import a` and `X.attr` against host_tests/data/esp32_port.json: the ESP32 port's
modules and attributes as the MicroPython documentation gives them for one release, plus
what the ESP32_GENERIC image freezes. Nothing here needs MicroPython.

Imports inside `try: ... except ImportError:` (both the attempt and the fallback) are the
firmware's shims: when the module is not on the list they are reported as optional, not as
failures. An attribute of a module that IS on the list is always checked.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
ESP32_BOARD = REPO / "boards" / "esp32"
PORT_FILE = REPO / "host_tests" / "data" / "esp32_port.json"

# manifest.py is the freezing recipe, run by the build on a PC, not code that runs on the board.
BUILD_ONLY = {ESP32_BOARD / "manifest.py"}
DEVICE_FILES = sorted(FIRMWARE.rglob("*.py")) + sorted(p for p in ESP32_BOARD.glob("*.py") if p not in BUILD_ONLY)

# The repository's own modules: the packages and modules of firmware/ and the ESP32 board layer.
PROJECT = (
    {p.name for p in FIRMWARE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    | {p.stem for p in FIRMWARE.glob("*.py")}
    | {p.stem for p in ESP32_BOARD.glob("*.py") if p not in BUILD_ONLY}
)

# Known ESP32 incompatibilities in today's firmware, each tracked as an issue: (file, name) -> issue.
# The gate passes with these and fails on any new one; an entry that no longer matches fails too,
# so fixing the code means deleting its line here.
KNOWN = {}


@dataclass(frozen=True)
class Use:
    path: str  # repository-relative, or the label given to check_source
    line: int
    name: str  # "termios", "os.system", "umqtt.simple.MQTTClient", "machine.Pin.IN"
    optional: bool = False  # under try/except ImportError, and the module is not on the list

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name}"


class Port:
    """The ESP32 port's modules and attributes, from host_tests/data/esp32_port.json."""

    def __init__(self, data: dict):
        self.data = data
        self.modules = {name: set(entry["attributes"]) for name, entry in data["modules"].items()}
        self.classes = {name: set(entry["attributes"]) for name, entry in data.get("classes", {}).items()}
        self.hints = data.get("not_on_esp32", {})

    def is_module(self, name: str) -> bool:
        return name in self.modules

    def is_package_prefix(self, name: str) -> bool:
        """`umqtt` in `import umqtt.simple`: no module of its own, a prefix of listed ones."""
        return any(m.startswith(name + ".") for m in self.modules)

    def hint(self, name: str) -> str:
        for key in (name, name.split(".")[0]):
            if key in self.hints:
                return self.hints[key]
        return ""


def load_port() -> Port:
    return Port(json.loads(PORT_FILE.read_text()))


# ------------------------------------------------------------------------------------ the checker
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_TRY = (ast.Try, ast.TryStar) if hasattr(ast, "TryStar") else (ast.Try,)


def _catches_import_error(handlers: list[ast.ExceptHandler]) -> bool:
    def names(node):
        if isinstance(node, ast.Tuple):
            return [n for elt in node.elts for n in names(elt)]
        if isinstance(node, ast.Name):
            return [node.id]
        if isinstance(node, ast.Attribute):
            return [node.attr]
        return []

    return any(h.type is not None and {"ImportError", "ModuleNotFoundError"} & set(names(h.type)) for h in handlers)


def _children(node: ast.AST, guarded: bool):
    """Direct children of node, each with whether it runs under try/except ImportError."""
    if isinstance(node, _TRY):
        inner = guarded or _catches_import_error(node.handlers)
        for child in node.body + node.handlers:  # the attempt and its fallback
            yield child, inner
        for child in node.orelse + node.finalbody:
            yield child, guarded
    elif isinstance(node, _SCOPES):
        # Decorators and default values are evaluated in the enclosing scope; the body is not.
        outer = list(getattr(node, "decorator_list", []))
        args = getattr(node, "args", None)
        if args is not None:
            outer += [d for d in args.defaults + args.kw_defaults if d is not None]
        for child in outer:
            yield child, guarded
    else:
        for child in ast.iter_child_nodes(node):
            yield child, guarded


def _scope_nodes(scope: ast.AST, guarded: bool):
    """Every node that belongs to scope (nested scopes are yielded, not entered)."""
    body = scope.body if isinstance(scope, _SCOPES) else None
    if isinstance(scope, ast.Lambda):
        stack = [(scope.body, guarded)]
    elif body is not None:
        stack = [(child, guarded) for child in body]
    else:
        stack = list(_children(scope, guarded))
    while stack:
        node, opt = stack.pop()
        yield node, opt
        stack.extend(_children(node, opt))


def _chain(node: ast.Attribute) -> tuple[str, list[str]] | None:
    """`a.b.c` -> ("a", ["b", "c"]); None when the chain does not start at a plain name."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return node.id, attrs[::-1]


class _Checker:
    def __init__(self, port: Port, label: str, project: set[str]):
        self.port = port
        self.label = label
        self.project = project
        self.failures: list[Use] = []
        self.optional: list[Use] = []

    def _report(self, line: int, name: str, ok: bool, guarded: bool) -> None:
        if ok:
            return
        if guarded:
            self.optional.append(Use(self.label, line, name, optional=True))
        else:
            self.failures.append(Use(self.label, line, name))

    def _check_module(self, name: str, line: int, guarded: bool) -> None:
        self._report(line, name, self.port.is_module(name), guarded)

    def _check_attr(self, container: str, attr: str) -> bool | None:
        """True/False when container is a module/class on the list; None when it is not checkable."""
        port = self.port
        if port.is_module(container):
            return attr in port.modules[container] or port.is_module(f"{container}.{attr}")
        if container in port.classes:
            return attr in port.classes[container]
        if port.is_package_prefix(container):
            return port.is_module(f"{container}.{attr}") or port.is_package_prefix(f"{container}.{attr}")
        return None

    def run(self, tree: ast.Module) -> None:
        self._scope(tree, [], False)

    def _scope(self, scope: ast.AST, enclosing: list[dict], guarded: bool) -> None:
        nodes = list(_scope_nodes(scope, guarded))
        # name -> [(qualified name, guarded)], or None when the name is not a module here
        local: dict[str, list[tuple[str, bool]] | None] = {}

        def bind(name: str, target: str | None, opt: bool) -> None:
            if target is None:
                local.setdefault(name, None)
            elif local.get(name) is None:
                local[name] = [(target, opt)]
            else:
                local[name].append((target, opt))

        for node, opt in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in self.project:
                        bind(alias.asname or top, None, opt)
                        continue
                    self._check_module(alias.name, node.lineno, opt)
                    if alias.asname:
                        bind(alias.asname, alias.name, opt)
                    else:
                        bind(top, top, opt)
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level or module.split(".")[0] in self.project:
                    for alias in node.names:
                        bind(alias.asname or alias.name, None, opt)
                    continue
                if not self.port.is_module(module) and not self.port.is_package_prefix(module):
                    self._check_module(module, node.lineno, opt)
                    for alias in node.names:
                        bind(alias.asname or alias.name, None, opt)
                    continue
                for alias in node.names:
                    ok = alias.name != "*" and bool(self._check_attr(module, alias.name))
                    self._report(node.lineno, f"{module}.{alias.name}", ok, opt and not self.port.is_module(module))
                    bind(alias.asname or alias.name, f"{module}.{alias.name}", opt)

        # Names this scope binds otherwise (arguments, assignments) hide an outer module name.
        if isinstance(scope, _FUNCTIONS):
            args = scope.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None and arg.arg not in local:
                    local[arg.arg] = None
        for node, _ in nodes:
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in local:
                local[node.id] = None
            elif isinstance(node, _SCOPES) and not isinstance(node, ast.Lambda) and node.name not in local:
                local[node.name] = None

        maps = enclosing + [local]

        def lookup(name: str):
            for names in reversed(maps):
                if name in names:
                    return names[name]
            return None

        for node, opt in nodes:
            if isinstance(node, ast.Attribute):
                chain = _chain(node)
                if chain is None:
                    continue
                base, attrs = chain
                bound = lookup(base)
                if not bound:
                    continue
                self._attribute(node.lineno, bound, attrs)

        # Nested scopes see this scope's names, except that a class body is invisible to its methods.
        inner = enclosing if isinstance(scope, ast.ClassDef) else maps
        for node, opt in nodes:
            if isinstance(node, _SCOPES):
                self._scope(node, inner, opt)

    def _attribute(self, line: int, bound: list[tuple[str, bool]], attrs: list[str]) -> None:
        """Check the last link of base.a.b...: the container is whatever base and the others name."""
        verdicts = []
        for target, opt in bound:
            container = ".".join([target] + attrs[:-1])
            verdicts.append((container, self._check_attr(container, attrs[-1]), opt))
        checkable = [v for v in verdicts if v[1] is not None]
        if checkable:
            if not any(ok for _, ok, _ in checkable):
                container = checkable[0][0]
                self._report(line, f"{container}.{attrs[-1]}", False, False)
            return
        # Nothing to check against: either a deeper attribute of a listed module (a function's or an
        # unlisted class's attribute: not checked), or the module is not on the list, which its
        # import already reported; a use of an optional import's attribute is recorded with it.
        for (target, opt), (container, _, _) in zip(bound, verdicts):
            if opt and not self._known(target):
                self._report(line, f"{container}.{attrs[-1]}", False, True)
                return

    def _known(self, dotted: str) -> bool:
        parts = dotted.split(".")
        prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
        return any(self.port.is_module(p) or self.port.is_package_prefix(p) for p in prefixes)


def check_source(text: str, label: str, port: Port, project: set[str] = frozenset()) -> tuple[list[Use], list[Use]]:
    """(failures, optional uses) of one source file against the port."""
    checker = _Checker(port, label, set(project))
    checker.run(ast.parse(text))
    key = lambda u: (u.line, u.name)  # noqa: E731
    return sorted(set(checker.failures), key=key), sorted(set(checker.optional), key=key)


def check_firmware(port: Port) -> tuple[list[Use], list[Use]]:
    failures, optional = [], []
    for path in DEVICE_FILES:
        f, o = check_source(path.read_text(), str(path.relative_to(REPO)), port, PROJECT)
        failures += f
        optional += o
    return failures, optional


def _explain(port: Port, uses: list[Use]) -> str:
    lines = []
    for use in uses:
        hint = port.hint(use.name)
        lines.append(f"  {use}" + (f"  -- {hint}" if hint else ""))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def port() -> Port:
    return load_port()


def test_port_list_is_sourced(port):
    data = port.data
    assert data["port"] == "esp32" and data["micropython_version"].startswith("v1.2")
    for name, entry in data["modules"].items():
        assert entry["kind"] in ("builtin", "frozen"), name
        assert entry["source"].startswith("https://"), f"{name}: no source"
        assert len(set(entry["attributes"])) == len(entry["attributes"]), f"{name}: duplicate attributes"
    for name, entry in data["classes"].items():
        module, _, cls = name.rpartition(".")
        assert cls in port.modules[module], f"{name}: class not listed in its module"
        assert entry["source"].startswith("https://"), f"{name}: no source"
    for name in data["frozen"]["modules"]:
        assert name in port.modules or name in {"_boot", "flashbdev", "inisetup", "webrepl_setup"} \
            or name.startswith("asyncio."), f"frozen module {name} has no entry"
    # The unix port's extras must never creep into the list.
    for name in ("termios", "ffi"):
        assert name not in port.modules
    assert "system" not in port.modules["os"] and "getenv" not in port.modules["os"]


def test_firmware_uses_only_what_the_esp32_port_has(port):
    failures, optional = check_firmware(port)
    known = [u for u in failures if (u.path, u.name) in KNOWN]
    new = [u for u in failures if (u.path, u.name) not in KNOWN]
    stale = sorted(set(KNOWN) - {(u.path, u.name) for u in known})
    if optional:
        print("optional imports (shims under try/except ImportError), not on the ESP32 list:")
        print(_explain(port, optional))
    if known:
        print("known ESP32 incompatibilities (see KNOWN):")
        print(_explain(port, known))
    assert not new, (
        "firmware uses modules/attributes the MicroPython ESP32 port does not have "
        f"({PORT_FILE.relative_to(REPO)}, MicroPython {port.data['micropython_version']}):\n" + _explain(port, new)
    )
    assert not stale, f"KNOWN lists incompatibilities the firmware no longer has; delete them: {stale}"


def test_checker_reports_unix_port_only_code(port):
    bad = (
        "import os\n"
        "import socket\n"
        "import termios\n"
        "os.system('reboot')\n"
        "addr = socket.getaddrinfo_posix('broker', 1883)\n"
    )
    failures, optional = check_source(bad, "bad.py", port)
    assert {u.name for u in failures} == {"termios", "os.system", "socket.getaddrinfo_posix"}
    assert {(u.line, u.name) for u in failures} >= {(3, "termios"), (4, "os.system"), (5, "socket.getaddrinfo_posix")}
    assert optional == []


def test_checker_resolves_aliases_from_imports_and_scopes(port):
    src = (
        "import time as t\n"
        "from micropython import const\n"
        "from time import clock\n"
        "from umqtt.simple import MQTTClient\n"
        "import umqtt.simple\n"
        "import machine\n"
        "import os\n"
        "X = const(1)\n"
        "t.sleep_ms(1)\n"
        "t.clock()\n"
        "umqtt.simple.MQTTClient\n"
        "umqtt.simple.Nope\n"
        "machine.Pin(2, machine.Pin.OUT)\n"
        "machine.Pin.ALT\n"
        "def f(os):\n"
        "    return os.system('x')  # a parameter, not the module\n"
        "def g():\n"
        "    import select\n"
        "    return select.epoll\n"
    )
    failures, _ = check_source(src, "alias.py", port)
    assert {(u.line, u.name) for u in failures} == {
        (3, "time.clock"),
        (10, "time.clock"),
        (12, "umqtt.simple.Nope"),
        (14, "machine.Pin.ALT"),
        (19, "select.epoll"),
    }


def test_checker_treats_import_error_shims_as_optional(port):
    src = (
        "try:\n"
        "    import asyncio\n"
        "except ImportError:\n"
        "    import uasyncio as asyncio\n"
        "try:\n"
        "    import ffi\n"
        "except ImportError:\n"
        "    ffi = None\n"
        "asyncio.sleep_ms(1)\n"
        "asyncio.no_such_thing\n"  # asyncio IS on the list: its attributes are checked
        "try:\n"
        "    import termios\n"
        "except OSError:\n"  # does not catch ImportError: not a shim
        "    pass\n"
    )
    failures, optional = check_source(src, "shim.py", port)
    assert {(u.line, u.name) for u in failures} == {(10, "asyncio.no_such_thing"), (12, "termios")}
    assert {(u.line, u.name) for u in optional} == {(4, "uasyncio"), (6, "ffi")}
