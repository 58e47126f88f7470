"""The simulated world behind `make sim`: a broker, the reference backend and chargers.

Each charger is the real firmware under the MicroPython unix port (heap limited to a board's
budget, bytecode as deployed), with a pymodbus meter whose energy grows while its relay is
closed (sim/ev.py), a PN532 emulator and a 128x64 SSD1306 display whose frames the host board
writes to ROOT/display (sim/display.py turns them into PNG). Device time runs SPEED times faster
than real time, so an evening of charging plays in a few minutes; the settings that are
device-time durations are scaled to match.

Ad-hoc payment (docs/payments.md): the Stripe gateway EMULATOR (sim/stripe_emu.py, not Stripe) and
the payment service (backend/payments: its web page, MQTT runtime and sweeper) run in this process;
every charger's pay_url points at the page, so its idle screen shows the payment QR code.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.broker import Broker, shares_subscriptions  # noqa: E402
from sim.ev import EV  # noqa: E402
from sim.flashfs import run_on_flash  # noqa: E402
from sim.meter_peer import MeterPeer  # noqa: E402
from sim.pn532_emu import Pn532Emulator  # noqa: E402
from sim.device import ESP32_HEAP, DeviceProcess  # noqa: E402
from sim.paystack import PayStack  # noqa: E402

SPEED = 60  # device seconds per real second
ZONE = "Europe/Berlin"
TZ_RULE = "CET-1CEST,M3.5.0,M10.5.0/3"


def scaled_config(speed: int) -> dict:
    """Settings for a device whose clock runs `speed` times faster: device-time durations scaled
    (meter polling and staleness, meter fault, checkpoints, status), wire and network timeouts not
    (they run in real time, hal.clock.io_*)."""
    return {
        "tz": TZ_RULE,
        "meter": {"model": "sdm630", "poll_ms": 250 * speed, "timeout_ms": 300, "retries": 1,
                  "max_power_w": 400000, "max_age_ms": 2000 * speed},
        "nfc": {"reader": "pn532", "poll_ms": 100},
        "uplink": {"status_s": min(3600, 2 * speed), "resend_s": 5, "backoff_min_ms": 500, "backoff_max_ms": 3000},
        "auth": {"unknown": "online", "online_timeout_ms": 2000, "offline_max_wh": 2000,
                 "offline_max_cost": 0, "prepaid_min": 50},
        "session": {"min_energy_wh": 10, "meter_fault_s": min(3600, 3 * speed)},
        "journal": {"checkpoint_s": min(3600, 10 * speed)},
        "watchdog_ms": 30000,
    }


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def card_token(secret_hex: str, uid: bytes) -> str:
    return hmac.new(bytes.fromhex(secret_hex), uid, hashlib.sha256).digest()[:16].hex()


def evening_offset(now: float, local_hhmm: tuple[int, int]) -> int:
    """Seconds to add to the real clock so device local time starts at local_hhmm today."""
    zone = zoneinfo.ZoneInfo(ZONE)
    today = dt.datetime.fromtimestamp(now, zone).date()
    target = dt.datetime(today.year, today.month, today.day, *local_hhmm, tzinfo=zone)
    return int(target.timestamp() - now)


class Backend:
    """The reference backend: keys, device registry, downlink pushes (CLI) and `serve`."""

    def __init__(self, work: Path, broker_url: str, echo: bool):
        self.work = work
        self.db = str(work / "backend.db")
        self.keys = str(work / "backend-keys")
        self.broker_url = broker_url
        self.echo = echo
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "EVC_DB": self.db, "EVC_BACKEND_KEYS": self.keys, "EVC_BROKER": broker_url,
                    "PYTHONPATH": str(REPO)}

    def cli(self, *args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "backend", *args], capture_output=True, text=True,
                              env=self.env, cwd=str(REPO), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"backend {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def init(self) -> dict:
        self.cli("keys", "init")
        out = self.cli("keys", "show", "--show-secrets")  # the site secret goes into the chargers' configs
        return json.loads(out[out.index("{"):])

    def serve(self, shared: bool = True) -> None:
        # amqtt does not route MQTT shared subscriptions ($share/...); one worker needs none
        extra = [] if shared else ["--no-share"]
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "serve", "--db", self.db, "--gap-grace", "600",
                                      *extra],
                                     env=self.env, cwd=str(REPO), stdout=subprocess.DEVNULL,
                                     stderr=None if self.echo else subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class SimCharger:
    def __init__(self, world: "World", name: str, power_w: int):
        self.world = world
        self.name = name
        self.root = world.work / name
        self.frames = self.root / "display"  # the display's frame files ($EVC_DISPLAY_DIR)
        self.meter = MeterPeer("tcp").start()
        self.nfc = Pn532Emulator()
        self.nfc_url = self.nfc.serve_tcp()
        self.ev = EV(self.meter, self.root, power_w=power_w, start_wh=2_000_000 + hash(name) % 100_000,
                     speed=world.speed).start()
        self.config = merge(scaled_config(world.speed), {
            "device_id": name, "site_secret": world.secret, "backend_key": world.backend_key,
            "meter": {"url": self.meter.url}, "nfc": {"url": self.nfc_url}, "uplink": {"broker": world.broker.url},
            "display": {"type": "ssd1306" if world.display else "none"}, "pay_url": world.payments.pay_url,
        })
        self.dev: DeviceProcess | None = None
        self.pubkey_pem = ""

    def provision(self) -> None:
        """As `tools/flash.py provision` does: the device makes its key; the backend registers it."""
        got = run_on_flash(self.root, """
