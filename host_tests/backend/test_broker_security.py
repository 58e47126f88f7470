"""Broker security as the backend sets it up (`python -m backend broker creds|files`): a real mosquitto
runs the generated mosquitto.conf, password files and ACLs (chargers on a TLS listener with a CA made
here, the backend on its own listener). A charger logged in as A cannot publish as B (records, status,
acks: the backend never sees them), cannot read B's downlink, cannot take B's session over; its own
traffic, the backend's and the firmware's uplink go through; anonymous clients are refused."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from backend import broker as broker_auth
from backend.__main__ import main as backend_main
from backend.mqtt import parse_broker, publish_all
from host_tests.backend.conftest import TOKENS, wait_until
from host_tests.backend.test_mqtt import anomaly_kinds, stored
from host_tests.uplink.test_tls import _ca, _pem, _server
from sim.backend import register
from sim.backend_peer import BackendPeer
from sim.broker import Broker, free_port, mosquitto_binary
from sim.records import ChargerLink, make_device
from sim.uplink import DeviceRun, uplink_cfg

A, B, FW = "evc-a1", "evc-b1", "dev1"  # the conftest's charger, a second one, the uplink rig's device id


def _cli(*args: str) -> None:
    assert backend_main(list(args)) == 0, args


@dataclass
class Secured:
    broker: Broker
    device_port: int
    backend_port: int
    ca: Path
    keys: Path
    files: Path
    creds: dict[str, Path]
    passwords: dict[str, str] = field(default_factory=dict)

    def device_url(self, dev: str, password: str | None = None) -> str:
        return f"mqtts://{dev}:{password or self.passwords[dev]}@127.0.0.1:{self.device_port}?ca={self.ca}"

    @property
    def backend_url(self) -> str:
        return f"mqtt://evc-backend:{self.passwords['evc-backend']}@127.0.0.1:{self.backend_port}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    if not mosquitto_binary():
        pytest.skip("mosquitto is not installed: the broker ACL and password tests need it (amqtt has neither format)")
    d = tmp_path_factory.mktemp("secured")
    ca_key, ca_cert = _ca("evc test CA")
    key, cert = _server(ca_key, ca_cert)
    ca, certfile, keyfile = _pem(d / "ca.pem", ca_cert), _pem(d / "server.pem", cert), _pem(d / "server.key", key)
    keys, files = d / "backend-keys", d / "broker"
    creds = {}
    for dev in (A, B, FW):
        creds[dev] = d / f"{dev}.creds.json"
        _cli("broker", "creds", "--dev", dev, "--out", str(creds[dev]), "--keys", str(keys))
    creds["evc-backend"] = d / "backend.creds.json"
    _cli("broker", "creds", "--backend", "--out", str(creds["evc-backend"]), "--keys", str(keys))
    device_port, backend_port = free_port(), free_port()
    _cli("broker", "files", "--out", str(files), "--keys", str(keys), "--listen", f"127.0.0.1:{device_port}",
         "--backend-listen", f"127.0.0.1:{backend_port}", "--certfile", certfile, "--keyfile", keyfile, "--cafile", ca)
    b = Broker(port=device_port, conf=(files / "mosquitto.conf").read_text())
    s = Secured(b, device_port, backend_port, Path(ca), keys, files, creds)
    s.passwords = {user: json.loads(path.read_text())["password"] for user, path in creds.items()}
    with b:
        yield s


@pytest.fixture(scope="module")
def other(device_dir):
    """A second charger's records, signed by its own key (the firmware's record builder)."""
    return make_device(device_dir, B, 2, TOKENS)


class Peer:
    """A paho client that records its CONNACK, messages and disconnects."""

    def __init__(self, url: str, client_id: str | None = None, connect: bool = True):
        b = parse_broker(url)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv311)
        if b.user:
            self.client.username_pw_set(b.user, b.password)
        if b.tls:
            self.client.tls_set(ca_certs=b.ca)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.connack: str | None = None
        self.connected = threading.Event()
        self.answered = threading.Event()
        self.disconnects = 0
        self.got: list[tuple[str, str, bool]] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, m: self.got.append((m.topic, m.payload.decode(), bool(m.retain)))
        self.host, self.port = b.host, b.port
        if connect:
            self.start()

    def _on_connect(self, _c, _u, _f, reason, _p) -> None:
        self.connack = str(reason)
        self.answered.set()
        if not reason.is_failure:
            self.connected.set()

    def _on_disconnect(self, *_a) -> None:
        if self.connected.is_set():
            self.disconnects += 1

    def start(self, timeout: float = 10) -> "Peer":
        try:
            self.client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            self.connack = f"{type(exc).__name__}: {exc}"
            self.answered.set()
            return self
        self.client.loop_start()
        self.answered.wait(timeout)
        if not self.connected.is_set():
            self.client.loop_stop()
        return self

    def subscribe(self, *topics: str) -> None:
        assert self.connected.is_set(), self.connack
        infos = [self.client.subscribe(t, qos=1) for t in topics]
        assert all(rc == paho.MQTT_ERR_SUCCESS for rc, _mid in infos)
        time.sleep(0.3)  # SUBACKs before the first publish

    def publish(self, topic: str, payload: str, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def topics(self) -> set[str]:
        return {t for t, _p, _r in self.got}

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------- the files
def test_files_are_in_mosquittos_formats_and_private(secured):
    lines = (secured.files / "passwd").read_text().splitlines()
    users = dict(line.split(":", 1) for line in lines)
    assert sorted(users) == sorted([A, B, FW])
    for dev, hashed in users.items():
        kind, iterations, salt, dk = hashed.split("$")[1:]
        assert (kind, iterations) == ("7", "101") and len(salt) == 16 and len(dk) == 88  # 12-byte salt, 64-byte hash
        assert broker_auth.check_password(hashed, secured.passwords[dev])
        assert not broker_auth.check_password(hashed, secured.passwords[dev] + "x")
    assert (secured.files / "passwd.backend").read_text().startswith("evc-backend:$7$101$")
    acl = (secured.files / "acl").read_text()
    assert f"user {A}\ntopic write evc/{A}/rec\ntopic write evc/{A}/status\ntopic write evc/{A}/evt\n" \
           f"topic write evc/{A}/auth/req\ntopic read evc/{A}/ack\ntopic read evc/{A}/auth/res\n" \
           f"topic read evc/{A}/tariff\ntopic read evc/{A}/authlist\ntopic read evc/{A}/cmd\n" in acl
    assert "+" not in acl and "#" not in "".join(line for line in acl.splitlines() if not line.startswith("#"))
    conf = (secured.files / "mosquitto.conf").read_text()
    for line in ("per_listener_settings true", "allow_anonymous false", "use_username_as_clientid true",
                 f"password_file {secured.files.resolve()}/passwd", f"acl_file {secured.files.resolve()}/acl",
                 f"cafile {secured.ca}", "tls_version tlsv1.2"):
        assert line in conf.splitlines(), line
    assert "allow_anonymous true" not in conf
    # password files and credentials: owner only; the key folder too
    for path in (secured.files / "passwd", secured.files / "passwd.backend", *secured.creds.values(),
                 secured.keys / broker_auth.DEVICE_FILE, secured.keys / broker_auth.BACKEND_FILE):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert secured.keys.stat().st_mode & 0o777 == 0o700
    # no password in clear anywhere in the key folder or the broker files
    for folder in (secured.keys, secured.files):
        for path in folder.iterdir():
            text = path.read_text()
            assert not any(pw in text for pw in secured.passwords.values()), path


def test_our_hash_and_mosquitto_passwd_agree(tmp_path):
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not os.access(tool, os.X_OK):
        pytest.skip("mosquitto_passwd is not installed (mosquitto itself checks our hashes in the tests below)")
    pw = tmp_path / "pw"
    subprocess.run([tool, "-b", "-c", str(pw), "alice", "s3cret pass"], check=True, capture_output=True)
    user, hashed = pw.read_text().strip().split(":", 1)
    assert user == "alice" and hashed.startswith("$7$101$")
    assert broker_auth.check_password(hashed, "s3cret pass") and not broker_auth.check_password(hashed, "s3cret")
    salt = __import__("base64").b64decode(hashed.split("$")[3])
    assert broker_auth.hash_password("s3cret pass", salt) == hashed  # byte for byte what mosquitto_passwd writes


# ---------------------------------------------------------------------------- the broker
def test_a_device_cannot_publish_as_another(secured, charger, other, backends, tmp_path):
    db = str(tmp_path / "backend.db")
    register(db, charger)
    register(db, other)
    backends(secured.backend_url, db)  # the real backend, logged in as the backend user
    observer = Peer(secured.backend_url)  # what the backend can see
    observer.subscribe("evc/+/rec", "evc/+/status", "evc/+/evt", "evc/+/auth/req")
    b = Peer(secured.device_url(B))
    b.subscribe(f"evc/{B}/ack", f"evc/{B}/cmd", f"evc/{B}/tariff")
    a = ChargerLink(secured.device_url(A), A, charger.records)  # over TLS with A's credentials
    try:
        a.send(range(1, 13))
        assert a.wait_acked(12), "A's own records are stored and acknowledged"
        forged = [(f"evc/{B}/rec", other.records[0]), (f"evc/{B}/rec", other.records[1]),
                  (f"evc/{B}/status", json.dumps({"online": True, "state": "forged"})),
                  (f"evc/{B}/evt", json.dumps({"evt": "forged"})),
                  (f"evc/{B}/auth/req", json.dumps({"id": "forged", "token": TOKENS[0]})),
                  (f"evc/{B}/ack", json.dumps({"seq": 2, "forged": True})),
                  (f"evc/{B}/cmd", "forged"), (f"evc/{B}/tariff", "forged"),
                  (f"evc/{A}/ack", json.dumps({"seq": 99})),  # not even its own ack
                  ("evc/other/rec", "forged"), ("elsewhere", "forged")]
        for topic, payload in forged:
            a.client.publish(topic, payload, qos=1, retain=topic.endswith("/status")).wait_for_publish(5)
        # The path to the backend is open: B's own record, sent after A's forgeries, arrives and is acked.
        b.publish(f"evc/{B}/rec", other.records[0])
        assert wait_until(lambda: any(t == f"evc/{B}/ack" for t, _p, _r in b.got), 20), b.got
        time.sleep(0.5)
        seen_b = [(t, p) for t, p, _r in observer.got if t.startswith(f"evc/{B}/")]
        assert seen_b == [(f"evc/{B}/rec", other.records[0])], seen_b  # B's own, once; none of A's
        assert len(b.got) == 1 and all(p not in (fp for _t, fp in forged) for _t, p, _r in b.got), b.got  # the backend's ack only
        assert max(a.acks) == 12 and 99 not in a.acks
        assert stored(db) == [(A, s) for s in range(1, 13)] + [(B, 1)]  # B's seq 2 (forged by A) never arrived
        assert anomaly_kinds(db) == []
        late = Peer(secured.backend_url)
        late.subscribe(f"evc/{B}/status")
        assert late.got == []  # A's retained status for B was dropped, not kept
        late.close()
    finally:
        a.close()
        b.close()
        observer.close()


def test_a_device_reads_only_its_own_downlink(secured):
    kinds = ("ack", "auth/res", "tariff", "authlist", "cmd")
    publish_all(secured.backend_url, [(f"evc/{d}/tariff", f"{d} tariff", True) for d in (A, B)])  # retained
    a = Peer(secured.device_url(A))
    a.subscribe("#", "evc/+/+", f"evc/{B}/#", f"evc/{B}/ack", f"evc/{B}/tariff", f"evc/{A}/#")
    b = Peer(secured.device_url(B))
    b.subscribe(f"evc/{B}/#")
    try:
        publish_all(secured.backend_url, [(f"evc/{d}/{k}", f"{d} {k}", False) for d in (A, B) for k in kinds
                                          if k != "tariff"])
        own = {f"evc/{A}/{k}" for k in kinds}
        assert wait_until(lambda: a.topics() >= own and b.topics() >= {f"evc/{B}/{k}" for k in kinds}, 20), (a.got, b.got)
        time.sleep(0.5)
        assert a.topics() == own, a.got  # nothing of B's, not even the retained tariff
        assert all(p.startswith(A) for _t, p, _r in a.got)
        assert b.topics() == {f"evc/{B}/{k}" for k in kinds}
    finally:
        a.close()
        b.close()


def test_anonymous_wrong_passwords_and_the_wrong_listener_are_refused(secured):
    backend_plain = f"mqtt://127.0.0.1:{secured.backend_port}"
    cases = {
        "anonymous on the chargers' listener": f"mqtts://127.0.0.1:{secured.device_port}?ca={secured.ca}",
        "anonymous on the backend's listener": backend_plain,
        "A with a wrong password": secured.device_url(A, "not-" + secured.passwords[A]),
        "A with B's password": secured.device_url(A, secured.passwords[B]),
        "an unknown user": f"mqtts://evc-zz:{secured.passwords[A]}@127.0.0.1:{secured.device_port}?ca={secured.ca}",
        "a charger on the backend's listener": f"mqtt://{A}:{secured.passwords[A]}@127.0.0.1:{secured.backend_port}",
        "the backend on the chargers' listener":
            f"mqtts://evc-backend:{secured.passwords['evc-backend']}@127.0.0.1:{secured.device_port}?ca={secured.ca}",
    }
    for what, url in cases.items():
        peer = Peer(url)
        try:
            assert not peer.connected.is_set() and peer.connack == "Not authorized", (what, peer.connack)
        finally:
            peer.close()
    plain = Peer(f"mqtt://{A}:{secured.passwords[A]}@127.0.0.1:{secured.device_port}", connect=False).start(3)
    assert not plain.connected.is_set(), "plain MQTT on the TLS listener"
    plain.close()


def test_a_device_cannot_take_over_anothers_session(secured):
    b = Peer(secured.device_url(B))
    b.subscribe(f"evc/{B}/ack")
    try:
        for cid in (f"evc-{B}", B):  # B's firmware client id, and B's user name
            a = Peer(secured.device_url(A), client_id=cid)
            assert a.connected.is_set(), a.connack
            time.sleep(0.5)
            a.close()
        assert b.disconnects == 0, "A's connection under B's client id kicked B off"
        publish_all(secured.backend_url, [(f"evc/{B}/ack", '{"seq": 5}', False)])
        assert wait_until(lambda: b.got, 10)
        # the check is sharp: a second login with B's own credentials does replace B's session
        again = Peer(secured.device_url(B), client_id="anything")
        assert wait_until(lambda: b.disconnects >= 1, 5)
        again.close()
    finally:
        b.close()


def test_the_firmware_uplink_logs_in_with_its_credentials_over_tls(secured):
    peer = BackendPeer("127.0.0.1", secured.backend_port)
    peer.client.username_pw_set("evc-backend", secured.passwords["evc-backend"])
    with peer:
        good = uplink_cfg(f"mqtts://localhost:{secured.device_port}", ca=str(secured.ca), user=FW,
                          password=secured.passwords[FW])
        res = DeviceRun({"records": 20, "deadline_ms": 20000, "uplink": good}).start().result()
        assert res["acked"] == 20 and peer.stored(FW) == list(range(1, 21)), res
        bad = dict(good, password="not-" + secured.passwords[FW])
        res = DeviceRun({"records": 3, "deadline_ms": 3000, "uplink": bad}).start().result()
        assert res["acked"] == 0 and res["connects"] == 0, res


# ---------------------------------------------------------------------------- no broker needed
def test_keys_init_makes_secret_files_owner_only_and_does_not_print_the_secret(tmp_path, capsys):
    keys = tmp_path / "keys"
    keys.mkdir(mode=0o755)
    (keys / "site.secret").write_text("old\n")
    os.chmod(keys / "site.secret", 0o644)  # an old world-readable file must not keep its mode
    assert backend_main(["keys", "init", "--keys", str(keys)]) == 0
    secret = (keys / "site.secret").read_text().strip()
    out = capsys.readouterr().out
    assert secret not in out and '"backend_key": "3059' in out
    assert keys.stat().st_mode & 0o777 == 0o700
    assert (keys / "backend.key").stat().st_mode & 0o777 == 0o600
    assert (keys / "site.secret").stat().st_mode & 0o777 == 0o600
    assert backend_main(["keys", "init", "--force", "--keys", str(keys)]) == 0
    assert (keys / "backend.key").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert backend_main(["keys", "show", "--keys", str(keys)]) == 0
    assert (keys / "site.secret").read_text().strip() not in capsys.readouterr().out
    assert backend_main(["keys", "show", "--show-secrets", "--keys", str(keys)]) == 0
    assert json.loads(capsys.readouterr().out)["site_secret"] == (keys / "site.secret").read_text().strip()
    assert not [p.name for p in keys.iterdir() if p.name.endswith(".tmp")]


def test_write_private_replaces_a_wider_file_atomically(tmp_path):
    from backend.keys import write_private

    path = tmp_path / "f"
    path.write_text("old")
    os.chmod(path, 0o666)
    old_umask = os.umask(0)
    try:
        write_private(path, b"new")
    finally:
        os.umask(old_umask)
    assert path.read_bytes() == b"new" and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_broker_names_and_listeners(tmp_path):
    auth = broker_auth.BrokerAuth(tmp_path / "keys")
    for bad in ("evc a1", "evc:a1", "evc/a1", "evc+", "#", "", "x" * 33, "évc"):
        with pytest.raises(broker_auth.BrokerAuthError):
            auth.new_credentials(bad)
    auth.new_credentials("evc-a1")
    with pytest.raises(broker_auth.BrokerAuthError, match="never both"):
        auth.new_credentials("evc-a1", backend=True)
    with pytest.raises(broker_auth.BrokerAuthError, match="no backend user"):
        broker_auth.write_files(auth, tmp_path / "out")
    auth.new_credentials("evc-backend", backend=True)
    first = auth.devices()["evc-a1"]
    auth.new_credentials("evc-a1")
    assert auth.devices()["evc-a1"] != first  # a new password replaces the old one
    files = broker_auth.write_files(auth, tmp_path / "out", install_dir="/etc/mosquitto/evc",
                                    backend_listen="10.0.0.5:8884")
    conf = files["mosquitto.conf"].read_text().split("listener 8884 10.0.0.5\n")[1]
    assert "certfile /etc/mosquitto/certs/server.crt" in conf  # off loopback the backend's listener is TLS too
    assert "password_file /etc/mosquitto/evc/passwd.backend" in conf
    assert auth.revoke("evc-a1") == "device" and auth.devices() == {}
    with pytest.raises(broker_auth.BrokerAuthError):
        broker_auth.device_acl(["evc-a1"], prefix="evc/x")


def test_broker_passwords_stay_out_of_messages(tmp_path):
    from backend import mqtt

    url = "mqtts://evc-backend:hunter2hunter2@127.0.0.1:1?ca=/x/ca.pem"
    assert "hunter2" not in mqtt.redact(url) and mqtt.redact(url).startswith("mqtts://evc-backend:***@127.0.0.1:1")
    with socket.socket() as silent:  # accepts TCP, never answers MQTT: connect() gives up with a message
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"mqtt://evc-backend:hunter2hunter2@127.0.0.1:{silent.getsockname()[1]}"
        client = mqtt.make_client(url, "t")
        with pytest.raises(ConnectionError, match="no connection to mqtt://evc-backend:\\*\\*\\*@") as exc:
            mqtt.connect(client, url, timeout=0.5)
        assert "hunter2" not in str(exc.value)
    with pytest.raises(ValueError) as bad:
        mqtt.parse_broker("http://u:hunter2hunter2@h:1")
    assert "hunter2" not in str(bad.value)
    pw = tmp_path / "pw.json"
    pw.write_text(json.dumps({"user": "evc-backend", "password": "a b/c"}))
    full = mqtt.with_options("mqtt://127.0.0.1:1884", password_file=pw)
    assert mqtt.parse_broker(full).user == "evc-backend" and mqtt.parse_broker(full).password == "a b/c"
    with pytest.raises(ValueError, match="is for user"):
        mqtt.with_options("mqtt://other@127.0.0.1:1884", password_file=pw)
    assert mqtt.parse_broker(mqtt.with_options("mqtts://h:8884", ca="/etc/evc/ca.pem")).ca == "/etc/evc/ca.pem"
