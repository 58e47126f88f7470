"""Display tests: the firmware's display code under MicroPython, its drivers on the I2C bridge
(boards/host/i2c_bridge.py) to the emulators in sim/ (sim/bus_bridge.py serves them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sim import mpy
from sim.display import RIG_DIR as MP
from sim.display import TARIFF
from sim.bus_bridge import serve_i2c

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"


def run_mp(code: str, **kw):
    return mpy.run(code, extra_path=[MP], **kw)


@pytest.fixture
def serve():
    """serve(chip) -> the tcp:// URL its I2C is served on (closed after the test)."""
    servers = []

    def start(chip) -> str:
        srv = serve_i2c(chip)
        servers.append(srv)
        return srv.url

    yield start
    for srv in servers:
        srv.close()


def every_screen(kind: str, url: str, tariff: dict = TARIFF) -> dict[str, dict]:
    code = f"""
import json
from i2c_bridge import I2cBridge
import display_rig
display_rig.every_screen({kind!r}, I2cBridge({url!r}), json.loads({json.dumps(json.dumps(tariff))}))
"""
    return {r["screen"]: r for r in run_mp(code).results}
