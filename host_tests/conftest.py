from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # repo root: tools/, backend/, evc/

from sim import mpy as _mpy  # noqa: E402


def pytest_addoption(parser):
    parser.addoption(
        "--exhaustive",
        action="store_true",
        default=False,
        help="run the full sweeps (every power-cut point, every property example); the default run takes a sample",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "exhaustive: long sweep, only with --exhaustive")
    config.addinivalue_line("markers", "esp32geom: runs on the 32-bit ESP32-geometry interpreter (needs gcc -m32 "
                            "and ../shared/esp32geom; skips with the reason otherwise)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--exhaustive"):
        return
    skip = pytest.mark.skip(reason="exhaustive sweep: run with --exhaustive")
    for item in items:
        if "exhaustive" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Skips grouped by reason, also written to .pytest-skips.txt for .ci/run to print: every skip
    must be a known, named condition (no PostgreSQL, no gcc -m32, an exhaustive sweep)."""
    reasons: dict[str, int] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        reason = reason.removeprefix("Skipped: ").split("\n")[0][:160]
        reasons[reason] = reasons.get(reason, 0) + 1
    lines = [f"{n:5d}  {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])]
    total = sum(reasons.values())
    terminalreporter.write_sep("-", f"{total} skipped, by reason")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path(config.rootpath) / ".pytest-skips.txt"
    out.write_text(f"{total} tests skipped\n" + "".join(f"{line}\n" for line in lines))


@pytest.fixture(scope="session")
def exhaustive(request) -> bool:
    return bool(request.config.getoption("--exhaustive"))


@pytest.fixture(scope="session")
def esp32geom():
    """The 32-bit ESP32-geometry interpreter with the firmware frozen in, built on first use."""
    from sim import esp32geom as geom

    why = geom.unavailable()
    if why:
        pytest.skip(f"esp32geom: {why}")
    return geom.build()


@pytest.fixture(scope="session")
def mpy():
    """The MicroPython runner: mpy.run(code, heap=...), mpy.call("pkg.mod.func", *args)."""
    return _mpy


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker():
    """A real MQTT broker (mosquitto, else amqtt) on a free loopback port."""
    from sim.broker import Broker

    with Broker() as b:
        yield b
