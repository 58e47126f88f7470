"""A real MQTT broker for tests and the simulator: mosquitto when installed, else amqtt.

Listens on 127.0.0.1 on a free port; stopped (by its own process id) when the test ends.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary() -> str | None:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    return None


def default_kind() -> str:
    """The broker tests use: $EVC_TEST_BROKER, else mosquitto when installed, else amqtt."""
    return os.environ.get("EVC_TEST_BROKER") or ("mosquitto" if mosquitto_binary() else "amqtt")


def shares_subscriptions(kind: str | None = None) -> bool:
    """MQTT shared subscriptions ($share/GROUP/...): mosquitto 2 routes them; amqtt does not."""
    return (kind or default_kind()) == "mosquitto"


class Broker:
    def __init__(self, port: int | None = None, prefer: str | None = None, conf: str | None = None):
        """conf: a whole mosquitto.conf instead of the open test broker's (listeners, TLS, password_file,
        acl_file: e.g. the one `python -m backend broker files` writes); port is then the listener in it
        that start() waits for. mosquitto only."""
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.kind = "mosquitto" if conf is not None else prefer or default_kind()
        self.conf = conf
        self.proc: subprocess.Popen | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="evc-broker-")

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        d = Path(self._dir.name)
        if self.conf is not None:
            if not mosquitto_binary():
                raise RuntimeError("a broker with its own mosquitto.conf needs mosquitto")
            conf = d / "mosquitto.conf"
            # run-time lines first; as root, stay root: mosquitto would read the password and ACL files
            # (mode 600, ours) as user mosquitto
            run = f"persistence false\nlog_dest file {d / 'mosquitto.log'}\n"
            conf.write_text(run + ("user root\n" if getattr(os, "geteuid", lambda: -1)() == 0 else "") + self.conf)
            return [mosquitto_binary(), "-c", str(conf)]
        if self.kind == "mosquitto":
            conf = d / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "max_queued_messages 100000\nmax_inflight_messages 100\nset_tcp_nodelay true\n"
                "log_dest none\n"
            )
            return [mosquitto_binary() or "mosquitto", "-c", str(conf)]
        conf = d / "amqtt.yaml"
        conf.write_text(
            "listeners:\n  default:\n    type: tcp\n"
            f"    bind: 127.0.0.1:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
            "  amqtt.plugins.sys.broker.BrokerSysPlugin:\n    sys_interval: 0\n"
        )
        exe = Path(sys.executable).with_name("amqtt")
        return [str(exe if exe.exists() else "amqtt"), "-c", str(conf)]

    def start(self, timeout: float = 15) -> "Broker":
        self.proc = subprocess.Popen(self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.proc.stderr.read().decode()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout} s")

    def log(self) -> str:
        """mosquitto's log when it runs with conf (denied publishes, refused logins)."""
        try:
            return (Path(self._dir.name) / "mosquitto.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self._dir.cleanup()
