"""mqtts: the device verifies the broker against the configured CA (CERT_REQUIRED) and refuses
a broker whose certificate another CA signed. mosquitto with a CA made here by `cryptography`."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sim.backend_peer import BackendPeer
from sim.broker import free_port, mosquitto_binary
from sim.uplink import DeviceRun, uplink_cfg


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca(cn: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _server(ca_key, ca_cert):
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def _pem(path: Path, obj) -> str:
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(path)


@pytest.fixture
def tls_broker(tmp_path):
    if not mosquitto_binary():
        pytest.skip("mosquitto not installed (amqtt TLS not set up here)")
    ca_key, ca_cert = _ca("evc test CA")
    key, cert = _server(ca_key, ca_cert)
    plain, tls = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"user root\nper_listener_settings false\nallow_anonymous true\npersistence false\nlog_dest none\n"
        f"listener {plain} 127.0.0.1\n"
        f"listener {tls} 127.0.0.1\ncafile {_pem(tmp_path / 'ca.pem', ca_cert)}\n"
        f"certfile {_pem(tmp_path / 'server.pem', cert)}\nkeyfile {_pem(tmp_path / 'server.key', key)}\n")
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for port in (plain, tls):
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
        yield plain, tls, tmp_path / "ca.pem"
    finally:
        proc.terminate()
        proc.wait(5)


def test_tls_with_the_right_ca_delivers(tls_broker, tmp_path):
    plain, tls, ca = tls_broker
    with BackendPeer("127.0.0.1", plain) as peer:
        res = DeviceRun({"records": 50, "deadline_ms": 20000,
                         "uplink": uplink_cfg(f"mqtts://localhost:{tls}", ca=str(ca))}).start().result()
    assert res["acked"] == 50 and peer.stored("dev1") == list(range(1, 51)), res
    assert res["max_lag_ms"] < 300, res
    print(f"\nTLS: max event loop stall {res['max_lag_ms']} ms (handshake included)")


def test_tls_with_another_ca_is_refused(tls_broker, tmp_path):
    _, tls, _ = tls_broker
    _, other = _ca("someone else")
    wrong = _pem(tmp_path / "other-ca.pem", other)
    res = DeviceRun({"records": 5, "deadline_ms": 3000,
                     "uplink": uplink_cfg(f"mqtts://localhost:{tls}", ca=wrong)}).start().result()
    assert res["acked"] == 0 and res["connects"] == 0
    assert res["max_lag_ms"] < 300, res
