"""Device keys: export a device's public key (SubjectPublicKeyInfo DER/PEM/hex), or provision one.

  python tools/keys.py export --root DIR [--pem | --der | --hex] [-o FILE]
  python tools/keys.py create --root DIR      create the key pair on the device's flash if missing

DIR is a host device root (tools/sim.py, sim/device.py): its flash.img is mounted with the
MicroPython unix port, read-only for export, and only the public half (the key file's ".pub")
is read. The private key never leaves the device's flash.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim import mpy  # noqa: E402

DEFAULT_KEY_PATH = "device.key"  # on the device's flash data root (config key_path, flash.py provision)
_BLOCK = 4096

_EXPORT = """
import vfs
from blockdev import FileBlockDevice
dev = FileBlockDevice({img!r}, {block}, {count})
vfs.mount(vfs.VfsLfs2(dev), "/flash", readonly={readonly})
{action}
"""
_READ_PUB = """
try:
    with open("/flash/" + {path!r} + ".pub", "rb") as f:
        print("PUB", f.read().hex())
except OSError:
    print("NOKEY")
"""
_CREATE = """
from crypto import keys
key = keys.load_or_create("/flash/" + {path!r})
print("PUB", key.public_hex())
"""


class KeyToolError(RuntimeError):
    pass


def _run_on_flash(root: Path, action: str, readonly: bool) -> str:
    img = root / "flash.img"
    if not img.is_file():
        raise KeyToolError(f"{img}: no flash image (has this device root ever booted?)")
    size = img.stat().st_size
    if size % _BLOCK:
        raise KeyToolError(f"{img}: size {size} is not a multiple of {_BLOCK}")
    code = _EXPORT.format(img=str(img), block=_BLOCK, count=size // _BLOCK, readonly=readonly, action=action)
    proc = subprocess.run([*mpy.command(), "-c", code], capture_output=True, text=True, timeout=60,
                          env=mpy.mpy_env())
    if proc.returncode != 0:
        raise KeyToolError(f"reading {img} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def _public_key(out: str, key_path: str) -> ec.EllipticCurvePublicKey:
    for line in out.splitlines():
        if line == "NOKEY":
            raise KeyToolError(f"no device key at {key_path} yet (it is created on first boot; or run `create`)")
        if line.startswith("PUB "):
            key = serialization.load_der_public_key(bytes.fromhex(line[4:]))
            if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
                raise KeyToolError("the stored public key is not a P-256 key")
            return key
    raise KeyToolError(f"unexpected output: {out!r}")


def export(root: Path, key_path: str = DEFAULT_KEY_PATH) -> ec.EllipticCurvePublicKey:
    """The device's public key, read from its flash image without touching the private key."""
    return _public_key(_run_on_flash(root, _READ_PUB.format(path=key_path), readonly=True), key_path)


def create(root: Path, key_path: str = DEFAULT_KEY_PATH) -> ec.EllipticCurvePublicKey:
    """Provision: create the key pair on the device's flash (firmware code, os.urandom) if missing.
    The flash image now holds the private key: it is made readable by its owner only (mode 600)."""
    key = _public_key(_run_on_flash(root, _CREATE.format(path=key_path), readonly=False), key_path)
    if os.name == "posix":
        os.chmod(root / "flash.img", 0o600)
    return key


def encode(key: ec.EllipticCurvePublicKey, form: str) -> bytes:
    enc = serialization.Encoding.PEM if form == "pem" else serialization.Encoding.DER
    data = key.public_bytes(enc, serialization.PublicFormat.SubjectPublicKeyInfo)
    return data.hex().encode() + b"\n" if form == "hex" else data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("export", "create"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, type=Path, help="device root (holds flash.img)")
        p.add_argument("--key-path", default=DEFAULT_KEY_PATH, help="key file on the device flash")
        form = p.add_mutually_exclusive_group()
        form.add_argument("--pem", dest="form", action="store_const", const="pem")
        form.add_argument("--der", dest="form", action="store_const", const="der")
        form.add_argument("--hex", dest="form", action="store_const", const="hex")
        p.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    args = ap.parse_args(argv)
    try:
        key = (export if args.cmd == "export" else create)(args.root, args.key_path)
    except KeyToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    data = encode(key, args.form or "pem")
    if args.output:
        args.output.write_bytes(data)
        print(f"public key ({args.form or 'pem'}) written to {args.output}", file=sys.stderr)
    elif args.form == "der":
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data.decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
