"""One charger under test: the firmware as a device process (compiled .mpy, board heap budget)
with a pymodbus meter behind a simulated EV and an emulated PN532; no broker unless given one.

Every rig has a backend key pair of its own (backend.keys.Keys in `backend_keys`, site secret
SECRET) whose public key the device config pins: `seed()` signs authorization lists with it and
delivers them through the firmware's Downlink, and a reference backend started with
EVC_BACKEND_KEYS=backend_keys.folder is the backend this device trusts. With `broker` (a URL) the
firmware's uplink connects to it.

Records the backend has not acknowledged stay in the device's journal; `records()` reads them
back from the flash image after the device stopped and verifies each with evc.verify
(cryptography) and its chain.
"""
from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import time
from pathlib import Path

from backend.keys import Keys
from evc.verify import Record, verify_record
from sim.ev import EV
from sim.flashfs import run_on_flash, seed_device
from sim.meter_peer import MeterPeer
from sim.pn532_emu import Pn532Emulator
from sim.device import ESP32_HEAP, DeviceProcess

SECRET = "5ec2e7000000000000000000000000000000000000000000000000000000c0de"
DEV = "chg-1"
STATUS_MS = 1000  # a status line (with lag_max) every second of device time
_LAG = re.compile(r"status: .* lag_max=(\d+)ms")

# test node id -> longest event loop stall (ms) the device reported: for the terminal summary
STALLS: dict[str, int] = {}


def token(uid: bytes) -> str:
    """The card token as the backend derives it (docs/nfc.md), independently of the firmware."""
    return hmac.new(bytes.fromhex(SECRET), uid, hashlib.sha256).digest()[:16].hex()


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "pins" else v
    return out


BASE_CONFIG = {
    "device_id": DEV,
    "site_secret": SECRET,
    "meter": {"model": "sdm630", "poll_ms": 250, "timeout_ms": 300, "retries": 1, "max_power_w": 400000,
              "max_age_ms": 2000},
    "nfc": {"reader": "pn532", "poll_ms": 100},
    "session": {"min_energy_wh": 1, "meter_fault_s": 2},
    "journal": {"checkpoint_s": 5},
}


