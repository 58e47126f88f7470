"""A device's flash (LittleFS image under $EVC_ROOT) seen from a test, through MicroPython itself.

The image is only ever opened by the firmware's own board layer (`board.mount_flash()`), so a
test writes and reads exactly what a device would, on the real filesystem. Run these while the
device process is stopped: two processes must not mount one image at the same time.

Authorization lists reach the flash only the way they reach a charger: as documents signed by
the backend key the device config pins, through the uplink's Downlink (verify, stage parts in any
order, hand them over when all are in) into the list, wired as app/charger.py wires it
(DOWNLINK_MP).
"""
from __future__ import annotations

import base64
import json
import tempfile
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


# MicroPython: the charger's authorization-list path on the flash at root, built as app/charger.py
# builds it (AuthList and Ledger under root/auth; the Uplink with its state and staging on root
# and the backend key that config pins; its Downlink calls billing.authlist.downlink_handler).
# No broker: documents are handed to uplink.downlink.handle("authlist", msg) as the uplink does
# with what arrives on evc/<dev>/authlist; rejections land in uplink.events (events(up)).
DOWNLINK_MP = """
import json, os
from app.boot import device_id
from app.config import validate
from billing.authlist import AuthList, downlink_handler
from billing.prepaid import Ledger
from uplink.service import Uplink


class _NoRecords:  # all the uplink's record forwarder reads at start; no record goes out here
    def acked_seq(self):
        return 0


def device_uplink(config, root):
    cfg = validate(config)
    cfg["uplink"]["broker"] = None
    try:
        os.mkdir(root + "/auth")
    except OSError:
        pass
    al = AuthList(root + "/auth")
    ledger = Ledger(root + "/auth/spent.bin")
    up = Uplink(cfg, device_id(cfg), _NoRecords(), on_authlist=downlink_handler(al, ledger), state_dir=root)
    return up, al


def events(up):
    out = []
    while len(up.events):
        out.append(json.loads(up.events.peek()))
        up.events.pop()
    return out


def messages(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                yield line.encode()
"""


def public_hex(key) -> str:
    """The device config's `backend_key` for a backend private key (hex SubjectPublicKeyInfo DER)."""
    from evc.verify import spki_der

    return spki_der(key.public_key()).hex()


def sign_authlist(key, docs: list[dict | str]) -> list[str]:
    """Authorization-list documents as the backend publishes them: each a JWS (ES256) by key,
    with "type": "authlist" (added when missing). Strings are taken as already signed."""
    from backend.keys import sign_document

    return [d if isinstance(d, str) else sign_document(key, {"type": "authlist", **d}) for d in docs]


def write_messages(path: Path, msgs: list[str]) -> Path:
    """One message per line, read back on the device with messages(path) (DOWNLINK_MP)."""
    Path(path).write_text("".join(m + "\n" for m in msgs))
    return Path(path)


def seed_device(root: Path, tariff: dict | None = None, authlist: list[dict] | None = None,
                env: dict[str, str] | None = None, config: dict | None = None, key=None) -> list[int] | None:
    """Before boot: store a tariff document (tariff.json) and deliver authorization-list documents
    as the charger receives them: signed with the backend key `key` whose public key `config` (the
    device config, with its device_id) pins, through the Downlink into the list. Raises when the
    device rejects one. Returns [list version, entry count] when documents were delivered."""
    if tariff is not None:
        put_file(root, "tariff.json", json.dumps(tariff), env)
    if not authlist:
        return None
    if config is None or key is None:
        raise ValueError("authorization lists are signed documents: seed_device needs the device config "
                         "(backend_key) and the backend key that signs them")
    with tempfile.TemporaryDirectory(prefix="evc-seed-") as tmp:
        path = write_messages(Path(tmp) / "authlist.txt", sign_authlist(key, authlist))
        got = run_on_flash(root, DOWNLINK_MP + f"""
up, al = device_uplink(json.loads({json.dumps(config)!r}), ROOT)
for m in messages({str(path)!r}):
    up.downlink.handle("authlist", m)
emit({{"ver": al.version, "count": al.count, "rejected": events(up)}})
""", env).value
    if got["rejected"]:
        raise RuntimeError(f"the device rejected seeded authorization-list documents: {got['rejected']}")
    return [got["ver"], got["count"]]
