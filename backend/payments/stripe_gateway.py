"""Stripe through its official SDK (`stripe`): PaymentIntents with capture_method=manual.

hold: a PaymentIntent for the hold amount; the driver authorizes it on Stripe's side (Stripe.js
Payment Element with the client secret, or, against the local emulator, the emulator's hosted page
stand-in); payment_intent.amount_capturable_updated says the hold is in place. capture:
amount_to_capture (the rest of the hold is released by Stripe); release: cancel; refund: a Refund
of the PaymentIntent (partial: amount). Webhooks: stripe.Webhook.construct_event checks the
Stripe-Signature header (HMAC-SHA256 of "t.payload", with a timestamp tolerance).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping

import stripe

from backend.payments.gateway import GatewayError, GatewayEvent, GatewayUnavailable, Hold, WebhookError

KINDS = {
    "payment_intent.amount_capturable_updated": "held",
    "payment_intent.payment_failed": "failed",
    "payment_intent.succeeded": "captured",
    "payment_intent.canceled": "released",
    "charge.refunded": "refunded",
}


class StripeGateway:
    name = "stripe"

    def __init__(self, api_key: str, webhook_secret: str, api_base: str | None = None,
                 hosted_page: Callable[[str, str, str], str] | None = None, publishable_key: str | None = None,
                 network_retries: int = 0, tolerance_s: int = 300):
        # api_base: the local emulator (sim/stripe_emu.py); hosted_page(id, client_secret, return_url) -> its page
        base = {"api": api_base} if api_base else None
        self.client = stripe.StripeClient(api_key, base_addresses=base, max_network_retries=network_retries)
        self.webhook_secret = webhook_secret
        self.hosted_page = hosted_page
        self.publishable_key = publishable_key
        self.tolerance_s = tolerance_s

    def _call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (stripe.APIConnectionError, stripe.RateLimitError) as e:
            raise GatewayUnavailable(f"stripe: {e.user_message or e}") from e
        except stripe.APIError as e:
            raise GatewayUnavailable(f"stripe: {e.user_message or e}") from e
        except stripe.StripeError as e:
            code = getattr(e, "code", None)
            raise GatewayError(f"stripe: {code + ': ' if code else ''}{e.user_message or e}") from e

    def hold(self, ref: str, amount: int, currency: str, description: str, return_url: str) -> Hold:
        pi = self._call(self.client.v1.payment_intents.create, params={
            "amount": amount, "currency": currency.lower(), "capture_method": "manual",
            "payment_method_types": ["card"], "description": description, "metadata": {"ref": ref}},
            options={"idempotency_key": f"hold:{ref}"})
        url = self.hosted_page(pi.id, pi.client_secret, return_url) if self.hosted_page else None
        return Hold(pi.id, redirect_url=url, client_secret=pi.client_secret)

    def capture(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> int:
        pi = self._call(self.client.v1.payment_intents.capture, hold_id, params={"amount_to_capture": amount},
                        options={"idempotency_key": idempotency_key})
        return int(pi.amount_received)

    def release(self, hold_id: str, idempotency_key: str) -> None:
        self._call(self.client.v1.payment_intents.cancel, hold_id, params={"cancellation_reason": "abandoned"},
                   options={"idempotency_key": idempotency_key})

    def refund(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> str:
        r = self._call(self.client.v1.refunds.create, params={"payment_intent": hold_id, "amount": amount,
                                                             "reason": "requested_by_customer"},
                       options={"idempotency_key": idempotency_key})
        return str(r.id)

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        sig = headers.get("stripe-signature") or headers.get("Stripe-Signature")
        try:
            evt = stripe.Webhook.construct_event(body, sig, self.webhook_secret, tolerance=self.tolerance_s)
        except stripe.SignatureVerificationError as e:
            raise WebhookError(f"stripe webhook signature: {e.user_message or e}") from e
        except ValueError as e:
            raise WebhookError(f"stripe webhook body: {e}") from e
        obj = json.loads(body)["data"]["object"]  # verified above; the SDK's objects are not dicts
        if not isinstance(obj, dict):
            raise WebhookError("stripe webhook: data.object is not an object")
        kind = KINDS.get(evt.type, "other")
        if kind == "refunded":
            return GatewayEvent(kind, str(obj.get("payment_intent") or ""), int(obj.get("amount_refunded") or 0),
                                str(obj.get("currency") or "").upper(), evt.id)
        amount = obj.get("amount_capturable") if kind == "held" else obj.get("amount_received")
        return GatewayEvent(kind, str(obj.get("id") or ""), int(amount or 0), str(obj.get("currency") or "").upper(), evt.id)
