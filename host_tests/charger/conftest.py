"""Fixtures for charger tests: `charger(...)` builds a Charger rig (sim/charger.py) per test; the
terminal summary reports the longest event loop stall each device measured (status lag_max)."""
from __future__ import annotations

import pytest

from sim import charger as rig


@pytest.fixture
def charger(tmp_path, request):
    """charger(config=..., speed=..., plug_pin=..., power_w=...) -> an entered rig.Charger (not booted)."""
    made: list[rig.Charger] = []

    def make(**kw) -> rig.Charger:
        c = rig.Charger(tmp_path / f"dev{len(made)}", request.node.name, **kw).__enter__()
        made.append(c)
        return c

    yield make
    for c in made:
        c.__exit__(None, None, None)


def pytest_terminal_summary(terminalreporter):
    if not rig.STALLS:
        return
    tr = terminalreporter
    tr.section("charger: longest event loop stall (status lag_max, real ms)")
    for name, ms in sorted(rig.STALLS.items(), key=lambda kv: -kv[1]):
        tr.write_line(f"{ms:6d} ms  {name}")
    tr.write_line(f"max over {len(rig.STALLS)} scenarios: {max(rig.STALLS.values())} ms")
