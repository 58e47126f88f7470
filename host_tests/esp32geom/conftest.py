"""The ESP32-geometry interpreter for this folder's tests (marker `esp32geom`): built once per run
(about a minute the first time, a second after), skipped with the reason when it cannot be built."""
from __future__ import annotations

import pytest

from sim import esp32geom as geom


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "host_tests/esp32geom/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.esp32geom)


@pytest.fixture(scope="session")
def esp32geom():
    why = geom.unavailable()
    if why:
        pytest.skip(f"esp32geom: {why}")
    return geom.build()
