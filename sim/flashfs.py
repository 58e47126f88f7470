"""A device's flash (LittleFS image under $EVC_ROOT) seen from a test, through MicroPython itself.

The image is only ever opened by the firmware's own board layer (`board.mount_flash()`), so a
test writes and reads exactly what a device would, on the real filesystem. Run these while the
device process is stopped: two processes must not mount one image at the same time.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path

from sim import mpy

_PRELUDE = """
import board, os
ROOT = board.mount_flash()
def _mkdirs(path):
    cur = ""
    for part in path.split("/")[:-1]:
        if not part:
            continue
        cur += "/" + part
        try:
            os.mkdir(cur)
        except OSError:
            pass
"""


def _env(root: Path, env: dict[str, str] | None) -> dict[str, str]:
    return {"EVC_ROOT": str(root), **(env or {})}


def run_on_flash(root: Path, code: str, env: dict[str, str] | None = None, heap: str | None = None,
                 timeout: float = 120) -> mpy.Result:
    """Run MicroPython code with the device's flash mounted at ROOT (`emit(obj)` returns results)."""
    return mpy.run(_PRELUDE + code, env=_env(root, env), heap=heap, timeout=timeout)


def put_file(root: Path, path: str, data: bytes | str, env: dict[str, str] | None = None) -> None:
    """Write data to path (relative to the flash root; folders are made), atomically by rename."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    b64 = base64.b64encode(raw).decode()
    run_on_flash(root, f"""
import binascii
p = ROOT + "/" + {path!r}
_mkdirs(p)
with open(p + ".tmp", "wb") as f:
    f.write(binascii.a2b_base64({b64!r}))
os.rename(p + ".tmp", p)
emit(True)
""", env)


def get_file(root: Path, path: str, env: dict[str, str] | None = None) -> bytes | None:
    """The bytes of path on the flash, or None when it does not exist."""
    got = run_on_flash(root, f"""
import binascii
try:
    with open(ROOT + "/" + {path!r}, "rb") as f:
        emit(binascii.b2a_base64(f.read()).decode())
except OSError:
    emit(None)
""", env).value
    return None if got is None else base64.b64decode(got)


def seed_device(root: Path, tariff: dict | None = None, authlist: list[dict] | None = None,
                env: dict[str, str] | None = None) -> None:
    """Before boot: store a tariff document (tariff.json) and apply authorization-list documents
    with the firmware's own billing.authlist, as the uplink would."""
    if tariff is not None:
        put_file(root, "tariff.json", json.dumps(tariff), env)
    if authlist:
        run_on_flash(root, f"""
import json
from billing.authlist import AuthList
al = AuthList(ROOT + "/auth")
for doc in json.loads({json.dumps(authlist)!r}):
    al.apply(doc)
emit([al.version, al.count])
""", env)