class Charger:
    def __init__(self, root: Path, name: str, config: dict | None = None, speed: int = 1, power_w: int = 360000,
                 plug_pin: str | None = None, start_wh: int = 1_000_000, broker: str | None = None,
                 time_quality: str = "S"):
        self.root = Path(root)
        self.name = name
        self.overrides = config or {}
        self.broker = broker
        self.backend_keys = Keys(self.root.parent / f"{self.root.name}-backend-keys")
        self.speed = speed
        self.power_w = power_w
        self.plug_pin = plug_pin
        self.start_wh = start_wh
        self.heap = ESP32_HEAP  # bench/heap.py bisects this
        self.micropython: str | None = None  # an interpreter with the firmware frozen in (sim/esp32geom.py)
        self.env: dict[str, str] = {}  # more environment for the device process
        # the host board's clock at boot: S the OS's (synchronized), U unknown as after a power-up
        # (then SNTP, time.ntp, or the backend's time command sets it)
        self.time_quality = time_quality
        self.meter: MeterPeer | None = None
        self.nfc: Pn532Emulator | None = None
        self.ev: EV | None = None
        self.dev: DeviceProcess | None = None
        self.config: dict = {}
        self.boots = 0
        self._outputs: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> "Charger":
        self.meter = MeterPeer("tcp").start()
        self.nfc = Pn532Emulator()
        nfc_url = self.nfc.serve_tcp()
        if not self.backend_keys.key_file.exists():
            self.backend_keys.init(site_secret=SECRET)
        cfg = merge(BASE_CONFIG, {"meter": {"url": self.meter.url}, "nfc": {"url": nfc_url},
                                  "backend_key": self.backend_keys.public_hex()})
        if self.broker:
            cfg["uplink"] = {"broker": self.broker, "backoff_min_ms": 200, "backoff_max_ms": 1000}
        if self.plug_pin:
            cfg["pins"] = {"plug": self.plug_pin}
        self.config = merge(cfg, self.overrides)
        self.ev = EV(self.meter, self.root, power_w=self.power_w, start_wh=self.start_wh, speed=self.speed,
                     plug_pin=self.plug_pin).start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.ev:
            self.ev.stop()
        if self.nfc:
            self.nfc.close()
        if self.meter:
            self.meter.stop_peer()

    def seed(self, tariff: dict | None = None, authlist: list[dict] | None = None) -> None:
        """Before boot: a tariff document, and authorization-list documents signed by this rig's
        backend key and delivered through the firmware's Downlink (sim/flashfs.py)."""
        seed_device(self.root, tariff, authlist, config=self.config,
                    key=self.backend_keys.private_key() if authlist else None)

    def provision(self) -> str:
        """As `tools/flash.py provision` does before the first boot: the device makes its key pair
        on its flash; returns the public key (PEM) to register with the backend."""
        assert self.dev is None, "provision before boot"
        return run_on_flash(self.root, f"""
from crypto import keys
emit(keys.load_or_create(ROOT + "/" + {self.config.get("key_path", "device.key")!r}).public_pem())
""").value

    def fill_journal(self, room_for: int, token_hex: str) -> int:
        """Before boot: the journal of a charger that has worked a while, its backend out of reach.
        Finished sessions' records, sealed by the device's own key and record builder
        (sim.records.session_fields), journaled until about `room_for` more fit before the
        journal refuses a session; returns how many were written (seq 1..n)."""
        from sim.records import session_fields

        assert self.dev is None, "fill the journal before boot"
        max_bytes = self.config.get("journal", {}).get("max_bytes", 512 * 1024)
        template = json.dumps(session_fields(DEV, 0, token_hex))
        return run_on_flash(self.root, f"""
import json
from billing import record
from crypto import keys
from journal.journal import Journal
key = keys.load_or_create(ROOT + "/" + {self.config.get("key_path", "device.key")!r})
_mkdirs(ROOT + "/journal/")
j = Journal(ROOT + "/journal", max_bytes={max_bytes}, segment_bytes=min(32 * 1024, {max_bytes} // 4))
j.recover()
grew = 0
while True:
    used = j.bytes_used()
    # 4096: the reserve the charger's Journal keeps for an open session's record (its default)
    if not j.can_start_session() or used + (1 + {room_for}) * grew + 4096 > {max_bytes}:
        break
    seq = j.next_seq()
    f = json.loads({template!r})
    f["seq"], f["prev"] = seq, j.prev_hash()
    f["start"]["t"] += seq * 3600
    f["stop"]["t"] += seq * 3600
    record.seal(key, f, lambda payload, signed: j.commit_record(seq, payload, signed))
    grew = max(grew, j.bytes_used() - used)
emit(j.next_seq() - 1)
""", heap="8m").value

    def boot(self) -> "Charger":
        env = {"EVC_STATUS_MS": str(STATUS_MS * self.speed), "EVC_TIME_QUALITY": self.time_quality}
        if self.speed > 1:
            env["EVC_CLOCK_SPEED"] = str(self.speed)
        self.dev = DeviceProcess(self.root, self.config, heap=self.heap, env={**env, **self.env}, name=self.name,
                                 micropython=self.micropython)
        self.dev.start()
        self.boots += 1
        self.dev.wait_for(r"charger: ready", timeout=60)
        time.sleep(1.0)  # the first meter polls: a session starts only from a fresh reading
        return self

    def stop(self) -> None:
        if self.dev is not None:
            if self.dev.alive():
                try:  # one more status line: its lag_max covers everything until now (records signed)
                    self.status_after(self.mark(), timeout=3 * STATUS_MS / 1000)
                except TimeoutError:
                    pass
            self.dev.stop()
            self._collect()

    def power_cut(self) -> None:
        assert self.dev is not None
        self.dev.power_cut()
        self._collect()

    def _collect(self) -> None:
        assert self.dev is not None
        out = self.dev.output()
        if out and (not self._outputs or self._outputs[-1] is not out):
            self._outputs.append(out)
            lags = [int(m.group(1)) for m in _LAG.finditer(out)]
            if lags:
                STALLS[self.name] = max(STALLS.get(self.name, 0), max(lags))
        self.dev = None

    # -- driving it ----------------------------------------------------------------------

    def mark(self) -> int:
        assert self.dev is not None
        return len(self.dev.lines)

    def wait_for(self, pattern: str, timeout: float = 20, start: int = 0) -> re.Match:
        assert self.dev is not None
        return self.dev.wait_for(pattern, timeout=timeout, start=start)

    def tap(self, uid: bytes, expect: str, timeout: float = 15) -> re.Match:
        """Hold the card on the reader until the device logs `expect`, then take it away."""
        assert self.nfc is not None
        at = self.mark()
        self.nfc.present(uid)
        try:
            return self.wait_for(expect, timeout=timeout, start=at)
        finally:
            self.nfc.remove()
            self._seen_gone()

    def _seen_gone(self, polls: int | None = None, timeout: float = 10) -> None:
        """Wait until the reader has polled the empty field `polls` times (default: one more than the
        empty polls after which the tap loop counts a card gone, 500 ms of them, at least 2:
        firmware/nfc/reader.py); a loaded machine can stretch a poll well past its period (a fixed
        sleep made the next tap of the same card look like the card still lying there)."""
        assert self.nfc is not None
        if polls is None:
            poll_ms = self.config["nfc"]["poll_ms"]
            polls = max(2, -(-500 // poll_ms)) + 1
        until = time.monotonic() + timeout
        done = self.nfc.lists_done + polls
        while self.nfc.lists_done < done and time.monotonic() < until and self.dev is not None and self.dev.alive():
            time.sleep(0.05)

    def status_after(self, start: int, timeout: float = 20) -> dict:
        """The fields of the next status line printed after line index start."""
        m = self.wait_for(r"status: (.*)$", timeout=timeout, start=start)
        return dict(kv.split("=", 1) for kv in m.group(1).split())

    def output(self) -> str:
        return "\n".join(self._outputs + ([self.dev.output()] if self.dev else []))

    def relay(self) -> int:
        return 1 if self.ev and self.ev.relay_closed() else 0

    def inject(self, task: str) -> None:
        (self.root / "inject").mkdir(exist_ok=True)
        (self.root / "inject" / task).write_text("1")

    # -- reading the flash back (device stopped) --------------------------------------------

    def journal(self) -> dict:
        assert self.dev is None, "stop the device before reading its flash"
        max_bytes = self.config.get("journal", {}).get("max_bytes", 512 * 1024)
        return run_on_flash(self.root, f"""
from journal.journal import Journal
j = Journal(ROOT + "/journal", max_bytes={max_bytes}, segment_bytes=min(32 * 1024, {max_bytes} // 4))
j.recover()
emit({{"records": [[seq, signed.decode()] for seq, signed in j.pending()], "open": j.open_sessions(),
       "next": j.next_seq()}})
with open(ROOT + "/device.key.pub", "rb") as f:
    emit(f.read().hex())
""", heap="8m").results

    def records(self, after: Record | None = None) -> list[Record]:
        """Every record still in the journal (not acknowledged by a backend), verified (signature,
        schema, OCMF, chain): from seq 1, or continuing the chain from `after` (the last record
        the backend acknowledged)."""
        journal, pub = self.journal()
        key = bytes.fromhex(pub)
        out: list[Record] = []
        for seq, jws in journal["records"]:
            rec = verify_record(jws, key, out[-1] if out else after, kid=DEV)
            assert rec.seq == seq
            out.append(rec)
        if out:
            assert out[0].seq == (after.seq + 1 if after else 1)
        return out


def flat_tariff(energy_per_kwh: str = "0.395", flat: str | None = "0.50", vat: float | None = 20.0,
                time_per_h: str | None = None, tid: str = "T-STD") -> dict:
    """An OCPI 2.2.1 tariff dict."""
    comps = [{"type": "ENERGY", "price": energy_per_kwh, "vat": vat, "step_size": 1}]
    if flat is not None:
        comps.append({"type": "FLAT", "price": flat, "vat": vat, "step_size": 0})
    if time_per_h is not None:
        comps.append({"type": "TIME", "price": time_per_h, "vat": vat, "step_size": 1})
    return {"id": tid, "currency": "EUR", "elements": [{"price_components": comps}]}


def authlist_doc(entries: list[dict], ver: int = 1) -> dict:
    return {"ver": ver, "full": True, "entries": sorted(entries, key=lambda e: e["token"])}


def dump(records: list[Record]) -> str:
    return json.dumps([r.fields for r in records], indent=1)[:4000]
