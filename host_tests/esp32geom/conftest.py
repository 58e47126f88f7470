"""The ESP32-geometry interpreter for this folder's tests (marker `esp32geom`): built once per run
(about a minute the first time, a second after; the `esp32geom` fixture is in host_tests/conftest.py),
skipped with the reason when it cannot be built."""
from __future__ import annotations

import pytest



def pytest_collection_modifyitems(config, items):
    for item in items:
        if "host_tests/esp32geom/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.esp32geom)

