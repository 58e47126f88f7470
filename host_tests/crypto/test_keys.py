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
