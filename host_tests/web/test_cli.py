"""`python -m backend web` serves the dashboard (a real process, a real HTTP client)."""
from __future__ import annotations

import subprocess
import sys
import time

import requests

from host_tests.backend.conftest import REPO


def test_web_command_serves_the_dashboard(tmp_path, free_port):
    db = str(tmp_path / "b.db")
    add = subprocess.run([sys.executable, "-m", "backend", "user", "add", "ops", "--role", "admin", "--db", db],
                         cwd=REPO, input="a long password\n", capture_output=True, text=True, timeout=120)
    assert add.returncode == 0 and "operator ops added (admin)" in add.stdout, add.stderr[-500:]
    proc = subprocess.Popen([sys.executable, "-m", "backend", "web", "--db", db, "--port", str(free_port)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{free_port}"
    try:
        deadline, r = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"{base}/login", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert r is not None and r.status_code == 200 and 'id="login"' in r.text
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        r = requests.get(f"{base}/sessions", allow_redirects=False, timeout=5)
        assert r.status_code == 303 and r.headers["location"] == "/login"
    finally:
        proc.terminate()
        proc.wait(30)
    bad = subprocess.run([sys.executable, "-m", "backend", "web", "--db", db, "--port", "0"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--port must be 1..65535" in bad.stderr
