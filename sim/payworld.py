"""An ad-hoc payment world for the end-to-end test and the benchmark: one charger (the real firmware
on the MicroPython unix port, with meter, EV and a pay_url), a real broker, the reference backend
ingesting its records, the Stripe emulator (sim/stripe_emu.py) and the payment service with its
web app served by uvicorn on a free port, its MQTT runtime and sweeper."""
from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import requests

from backend.db import open_db
from backend.downlink import Downlinks
from backend.keys import load_public_key
from backend.models import Device, Payment, PaymentCode, TariffSource
from backend.payments.runtime import Runtime
from backend.payments.service import PaymentService, Settings
from backend.payments.stripe_gateway import StripeGateway
from evc.tariff import compile_doc
from sim.backend import BackendProcess
from sim.charger import DEV, Charger, flat_tariff
from sim.stripe_emu import StripeEmulator

PRICE = flat_tariff("10.00", flat=None)  # 10 EUR/kWh + 20 % VAT: a 3 EUR hold lasts a few seconds at 360 kW


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(pred, timeout: float, what: str, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(step)
    got = pred()
    if not got:
        raise TimeoutError(f"{what}: not within {timeout:.0f} s")
    return got


class PayWorld:
    def __init__(self, root: Path, broker_url: str, hold: int = 300, name: str = "pay-world"):
        self.root = Path(root)
        self.broker_url = broker_url
        self.hold = hold
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.pay_url = f"{self.base}/pay"
        self.confirmed: list[float] = []  # monotonic time of each hold confirmation (the held webhook)
        self._parts: list = []

    def __enter__(self) -> "PayWorld":
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        import uvicorn
        from fastapi import FastAPI

        from backend.payments.web import create_app

        self.charger = Charger(self.root / "dev", self.name, broker=self.broker_url,
                               config={"pay_url": self.pay_url, "uplink": {"status_s": 1}}).__enter__()
        self._parts.append(self.charger)
        self.charger.seed(tariff=compile_doc(PRICE))
        pem = self.charger.provision()
        db = str(self.root / "backend.db")
        self.sessions = open_db(db)
        with self.sessions.begin() as s:
            s.add(Device(id=DEV, pubkey=load_public_key(pem.encode()), added_at=0, head_seq=0, head_hash=""))
            s.add(TariffSource(dev=DEV, contract="", ocpi=json.dumps(PRICE)))
        keys = self.charger.backend_keys  # the key this charger pins
        self.backend = BackendProcess(self.broker_url, db, env={"EVC_BACKEND_KEYS": str(keys.folder)}).start()
        self.emu = StripeEmulator(webhook_url=f"{self.pay_url}/webhook").start()
        gateway = StripeGateway(self.emu.api_key, self.emu.webhook_secret, api_base=self.emu.url,
                                hosted_page=self.emu.hosted_url)
        self.runtime = Runtime(self.broker_url, sweep_s=0.3)
        self.service = PaymentService(self.sessions, gateway, Downlinks(self.sessions, keys), self.runtime.publish,
                                      Settings(hold=self.hold))
        on_webhook = self.service.on_webhook

        def stamped(body, headers):
            arrived = time.monotonic()  # the gateway's confirmation reaches the backend
            evt = on_webhook(body, headers)
            if evt.kind == "held":
                self.confirmed.append(arrived)
            return evt

        self.service.on_webhook = stamped  # type: ignore[method-assign]
        self.runtime.start(self.service)
        root = FastAPI()
        root.mount("/pay", create_app(self.service))
        self.server = uvicorn.Server(uvicorn.Config(root, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, daemon=True, name="pay-web")
        self._thread.start()
        wait(lambda: self.server.started, 20, "payment web app")
        self.charger.boot()

    def __exit__(self, *exc) -> None:
        if hasattr(self, "server"):
            self.server.should_exit = True
            self._thread.join(10)
        if hasattr(self, "runtime"):
            self.runtime.stop()
        if hasattr(self, "emu"):
            self.emu.stop()
        if hasattr(self, "backend"):
            self.backend.stop()
        for part in self._parts:
            part.__exit__(None, None, None)
        if hasattr(self, "sessions"):
            self.sessions.kw["bind"].dispose()

    # -- driving it ------------------------------------------------------------------------------
    def code(self, other_than: str | None = None, timeout: float = 30) -> str:
        """The payment code the charger announces now (its retained status)."""
        def current():
            with self.sessions() as db:
                row = db.get(PaymentCode, DEV)
                return row.code if row is not None and row.code != other_than else None
        return wait(current, timeout, "the charger's payment code")

    def link(self, code: str) -> str:
        return f"{self.pay_url}/{DEV}/{code}"

    def pay_headless(self, code: str, card: str = "4242424242424242") -> str:
        """The driver's steps without a browser: the page's form, then the emulator's hosted page."""
        r = requests.post(self.link(code), allow_redirects=False, timeout=20)
        assert r.status_code == 303, r.text
        r = requests.post(r.headers["Location"], data={"card": card}, allow_redirects=False, timeout=20)
        assert r.status_code == 303, r.text
        return r.headers["Location"].rsplit("/p/", 1)[1].split("?")[0]

    def payment(self, pid: str) -> Payment:
        with self.sessions() as db:
            return db.get(Payment, pid)

    def wait_state(self, pid: str, states: tuple[str, ...], timeout: float = 60) -> Payment:
        return wait(lambda: (p := self.payment(pid)) is not None and p.state in states and p, timeout,
                    f"payment {pid} in {states}")
