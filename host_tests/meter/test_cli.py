"""tools/meter.py: one JSON reading through the firmware driver, for technicians and tests."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host_tests.meter import oracle
from sim.meter_peer import MeterPeer

TOOL = Path(__file__).resolve().parents[2] / "tools" / "meter.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("transport", ["tcp", "pty"])
def test_cli_prints_one_reading(transport):
    with MeterPeer(transport, unit=3, parity="E") as peer:
        peer.set((4, 0x0048, "f32"), oracle.f32_bits(1234.5625))
        peer.set((4, 0x0034, "f32"), oracle.f32_bits(11000.0))
        peer.set((3, 0xFC00, "u32"), 42)
        proc = _run("--port", peer.url, "--model", "sdm630", "--unit", "3", "--parity", "E")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"energy_wh": 1234563, "power_w": 11000, "serial": "42", "model": "sdm630"}


def test_cli_reports_a_silent_meter():
    with MeterPeer("tcp") as peer:
        proc = _run("--port", peer.url, "--model", "sdm630", "--unit", "9", "--timeout-ms", "50", "--retries", "0")
    assert proc.returncode == 1
    assert proc.stdout == "" and "Timeout" in proc.stderr


def test_cli_refuses_an_unknown_model():
    proc = _run("--port", "tcp://127.0.0.1:9", "--model", "nope")
    assert proc.returncode == 1 and "unknown meter model" in proc.stderr