from crypto import keys
k = keys.load_or_create(ROOT + "/device.key")
emit(k.public_pem())
""").value
        self.pubkey_pem = got
        pem = self.root / "device.pem"
        pem.write_text(got)
        self.world.backend.cli("device", "add", self.name, "--pubkey", str(pem))

    def boot(self) -> None:
        env = {"EVC_CLOCK_SPEED": str(self.world.speed), "EVC_CLOCK_OFFSET_S": str(self.world.offset),
               "EVC_STATUS_MS": str(2000 * self.world.speed), "EVC_TIME_QUALITY": "S",
               "EVC_DISPLAY_DIR": str(self.frames)}
        self.dev = DeviceProcess(self.root, self.config, heap=self.world.heap or ESP32_HEAP, env=env, echo=False,
                                 name=self.name, micropython=self.world.micropython)
        self.dev.start()
        self.dev.wait_for(r"charger: ready", timeout=60)

    def tap(self, uid: bytes, expect: str, timeout: float = 30) -> str:
        assert self.dev is not None
        at = len(self.dev.lines)
        self.nfc.present(uid)
        try:
            return self.dev.wait_for(expect, timeout=timeout, start=at).group(0)
        finally:
            self.nfc.remove()
            time.sleep(0.7)  # the tap loop counts a card gone after 500 ms without it (firmware/nfc/reader.py)

    def wait(self, pattern: str, timeout: float = 60, start: int = 0) -> str:
        assert self.dev is not None
        return self.dev.wait_for(pattern, timeout=timeout, start=start).group(0)

    def mark(self) -> int:
        assert self.dev is not None
        return len(self.dev.lines)

    def close(self) -> None:
        if self.dev is not None:
            self.dev.stop()
        self.ev.stop()
        self.nfc.close()
        self.meter.stop_peer()


@dataclass
class Card:
    label: str
    uid: bytes
    status: str = "accepted"
    contract: str = ""
    balance: int | None = None


@dataclass
class World:
    work: Path
    speed: int = SPEED
    echo: bool = True
    micropython: str | None = None  # an interpreter with the firmware frozen in (make esp32geom)
    heap: str | None = None  # its -X heapsize (default: ESP32_HEAP)
    display: bool = True  # each charger with an SSD1306 (False: none, and so no ad-hoc payment by QR code)
    broker: Broker = field(init=False)
    backend: Backend = field(init=False)
    payments: "Payments" = field(init=False)
    chargers: dict[str, SimCharger] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)
    offset: int = 0
    secret: str = ""
    backend_key: str = ""
    cards: list = field(default_factory=list)  # every card pushed to the backend
    paid: list = field(default_factory=list)  # (charger, payment id) of every ad-hoc payment made

    def say(self, text: str) -> None:
        if self.echo:
            print(f"sim: {text}", flush=True)

    def start(self, names: list[str], power_w: int = 22000) -> None:
        self.broker = Broker().start()
        self.backend = Backend(self.work, self.broker.url, self.echo)
        keys = self.backend.init()
        self.secret, self.backend_key = keys["site_secret"], keys["backend_key"]
        self.offset = evening_offset(time.time(), (21, 40))
        self._listen()
        self.payments = Payments(self).start()  # first: it migrates the database before the backend opens it
        self.backend.serve(shared=shares_subscriptions(self.broker.kind))
        self.say(f"broker: {self.broker.kind} on {self.broker.url}; backend on SQLite; payment page on "
                 f"{self.payments.pay_url}, gateway EMULATOR on {self.payments.emu.url}")
        for name in names:
            self.chargers[name] = SimCharger(self, name, power_w)
            self.chargers[name].provision()

    def _listen(self) -> None:
        """Keep every record as it crossed the broker (the raw messages for --out and the report)."""
        lock = threading.Lock()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sim-observer")

        def on_message(_c, _u, msg):
            with lock:
                self.received.append((msg.topic, bytes(msg.payload)))

        client.on_message = on_message
        client.on_connect = lambda c, *a: c.subscribe("evc/+/rec", qos=1)
        client.reconnect_delay_set(0.1, 1)
        client.connect(self.broker.host, self.broker.port)
        client.loop_start()
        self._observer = client

    def push_cards(self, cards: list[Card]) -> None:
        self.cards = list(cards)
        csv_path = self.work / "cards.csv"
        rows = ["uid,status,contract,balance"]
        rows += [f"{c.uid.hex().upper()},{c.status},{c.contract},{'' if c.balance is None else c.balance}" for c in cards]
        csv_path.write_text("\n".join(rows) + "\n")
        self.backend.cli("authlist", "push", "--all", str(csv_path))

    def push_tariff(self, ocpi: dict, name: str) -> None:
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(ocpi))
        self.backend.cli("tariff", "push", "--all", str(path), "--tz", ZONE)

    def stop(self) -> None:
        for c in self.chargers.values():
            c.close()
        try:
            self._observer.loop_stop()
        except AttributeError:
            pass
        if hasattr(self, "payments"):
            self.payments.stop()
        self.backend.stop()
        self.broker.stop()


class Payments(PayStack):
    """The ad-hoc payment side of the world (sim/paystack.py) on the backend's database. A driver
    pays with plain HTTP requests: the page's form, then the emulator's hosted-page stand-in with
    its test card."""

    HOLD = 50  # minor units on the card: 0.50 EUR lasts a few device minutes at 22 kW

    def __init__(self, world: "World", hold: int = HOLD):
        super().__init__(hold, sweep_s=0.5)
        self.world = world

    def start(self) -> "Payments":
        from backend.db import open_db
        from backend.keys import Keys

        # the chargers' clock is shifted to the evening and runs fast: the start command's expiry is
        # set from a clock two days ahead so that it outlives the shift (as remote_stop's --ttl does)
        self.open(open_db(self.world.backend.db), Keys(self.world.backend.keys), self.world.broker.url,
                  clock=lambda: time.time() + 2 * 86400)
        return self

    stop = PayStack.close  # World.stop's name for it

    def pay(self, link: str, card: str = "4242424242424242") -> str:
        """A driver's phone on the payment link: the page with the price and the hold, its Pay button,
        the card on the gateway's hosted page (the emulator's stand-in); returns the payment's id."""
        import requests

        page = requests.get(link, timeout=20)
        if page.status_code != 200 or f"{self.hold // 100}.{self.hold % 100:02d}" not in page.text:
            raise RuntimeError(f"payment page {link}: {page.status_code} {page.text[:300]}")
        r = requests.post(link, allow_redirects=False, timeout=20)
        if r.status_code != 303:
            raise RuntimeError(f"pay on {link}: {r.status_code} {r.text[:300]}")
        r = requests.post(r.headers["Location"], data={"card": card}, allow_redirects=False, timeout=20)
        if r.status_code != 303 or "/p/" not in r.headers.get("Location", ""):
            raise RuntimeError(f"gateway emulator's hosted page: {r.status_code} {r.text[:300]}")
        return r.headers["Location"].rsplit("/p/", 1)[1].split("?")[0]


def tou_tariff(tid: str, day_price: float, night_price: float) -> dict:
    """An OCPI 2.2.1 tariff: day and night energy prices, 19 % VAT, night from 22:00 to 06:00."""
    def element(price: float, start: str, end: str) -> dict:
        return {"price_components": [{"type": "ENERGY", "price": price, "vat": 19, "step_size": 1}],
                "restrictions": {"start_time": start, "end_time": end}}

    return {"country_code": "DE", "party_id": "EVC", "id": tid, "currency": "EUR",
            "elements": [element(day_price, "06:00", "22:00"), element(night_price, "22:00", "06:00")],
            "last_updated": "2026-11-01T00:00:00Z"}


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
