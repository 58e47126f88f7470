"""The ad-hoc payment stack (docs/payments.md) that the simulated world (sim/world.py Payments) and
the payment test and benchmark (sim/payworld.py) share: the Stripe gateway EMULATOR
(sim/stripe_emu.py, not Stripe), the payment service with its page (uvicorn on a free port in a
thread, mounted at /pay as `backend pay serve` mounts it), its MQTT runtime (statuses with the
chargers' codes, started/refused events, signed start commands) and its sweeper (capture of the
signed total, release)."""
from __future__ import annotations

import threading
import time
from typing import Callable

from sim.broker import free_port


def wait(pred, timeout: float, what: str, step: float = 0.05):
    """pred()'s first true value, polled every `step` seconds; TimeoutError after `timeout`."""
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


class PayStack:
    def __init__(self, hold: int, sweep_s: float):
        self.hold = hold
        self.sweep_s = sweep_s
        self.port = free_port()  # known before open(): the chargers' pay_url needs it
        self.pay_url = f"http://127.0.0.1:{self.port}/pay"

    def open(self, sessions, keys, broker_url: str, clock: Callable[[], float] = time.time) -> None:
        """Start it on the backend's database (`sessions`, whose engine close() disposes) with the
        backend's keys; `clock` sets the expiry of the signed start commands."""
        import uvicorn
        from fastapi import FastAPI

        from backend.downlink import Downlinks
        from backend.payments.runtime import Runtime
        from backend.payments.service import PaymentService, Settings
        from backend.payments.stripe_gateway import StripeGateway
        from backend.payments.web import create_app
        from sim.stripe_emu import StripeEmulator

        self.sessions = sessions
        self.emu = StripeEmulator(webhook_url=f"{self.pay_url}/webhook").start()
        gateway = StripeGateway(self.emu.api_key, self.emu.webhook_secret, api_base=self.emu.url,
                                hosted_page=self.emu.hosted_url)
        self.runtime = Runtime(broker_url, sweep_s=self.sweep_s)
        self.service = PaymentService(sessions, gateway, Downlinks(sessions, keys, clock=clock), self.runtime.publish,
                                      Settings(hold=self.hold))
        self.runtime.start(self.service)
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        app.mount("/pay", create_app(self.service))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, daemon=True, name="pay-web")
        self._thread.start()
        # a server thread that died (port taken, import error) fails at once, not after the timeout
        wait(lambda: self.server.started or not self._thread.is_alive(), 20, "payment web app")
        if not self.server.started:
            raise RuntimeError("the payment page did not start")

    def payment(self, pid: str):
        from backend.models import Payment

        with self.sessions() as db:
            return db.get(Payment, pid)

    def close(self) -> None:
        """Whatever open() got to start, stopped; safe after a failed open()."""
        if hasattr(self, "server"):
            self.server.should_exit = True
            self._thread.join(10)
        if hasattr(self, "runtime"):
            self.runtime.stop()
        if hasattr(self, "emu"):
            self.emu.stop()
        if hasattr(self, "sessions"):
            self.sessions.kw["bind"].dispose()
