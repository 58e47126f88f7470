"""provision, config get/set, status, logs, probes and export-journal through the board emulator."""
from __future__ import annotations

from pathlib import Path

import pytest
import serial
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tools import flash
from tools.flashkit.device import Device, FlashError

from .conftest import GOOD_CONFIG

REPO = Path(__file__).resolve().parents[2]


def test_provision_the_board_makes_its_own_key(deployed, backend_key, tmp_path):
    out = flash.provision(deployed.port, "cp-0042", backend_key, tmp_path / "keys")
    pem = Path(out["pem_path"]).read_bytes()
    public = serialization.load_pem_public_key(pem)
    assert isinstance(public.curve, ec.SECP256R1)
    cfg = flash.config_get(deployed.port, None)
    assert cfg["device_id"] == "cp-0042" and cfg["backend_key"] == flash.checks.parse_public_key(backend_key.read_bytes())
    # The private key stayed on the board: prove it by having the board sign and verifying here.
    with Device(deployed.port) as dev:
        root = dev.call("_evc_data_root()")
        sig = dev.call(f"from crypto import keys\n_evc_say(keys.load({root + '/device.key'!r}).sign_raw(b'flash.py').hex())")
    raw = bytes.fromhex(sig)
    public.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
                  b"flash.py", ec.ECDSA(hashes.SHA256()))
    # Provisioning again keeps the key: the backend has pinned it.
    again = flash.provision(deployed.port, "cp-0042", backend_key, tmp_path / "keys2")
    assert again["spki"] == out["spki"]
    assert flash.status(deployed.port)["key"] is True


def test_config_set_get_round_trip(deployed, capsys):
    assert flash.main(["config", "set", "--port", deployed.port, "meter.unit=7", "tz=CET-1CEST,M3.5.0,M10.5.0/3",
                       "auth.master_tokens=[\"00112233445566778899aabbccddeeff\"]"]) == 0
    assert flash.config_get(deployed.port, "meter.unit") == 7
    assert flash.config_get(deployed.port, "meter.url") == GOOD_CONFIG["meter"]["url"]  # untouched
    assert flash.config_get(deployed.port, "auth.master_tokens") == ["00112233445566778899aabbccddeeff"]
    assert flash.config_get(deployed.port, "meter.baud") == 9600  # a default, merged
    capsys.readouterr()
    before = (deployed.flash_dir / "evc" / "config.json").read_text()
    assert flash.main(["config", "set", "--port", deployed.port, "meter.unit=300"]) == 2
    assert "meter.unit" in capsys.readouterr().out
    assert flash.main(["config", "set", "--port", deployed.port, "meter.colour=red"]) == 2
    assert (deployed.flash_dir / "evc" / "config.json").read_text() == before  # nothing half-applied


def _b64(b: bytes) -> bytes:
    import base64

    return base64.urlsafe_b64encode(b).rstrip(b"=")


def _jws(payload: bytes, n: int) -> bytes:
    """Shaped like a record's JWS (the journal keeps those compact and rebuilds them on export)."""
    return _b64(b'{"alg":"ES256","kid":"cp-0001"}') + b"." + _b64(payload) + b"." + _b64(bytes([n]) * 64)


def _payload(i: int) -> bytes:
    return b'{"v":1,"dev":"cp-0001","seq":%d,"prev":"","token":"0123456789abcdef0123456789abcdef"}' % (i + 1)


def _seed_journal(port: str, records: list[bytes], ack: int) -> None:
    """The firmware's own journal, written on the board as the charger would."""
    payloads = [_payload(i) for i in range(len(records))]
    with Device(port) as dev:
        code = f"""
from journal.journal import Journal
root = _evc_root()
j = Journal(root + "/journal", max_bytes=64 * 1024, segment_bytes=16 * 1024)
j.recover()
for payload, signed in zip({payloads!r}, {records!r}):
    j.commit_record(j.next_seq(), payload, signed)
j.ack({ack})
j.close()
from app import log
log.attach(root + "/log.txt")
log.error("meter", "no answer from unit 1")
"""
        dev.exec(code)


