"""The device key on LittleFS: created once, kept across boots, never replaced; exported by tools/keys.py."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tools import keys as keytool

REPO = Path(__file__).resolve().parents[2]


def boot(mpy, root: Path, action: str):
    """Mount the device root's LittleFS like the host board does and run action (emit results)."""
    return mpy.run(f"""
import board
mnt = board.mount_flash()
from crypto import keys
{action}
""", env={"EVC_ROOT": str(root), "EVC_FLASH_KB": "256"})


def test_key_created_on_first_boot_and_kept(mpy, tmp_path):
    first = boot(mpy, tmp_path, """
key = keys.load_or_create(mnt + "/device.key")
emit([key.public_hex(), key.sign_raw(b"hello").hex()])
""").value
    second = boot(mpy, tmp_path, """
import os
key = keys.load_or_create(mnt + "/device.key")
emit([key.public_hex(), sorted(n for n in os.listdir(mnt) if n.startswith("device.key"))])
""").value
    assert second == [first[0], ["device.key", "device.key.pub"]]
    pub = serialization.load_der_public_key(bytes.fromhex(first[0]))
    sig = bytes.fromhex(first[1])
    pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), b"hello",
               ec.ECDSA(hashes.SHA256()))


def test_damaged_key_is_an_error_not_a_new_key(mpy, tmp_path):
    res = boot(mpy, tmp_path, """
p = mnt + "/device.key"
keys.load_or_create(p)
out = []
try:
    keys.create(p)
except keys.DeviceKeyError as e:
    out.append(str(e))
with open(p, "wb") as f:
    f.write(b"short")
try:
    keys.load_or_create(p)
except keys.DeviceKeyError as e:
    out.append(str(e))
with open(p, "wb") as f:
    f.write(bytes(32))
try:
    keys.load(p)
except keys.DeviceKeyError as e:
    out.append(str(e))
emit(out)
""").value
    assert "refusing to replace" in res[0]
    assert "5 bytes, expected 32" in res[1]
    assert "out of range" in res[2]


def test_missing_pub_file_is_rewritten(mpy, tmp_path):
    res = boot(mpy, tmp_path, """
import os
p = mnt + "/device.key"
a = keys.load_or_create(p).public_hex()
os.remove(p + ".pub")
b = keys.load_or_create(p).public_hex()
with open(p + ".pub", "rb") as f:
    emit([a == b, f.read().hex() == a])
""").value
    assert res == [True, True]


def test_tool_exports_what_the_device_created(mpy, tmp_path):
    with pytest.raises(keytool.KeyToolError, match="no flash image"):
        keytool.export(tmp_path)
    boot(mpy, tmp_path, "emit(0)")
    with pytest.raises(keytool.KeyToolError, match="no device key"):
        keytool.export(tmp_path)
    created = keytool.create(tmp_path)
    assert (tmp_path / "flash.img").stat().st_mode & 0o777 == 0o600  # it holds the private key now
    device_hex = boot(mpy, tmp_path, 'emit(keys.load_or_create(mnt + "/device.key").public_hex())').value
    assert keytool.encode(keytool.export(tmp_path), "hex").decode().strip() == device_hex
    assert keytool.encode(created, "hex").decode().strip() == device_hex
    out = tmp_path / "device.pem"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "keys.py"), "export", "--root", str(tmp_path), "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pem_key = serialization.load_pem_public_key(out.read_bytes())
    assert pem_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex() == device_hex
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "keys.py"), "export", "--root", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no flash image" in proc.stderr


# A new key waits for a true random source (hal/entropy.py). The host board has no hook (the unix
# port's os.urandom is the OS's, good at once); these give the board one, as an ESP32 board would.
def test_no_key_without_a_true_random_source(mpy, tmp_path):
    res = boot(mpy, tmp_path, """
import os, time
calls = []
board.entropy_ready = lambda: calls.append("ready") or False  # the radio never comes up
board.entropy_done = lambda: calls.append("done")
t0 = time.ticks_ms()
try:
    keys.load_or_create(mnt + "/device.key", 1200)  # the boot's wait is 10 s: its value is checked below
    emit(["made a key", None])
except keys.DeviceKeyError as e:
    emit([str(e), sorted(n for n in os.listdir(mnt) if n.startswith("device.key")), calls.count("ready") > 2,
          calls[-1], time.ticks_diff(time.ticks_ms(), t0)])
""").value
    msg, files, polled, last, ms = res
    assert msg.startswith("no device key made: no true random source within 1200 ms"), msg
    assert files == [] and polled and last == "done" and ms >= 1200
    # what a booting charger waits (load_or_create without entropy_ms): up to 10 s for its radio
    assert "_DEADLINE_MS = const(10000)" in (REPO / "firmware" / "hal" / "entropy.py").read_text()


def test_key_made_once_the_source_is_ready(mpy, tmp_path):
    res = boot(mpy, tmp_path, """
import os
calls = []
def ready():
    calls.append("ready")
    return calls.count("ready") >= 3  # e.g. the radio takes a moment to start
board.entropy_ready = ready
board.entropy_done = lambda: calls.append("done")
key = keys.create(mnt + "/device.key", entropy_ms=5000)
emit([calls, key.public_hex() == keys.load(mnt + "/device.key").public_hex()])
""").value
    assert res == [["ready", "ready", "ready", "done"], True]


def test_esp32_radio_is_started_for_the_key_and_stopped_after(mpy):
    """hal/entropy.py's ESP32 hooks against a stand-in network module: a WLAN that is off is
    started (its RF feeds the RNG) and stopped again; one that was on is left on."""
    res = mpy.run("""
import sys

class WLAN:
    on = False
    log = []
    def __init__(self, which):
        pass
    def active(self, v=None):
        if v is None:
            return WLAN.on
        WLAN.on = v
        WLAN.log.append(v)

class network:
    STA_IF = 0
    WLAN = WLAN

sys.modules["network"] = network
from hal import entropy
out = [entropy.esp32_radio_ready(), WLAN.on]
entropy.esp32_radio_done()
out += [WLAN.on, list(WLAN.log)]
WLAN.on = True  # the charger's own WLAN is up already
WLAN.log.clear()
out += [entropy.esp32_radio_ready(), entropy.esp32_radio_done(), WLAN.on, list(WLAN.log)]
emit(out)
""").value
    assert res == [True, True, False, [True, False], True, None, True, []]
