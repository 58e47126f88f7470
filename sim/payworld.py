"""An ad-hoc payment world for the end-to-end test and the benchmark: one charger (the real firmware
on the MicroPython unix port, with meter, EV and a pay_url), a real broker, the reference backend
ingesting its records, and the payment stack of sim/paystack.py (Stripe emulator, payment service
with its web app, MQTT runtime and sweeper) on that backend's database."""
from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from backend.billing import registry
from backend.db import open_db
from backend.keys import load_public_key
from backend.models import Device, Payment, PaymentCode, TariffSource
from evc.tariff import compile_doc
from sim.backend import BackendProcess
from sim.charger import DEV, Charger, flat_tariff
from sim.day import SELLER
from sim.paystack import PayStack, wait

PRICE = flat_tariff("10.00", flat=None)  # 10 EUR/kWh + 20 % VAT: a 3 EUR hold lasts a few seconds at 360 kW


class PayWorld(PayStack):
    def __init__(self, root: Path, broker_url: str, hold: int = 300, name: str = "pay-world"):
        super().__init__(hold, sweep_s=0.3)
        self.root = Path(root)
        self.broker_url = broker_url
        self.name = name
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
        registry.set_seller(self.sessions, **SELLER)  # the operator's identity: receipts are issued in its name
        keys = self.charger.backend_keys  # the key this charger pins
        self.backend = BackendProcess(self.broker_url, db, env={"EVC_BACKEND_KEYS": str(keys.folder)}).start()
        self.open(self.sessions, keys, self.broker_url)
        on_webhook = self.service.on_webhook

        def stamped(body, headers):
            arrived = time.monotonic()  # the gateway's confirmation reaches the backend
            evt = on_webhook(body, headers)
            if evt.kind == "held":
                self.confirmed.append(arrived)
            return evt

        # the page looks service.on_webhook up per request, and no payment (so no webhook) comes
        # before the charger boots below: wrapping it after open() stamps every one
        self.service.on_webhook = stamped  # type: ignore[method-assign]
        self.charger.boot()

    def __exit__(self, *exc) -> None:
        self.close()  # the payment stack and the database engine
        if hasattr(self, "backend"):
            self.backend.stop()
        for part in self._parts:
            part.__exit__(None, None, None)

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

    def wait_state(self, pid: str, states: tuple[str, ...], timeout: float = 60) -> Payment:
        return wait(lambda: (p := self.payment(pid)) is not None and p.state in states and p, timeout,
                    f"payment {pid} in {states}")
