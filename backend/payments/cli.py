"""`python -m backend pay serve|refund` (declared here, hooked into backend/__main__.py)."""
from __future__ import annotations

import argparse
import os


def add_parsers(sub, leaf) -> None:
    pay = sub.add_parser("pay", help="ad-hoc payments (docs/payments.md)").add_subparsers(dest="action", required=True)
    serve = leaf(pay, "serve", "the driver's payment page, the gateway's webhooks, capture and release")
    serve.add_argument("--gateway", choices=("stripe", "adyen", "emulator"), default="emulator",
                       help="emulator: a local Stripe emulator (sim/stripe_emu.py) started in this process")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--hold", type=int, default=5000, help="minor units held on the card: the session's cost cap")
    serve.add_argument("--currency", default="EUR")
    serve.add_argument("--public-url", default=None,
                       help="the URL the gateway's webhooks reach this server at (emulator: http://HOST:PORT)")
    refund = leaf(pay, "refund", "refund part or all of an ad-hoc payment to the card")
    refund.add_argument("payment")
    refund.add_argument("amount", type=int, help="minor units")
    refund.add_argument("--gateway", choices=("stripe", "adyen"), default="stripe")


def handles(args: argparse.Namespace) -> bool:
    return args.command == "pay"


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ValueError(f"{name} is not set: the gateway's keys come from the environment (docs/payments.md)")
    return value


def gateway_from_env(kind: str, emulator_url: str | None = None):
    """The adapter: keys from the environment (never on the command line, where `ps` shows them)."""
    if kind == "adyen":
        from backend.payments.adyen_gateway import AdyenGateway

        return AdyenGateway(_env("ADYEN_API_KEY"), _env("ADYEN_MERCHANT_ACCOUNT"), _env("ADYEN_HMAC_KEY"),
                            environment=os.environ.get("ADYEN_ENVIRONMENT", "test"))
    from backend.payments.stripe_gateway import StripeGateway

    if kind == "emulator":
        from sim.stripe_emu import API_KEY, WEBHOOK_SECRET

        return StripeGateway(API_KEY, WEBHOOK_SECRET, api_base=emulator_url,
                             hosted_page=lambda pid, secret, ret: _emulated_page(emulator_url, pid, secret, ret))
    return StripeGateway(_env("STRIPE_API_KEY"), _env("STRIPE_WEBHOOK_SECRET"),
                         publishable_key=os.environ.get("STRIPE_PUBLISHABLE_KEY"), network_retries=2)


def _emulated_page(base: str, pid: str, secret: str, ret: str) -> str:
    from urllib.parse import urlencode

    return f"{base}/emulator/pay/{pid}?{urlencode({'client_secret': secret, 'return_url': ret})}"


def run(args: argparse.Namespace) -> int:
    from backend.db import open_db
    from backend.downlink import Downlinks
    from backend.keys import Keys
    from backend.payments.service import PaymentService, Settings

    if args.broker_ca or args.broker_password_file:
        from backend.mqtt import with_options

        args.broker = with_options(args.broker, args.broker_ca, args.broker_password_file)
    sessions = open_db(args.db)
    if args.action == "refund":
        service = PaymentService(sessions, gateway_from_env(args.gateway), None, None)  # type: ignore[arg-type]
        print(service.refund(args.payment, args.amount))
        return 0
    import uvicorn
    from fastapi import FastAPI

    from backend.payments.runtime import Runtime
    from backend.payments.web import create_app

    emu = None
    if args.gateway == "emulator":
        from sim.stripe_emu import StripeEmulator

        public = args.public_url or f"http://{args.host}:{args.port}"
        emu = StripeEmulator(webhook_url=f"{public}/pay/webhook").start()
        print(f"gateway EMULATOR (not Stripe) at {emu.url}")
    gateway = gateway_from_env(args.gateway, emu.url if emu else None)
    runtime = Runtime(args.broker, args.prefix)
    service = PaymentService(sessions, gateway, Downlinks(sessions, Keys(args.keys), args.prefix), runtime.publish,
                             Settings(hold=args.hold, currency=args.currency))
    runtime.start(service)
    root = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    root.mount("/pay", create_app(service))
    try:
        uvicorn.run(root, host=args.host, port=args.port, log_level="info")
    finally:
        runtime.stop()
        if emu is not None:
            emu.stop()
    return 0