def test_status_and_export_journal(deployed, tmp_path):
    # three kept compact and rebuilt, one kept as it came (not the JWS of its payload)
    records = [_jws(_payload(i), i) for i in range(3)] + [b"eyJhbGciOiJFUzI1NiJ9.eyJzZXEiOiAxfQ.sig4"]
    _seed_journal(deployed.port, records, ack=1)
    st = flash.status(deployed.port)
    assert st["board"] == "host" and st["device_id"] == "cp-0001" and st["fw"]
    assert st["heap_free"] > 0 and st["flash"]["free"] > 0
    assert st["journal"]["unacked"] == 3 and st["journal"]["last_seq"] == 4 and st["journal"]["first_unacked"] == 2
    assert any("no answer from unit 1" in e for e in st["errors"])
    assert any("no answer from unit 1" in line for line in flash.logs(deployed.port, 200))  # other warnings may follow it

    meta = flash.export_journal(deployed.port, tmp_path / "export")
    assert (meta["dev"], meta["first_seq"], meta["last_seq"], meta["count"]) == ("cp-0001", 2, 4, 3)
    # the folder is what `python -m backend import DIR` reads: one JWS per line, # comments
    from backend.importer import records_in

    assert [jws for _path, jws in records_in(tmp_path / "export")] == [r.decode() for r in records[1:]]


def test_export_of_an_empty_journal(deployed, tmp_path):
    meta = flash.export_journal(deployed.port, tmp_path / "export")
    assert meta["count"] == 0


def test_meter_probe_runs_the_firmware_driver_on_the_board(deployed):
    import struct

    from sim.meter_peer import MeterPeer

    def f32(x: float) -> int:
        return struct.unpack(">I", struct.pack(">f", x))[0]

    with MeterPeer("tcp") as peer:
        peer.set((4, 0x0048, "f32"), f32(1234.5625))  # kWh
        peer.set((4, 0x0034, "f32"), f32(11000.0))  # W
        peer.set((3, 0xFC00, "u32"), 42)
        flash.config_set(deployed.port, [f"meter.url={peer.url}", "meter.unit=1", "meter.timeout_ms=1000"])
        result = flash.probe(deployed.port, "meter", 10)
    assert result == {"energy_wh": 1234563, "power_w": 11000, "serial": "42", "model": "sdm630",
                      "url": peer.url, "unit": 1}


def test_nfc_probe_prints_the_token_not_the_uid(deployed):
    from sim.pn532_emu import Pn532Emulator

    with Pn532Emulator() as emu:
        url = emu.serve_tcp()
        emu.present(bytes.fromhex("04a1b2c3d4e5f6"))
        flash.config_set(deployed.port, [f"nfc.url={url}"])
        result = flash.probe(deployed.port, "nfc", 10)
    assert result["uid_len"] == 7 and len(result["token"]) == 32 and "uid" not in result


def test_no_device_on_the_port(tmp_path, capsys):
    assert flash.main(["status", "--port", str(tmp_path / "ttyUSB9")]) == 1
    assert "no device on" in capsys.readouterr().out


def test_port_busy(emulator, capsys):
    holder = serial.Serial(emulator.port, exclusive=True)
    try:
        assert flash.main(["status", "--port", emulator.port]) == 1
        assert "is busy" in capsys.readouterr().out
    finally:
        holder.close()


def test_wrong_micropython_version(emulator):
    failed = Device(emulator.port, min_version=(9, 0, 0))
    with pytest.raises(FlashError, match="wrong MicroPython version.*needs MicroPython 9.0.0 or newer"):
        failed.open()
    with Device(emulator.port) as dev:  # the failed session let go of the port (and its lock)
        assert dev.info["impl"] == "micropython"


def test_not_a_micropython_board(tmp_path, monkeypatch):
    import os
    import tty

    from tools.flashkit import device

    import functools

    from mpremote.transport_serial import SerialTransport

    monkeypatch.setattr(device, "_REPL_TRIES", 1)  # each try waits out mpremote's ~10 s: once is the same verdict
    monkeypatch.setattr(SerialTransport, "enter_raw_repl",  # and 2 s of silence is the same verdict as 10
                        functools.partialmethod(SerialTransport.enter_raw_repl, timeout_overall=2))
    master, slave = os.openpty()  # a serial port where nothing answers
    tty.setraw(slave)
    try:
        with pytest.raises(FlashError, match="does not answer with a MicroPython REPL.*install-micropython"):
            Device(os.ttyname(slave)).open()
    finally:
        os.close(master)
        os.close(slave)


def test_maintenance_needs_an_esp32_board_layer(deployed, capsys):
    assert flash.main(["maintenance", "status", "--port", deployed.port]) == 1
    assert "no maintenance mode" in capsys.readouterr().out
