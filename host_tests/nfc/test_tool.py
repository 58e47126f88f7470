"""tools/nfc.py: one card, as JSON, through the firmware driver."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

from host_tests.nfc.scenario import SECRET_HEX, UID4, UID7, UID10, token

TOOL = Path(__file__).resolve().parents[2] / "tools" / "nfc.py"


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)


def test_pn532_token_and_uid(pn532):
    pn532.present(UID7)
    out = _tool("--port", pn532.url, "--secret", SECRET_HEX, "--timeout", "5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"token": token(UID7), "uid_len": 7}
    out = _tool("--port", pn532.url, "--secret", SECRET_HEX, "--show-uid", "--timeout", "5")
    assert json.loads(out.stdout) == {"token": token(UID7), "uid_len": 7, "uid": UID7.hex()}


def test_pn532_over_pty_waits_for_the_card(pn532):
    path = pn532.serve_pty()
    timer = threading.Timer(1.0, pn532.present, args=(UID10,))
    timer.start()
    try:
        out = _tool("--port", path, "--timeout", "10")
    finally:
        timer.cancel()
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"token": None, "uid_len": 10}


def test_mfrc522(mfrc522):
    mfrc522.present(UID4)
    out = _tool("--port", mfrc522.url, "--reader", "mfrc522", "--secret", SECRET_HEX, "--timeout", "5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"token": token(UID4), "uid_len": 4}


def test_pn532_on_i2c_and_spi_through_the_bus_bridges(pn532_packet):
    pn532_packet.present(UID4)
    out = _tool("--port", pn532_packet.url, "--bus", pn532_packet.bus, "--secret", SECRET_HEX, "--timeout", "5")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"token": token(UID4), "uid_len": 4}


def test_timeout_without_card(pn532):
    out = _tool("--port", pn532.url, "--timeout", "0.5")
    assert out.returncode == 1
    assert "no card within 500 ms" in out.stderr and out.stdout == ""


def test_dead_reader_is_named(free_port):
    out = _tool("--port", f"tcp://127.0.0.1:{free_port}", "--timeout", "0.5")
    assert out.returncode == 1 and "no working reader" in out.stderr


def test_bad_secret_is_refused_before_starting():
    out = _tool("--port", "tcp://127.0.0.1:1", "--secret", "abcd")
    assert out.returncode == 2 and "at least 16 bytes" in out.stderr
