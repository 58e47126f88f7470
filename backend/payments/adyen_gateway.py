"""Adyen through its official SDK (`Adyen`): Checkout API sessions in hosted mode with manual capture,
then the modifications API on the authorisation's pspReference.

hold: POST /sessions (mode hosted, additionalData.manualCapture) -> Adyen's Hosted Checkout page;
the AUTHORISATION webhook (success true) names the pspReference: that is the hold from then on.
capture: /payments/{psp}/captures with the amount (Adyen releases the rest of the authorisation);
release: /cancels; refund: /refunds (partial allowed). Modifications are asynchronous at Adyen: the
request is "received" and the CAPTURE/CANCELLATION/REFUND webhook confirms. Webhooks: the standard
notification's HMAC (additionalData.hmacSignature), checked with Adyen.util.is_valid_hmac_notification.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import Adyen
from Adyen import util
from Adyen.exceptions import AdyenAPICommunicationError, AdyenError

from backend.payments.gateway import GatewayError, GatewayEvent, GatewayUnavailable, Hold, WebhookError

KINDS = {"CAPTURE": "captured", "CANCELLATION": "released", "REFUND": "refunded"}


class AdyenGateway:
    name = "adyen"

    def __init__(self, api_key: str, merchant_account: str, hmac_key: str, environment: str = "test",
                 checkout_base: str | None = None, live_prefix: str | None = None):
        # checkout_base: e.g. the local emulator's http://127.0.0.1:PORT/v72 (sim/adyen_emu.py)
        self.adyen = Adyen.Adyen(xapikey=api_key, platform=environment, live_endpoint_prefix=live_prefix)
        self.checkout = self.adyen.checkout
        if checkout_base:
            self.checkout.payments_api.baseUrl = checkout_base
            self.checkout.modifications_api.baseUrl = checkout_base
        self.merchant = merchant_account
        self.hmac_key = hmac_key

    def _call(self, fn, *args, **kw) -> dict:
        try:
            result = fn(*args, **kw)
        except AdyenAPICommunicationError as e:
            if getattr(e, "status_code", 500) == 404:
                raise GatewayError(f"adyen: {e}") from e
            raise GatewayUnavailable(f"adyen: {e}") from e
        except AdyenError as e:
            raise GatewayError(f"adyen: {getattr(e, 'error_code', '')} {e}".strip()) from e
        except OSError as e:  # no connection (requests' errors are OSErrors)
            raise GatewayUnavailable(f"adyen: {e}") from e
        return result.message

    def hold(self, ref: str, amount: int, currency: str, description: str, return_url: str) -> Hold:
        out = self._call(self.checkout.payments_api.sessions, {
            "amount": {"value": amount, "currency": currency}, "merchantAccount": self.merchant, "reference": ref,
            "returnUrl": return_url, "mode": "hosted", "shopperStatement": description[:22],
            "additionalData": {"manualCapture": "true"}}, idempotency_key=f"hold:{ref}")
        return Hold(out["id"], redirect_url=out.get("url"))

    def capture(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> int:
        out = self._call(self.checkout.modifications_api.capture_authorised_payment,
                         {"merchantAccount": self.merchant, "amount": {"value": amount, "currency": currency},
                          "reference": idempotency_key}, hold_id, idempotency_key=idempotency_key)
        return int(out["amount"]["value"])

    def release(self, hold_id: str, idempotency_key: str) -> None:
        if hold_id.startswith("CS"):  # a checkout session never authorised: nothing is held
            return
        self._call(self.checkout.modifications_api.cancel_authorised_payment_by_psp_reference,
                   {"merchantAccount": self.merchant, "reference": idempotency_key}, hold_id,
                   idempotency_key=idempotency_key)

    def refund(self, hold_id: str, amount: int, currency: str, idempotency_key: str) -> str:
        out = self._call(self.checkout.modifications_api.refund_captured_payment,
                         {"merchantAccount": self.merchant, "amount": {"value": amount, "currency": currency},
                          "reference": idempotency_key}, hold_id, idempotency_key=idempotency_key)
        return str(out["pspReference"])

    def parse_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        try:
            note = json.loads(body)
            items = [i["NotificationRequestItem"] for i in note["notificationItems"]]
            item = items[0]
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise WebhookError(f"adyen webhook body: {e}") from e
        for it in items:  # every item must be genuine
            try:
                ok = util.is_valid_hmac_notification(it, self.hmac_key)
            except Exception as e:  # noqa: BLE001 - the SDK raises plain exceptions on a missing signature
                raise WebhookError(f"adyen webhook signature: {e}") from e
            if not ok:
                raise WebhookError("adyen webhook signature does not match")
        code, success = item.get("eventCode"), item.get("success") == "true"
        amount = item.get("amount") or {}
        if code == "AUTHORISATION":
            kind = "held" if success else "failed"
            hold = item.get("pspReference", "")
        else:
            kind = KINDS.get(code, "other") if success else "other"
            hold = item.get("originalReference", "")
        return GatewayEvent(kind, str(hold), int(amount.get("value") or 0), str(amount.get("currency") or ""),
                            str(item.get("pspReference", "")), ref=str(item.get("merchantReference", "")))
