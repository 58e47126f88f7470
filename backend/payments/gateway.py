"""One interface for the payment gateways (Stripe, Adyen): a hold of an amount on the driver's card,
captured (all or part: the rest is released) or released, refunded in part or in full.

No card data reaches this backend: the driver types it on the gateway's hosted page (or the
gateway's own embedded element), which the hold's `redirect_url` / `client_secret` lead to.
Amounts are integers in minor units. Every call that moves money takes an idempotency key, so a
call repeated after a crash or a lost answer moves it once.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

EventKind = Literal["held", "failed", "captured", "released", "refunded", "other"]


class GatewayError(Exception):
    """The gateway refused the request: repeating it will not help."""


class GatewayUnavailable(GatewayError):
    """No answer, or a server error: the outcome is unknown; repeat with the same idempotency key."""


class WebhookError(ValueError):
    """A webhook that is not genuinely the gateway's (signature, timestamp) or cannot be read."""


@dataclass(frozen=True)
class Hold:
    hold_id: str
    redirect_url: str | None = None  # the gateway's hosted page (the emulator's stand-in in tests)
    client_secret: str | None = None  # for the gateway's embedded element when there is no hosted page


@dataclass(frozen=True)
class GatewayEvent:
    kind: EventKind
    hold_id: str
    amount: int  # held: the amount on hold; captured: taken; refunded: refunded so far
    currency: str
    event_id: str
    ref: str = ""  # our payment reference when the gateway echoes it (Adyen's merchantReference)


class Gateway(Protocol):
    name: str

    def hold(self, ref: str, amount: int, currency: str, description: str, return_url: str) -> Hold: ...

    def capture(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> int: ...

    def release(self, hold_id: str, idempotency_key: str) -> None: ...

    def refund(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> str: ...

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent: ...
