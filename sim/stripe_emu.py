"""A local Stripe gateway EMULATOR: the subset of the Stripe HTTP API that backend/payments uses,
for tests, the simulator and the benchmark. It is not Stripe and takes no real card.

Speaks (form-encoded POST, JSON answers, Bearer secret key, Stripe's error objects):
  POST /v1/payment_intents                  amount, currency, capture_method, description, metadata[...]
  GET  /v1/payment_intents/{id}
  POST /v1/payment_intents/{id}/capture     amount_to_capture (<= amount_capturable; the rest is released)
  POST /v1/payment_intents/{id}/cancel      cancellation_reason (releases the hold)
  POST /v1/refunds                          payment_intent, amount (partial allowed), reason
Idempotency-Key on POST as Stripe documents it: the first answer (status and body) is saved per
key and replayed (header Idempotent-Replayed: true) for the same request; the same key with other
parameters or another path is an `idempotency_error` (400).

Webhooks are signed like Stripe's: header Stripe-Signature "t=<epoch>,v1=<hex HMAC-SHA256 of
'<t>.<payload>' with the endpoint secret>", events payment_intent.amount_capturable_updated (the
hold is in place), payment_intent.payment_failed, payment_intent.succeeded (captured),
payment_intent.canceled, charge.refunded; delivered from a thread, retried a few times.

The hosted page stand-in (what Stripe's hosted page / Elements are in production: the only place a
card number is typed) is served by the emulator itself: GET /emulator/pay/{id}?client_secret=...&
return_url=...; test card 4242 4242 4242 4242 authorizes, 4000 0000 0000 0002 is declined.

Test hooks: `drop_after(path_suffix)` executes the next such request and then closes the
connection without answering (a crash or network loss after the gateway acted); `executed`
counts the operations that really ran (a replay does not count).
"""
from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from sim.gateway_emu import GatewayEmulator

API_KEY = "sk_test_emulator"
WEBHOOK_SECRET = "whsec_emulator_0123456789abcdef"
CARD_OK = "4242424242424242"
CARD_DECLINED = "4000000000000002"
MIN_AMOUNT = 50  # Stripe's minimum charge in EUR/USD cents
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action")


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.body = {"error": {k: v for k, v in (("type", type_), ("code", code), ("message", message),
                                                 ("param", param)) if v is not None}}


def parse_form(body: str) -> dict:
    """Stripe's form encoding: a[b]=c -> {"a": {"b": "c"}}, a[]=x -> {"a": [x]}."""
    out: dict = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = key.replace("]", "").split("[")
        node = out
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if p == "":  # a list item
                continue
            if last or parts[i + 1] == "":
                if not last:
                    node.setdefault(p, []).append(value)
                else:
                    node[p] = value
                break
            node = node.setdefault(p, {})
    return out


def _int(params: dict, name: str, required: bool = True) -> int | None:
    v = params.get(name)
    if v is None:
        if required:
            raise ApiError(400, "invalid_request_error", f"Missing required param: {name}.", "parameter_missing", name)
        return None
    if not isinstance(v, str) or not v.isdigit():
        raise ApiError(400, "invalid_request_error", f"Invalid integer: {v}", "parameter_invalid_integer", name)
    return int(v)


class StripeEmulator(GatewayEmulator):
    name = "stripe-emu"

    def __init__(self, webhook_url: str | None = None, api_key: str = API_KEY, webhook_secret: str = WEBHOOK_SECRET):
        super().__init__(webhook_url)
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.intents: dict[str, dict] = {}
        self.refunds: dict[str, dict] = {}
        self.events: list[dict] = []
        self.executed: list[tuple[str, str, int]] = []  # (operation, intent id, amount) that really ran
        self._saved: dict[tuple[str, str], tuple[str, int, bytes]] = {}
        self._drop: set[str] = set()

    def drop_after(self, suffix: str) -> None:
        """The next POST whose path ends with suffix runs, then its connection closes unanswered."""
        self._drop.add(suffix)

    def hosted_url(self, intent_id: str, client_secret: str, return_url: str) -> str:
        q = urllib.parse.urlencode({"client_secret": client_secret, "return_url": return_url})
        return f"{self.url}/emulator/pay/{intent_id}?{q}"

    # -- HTTP --------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        body = self._body(h).decode()
        if url.path.startswith("/emulator/pay/"):
            return self._hosted(h, method, url, body)
        key = fingerprint = None
        try:
            auth = h.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                raise ApiError(401, "invalid_request_error", "Invalid API Key provided.", "api_key_invalid")
            params = parse_form(body if method == "POST" else url.query)
            key = h.headers.get("Idempotency-Key") if method == "POST" else None
            if key:
                fingerprint = hashlib.sha256(f"{method} {url.path} {json.dumps(params, sort_keys=True)}".encode()).hexdigest()
                with self._lock:
                    saved = self._saved.get((self.api_key, key))
                    if saved is not None:
                        if saved[0] != fingerprint:
                            raise ApiError(400, "idempotency_error",
                                           "Keys for idempotent requests can only be used with the same parameters they "
                                           f"were first used with. Try using a key other than '{key}' if you meant to "
                                           "execute a different request.")
                        return self._answer(h, saved[1], saved[2], replayed=True)
                    status, out = self._route(method, url.path, params)
                    payload = json.dumps(out).encode()
                    self._saved[(self.api_key, key)] = (fingerprint, status, payload)
            else:
                with self._lock:
                    status, out = self._route(method, url.path, params)
                    payload = json.dumps(out).encode()
        except ApiError as e:
            status, payload = e.status, json.dumps(e.body).encode()
            if key and fingerprint and e.body["error"]["type"] != "idempotency_error":
                with self._lock:  # Stripe saves the first result of an endpoint that began executing
                    self._saved.setdefault((self.api_key, key), (fingerprint, status, payload))
        for suffix in list(self._drop):
            if method == "POST" and url.path.endswith(suffix):
                self._drop.discard(suffix)
                h.close_connection = True
                h.connection.close()  # executed, never answered
                return
        self._answer(h, status, payload)

    def _answer(self, h: BaseHTTPRequestHandler, status: int, payload: bytes, replayed: bool = False) -> None:
        headers = {"Request-Id": "req_" + secrets.token_hex(7)}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        self._send(h, status, payload, "application/json", headers)

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "payment_intents"]:
            if len(parts) == 2 and method == "POST":
                return 200, self._create(params)
            pi = self._intent(parts[2]) if len(parts) >= 3 else None
            if pi is not None and len(parts) == 3 and method == "GET":
                return 200, pi
            if pi is not None and len(parts) == 4 and method == "POST" and parts[3] == "capture":
                return 200, self._capture(pi, params)
            if pi is not None and len(parts) == 4 and method == "POST" and parts[3] == "cancel":
                return 200, self._cancel(pi, params)
        if parts == ["v1", "refunds"] and method == "POST":
            return 200, self._refund(params)
        raise ApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path}).")

    def _intent(self, pid: str) -> dict:
        pi = self.intents.get(pid)
        if pi is None:
            raise ApiError(404, "invalid_request_error", f"No such payment_intent: '{pid}'", "resource_missing", "intent")
        return pi

    # -- the API ---------------------------------------------------------------------------------
    def _create(self, p: dict) -> dict:
        amount = _int(p, "amount")
        currency = p.get("currency")
        if not isinstance(currency, str) or len(currency) != 3 or not currency.isalpha():
            raise ApiError(400, "invalid_request_error", "Missing required param: currency.", "parameter_missing", "currency")
        if amount < MIN_AMOUNT:
            raise ApiError(400, "invalid_request_error", "Amount must be at least €0.50 eur", "amount_too_small", "amount")
        capture = p.get("capture_method", "automatic_async")
        if capture not in ("automatic", "automatic_async", "manual"):
            raise ApiError(400, "invalid_request_error", f"Invalid capture_method: {capture}", "parameter_invalid_string",
                           "capture_method")
        pid = "pi_" + secrets.token_hex(12)
        pi = {"id": pid, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_received": 0,
              "currency": currency.lower(), "capture_method": capture, "status": "requires_payment_method",
              "client_secret": f"{pid}_secret_{secrets.token_hex(12)}", "created": int(time.time()),
              "description": p.get("description"), "metadata": p.get("metadata") or {}, "latest_charge": None,
              "canceled_at": None, "cancellation_reason": None, "last_payment_error": None, "livemode": False,
              "amount_refunded": 0}
        self.intents[pid] = pi
        return pi

    def _capture(self, pi: dict, p: dict) -> dict:
        if pi["status"] != "requires_capture":
            raise ApiError(400, "invalid_request_error",
                           f"This PaymentIntent could not be captured because it has a status of {pi['status']}. Only a "
                           "PaymentIntent with one of the following statuses may be captured: requires_capture.",
                           "payment_intent_unexpected_state")
        amount = _int(p, "amount_to_capture", required=False)
        amount = pi["amount_capturable"] if amount is None else amount
        if amount > pi["amount_capturable"]:
            raise ApiError(400, "invalid_request_error",
                           "The amount to capture must be less than or equal to the amount capturable.",
                           "amount_too_large", "amount_to_capture")
        pi.update(status="succeeded", amount_received=amount, amount_capturable=0)  # the rest is released
        self.executed.append(("capture", pi["id"], amount))
        self._event("payment_intent.succeeded", pi)
        return pi

    def _cancel(self, pi: dict, p: dict) -> dict:
        if pi["status"] not in CANCELABLE:
            raise ApiError(400, "invalid_request_error",
                           f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a "
                           f"PaymentIntent with one of the following statuses may be canceled: {', '.join(CANCELABLE)}.",
                           "payment_intent_unexpected_state")
        pi.update(status="canceled", amount_capturable=0, canceled_at=int(time.time()),
                  cancellation_reason=p.get("cancellation_reason"))
        self.executed.append(("cancel", pi["id"], 0))
        self._event("payment_intent.canceled", pi)
        return pi

    def _refund(self, p: dict) -> dict:
        pid = p.get("payment_intent")
        if not pid:
            raise ApiError(400, "invalid_request_error", "One of the following params should be provided for this "
                           "request: payment_intent or charge.", "parameter_missing", "payment_intent")
        pi = self._intent(pid)
        if pi["status"] != "succeeded":
            raise ApiError(400, "invalid_request_error", f"This PaymentIntent ({pid}) does not have a successful charge "
                           "to refund.", "charge_not_refundable", "payment_intent")
        left = pi["amount_received"] - pi["amount_refunded"]
        if left <= 0:
            raise ApiError(400, "invalid_request_error", f"Charge {pi['latest_charge']} has already been refunded.",
                           "charge_already_refunded")
        amount = _int(p, "amount", required=False)
        amount = left if amount is None else amount
        if amount <= 0 or amount > left:
            raise ApiError(400, "invalid_request_error", f"Refund amount ({amount}) is greater than unrefunded amount "
                           f"on charge ({left})", "amount_too_large", "amount")
        pi["amount_refunded"] += amount
        rid = "re_" + secrets.token_hex(12)
        refund = {"id": rid, "object": "refund", "amount": amount, "currency": pi["currency"], "payment_intent": pid,
                  "charge": pi["latest_charge"], "status": "succeeded", "reason": p.get("reason"),
                  "created": int(time.time()), "metadata": p.get("metadata") or {}}
        self.refunds[rid] = refund
        self.executed.append(("refund", pid, amount))
        self._event("charge.refunded", {"id": pi["latest_charge"], "object": "charge", "payment_intent": pid,
                                        "amount": pi["amount_received"], "amount_refunded": pi["amount_refunded"],
                                        "currency": pi["currency"], "refunded": pi["amount_refunded"] == pi["amount_received"]})
        return refund

    # -- the hosted page stand-in -------------------------------------------------------------------
    def _hosted(self, h: BaseHTTPRequestHandler, method: str, url, body: str) -> None:
        pid = url.path.rsplit("/", 1)[-1]
        q = dict(urllib.parse.parse_qsl(url.query))
        with self._lock:
            pi = self.intents.get(pid)
            ok = pi is not None and hmac.compare_digest(q.get("client_secret", ""), pi["client_secret"])
            if not ok:
                return self._page(h, 404, "<h1>Unknown payment</h1>")
            ret = q.get("return_url", "")
            if method == "GET" or pi["status"] != "requires_payment_method":
                if pi["status"] != "requires_payment_method":
                    return self._redirect(h, ret, pid)
                money = f"{pi['amount'] / 100:.2f} {pi['currency'].upper()}"
                form = (f"<h1>Gateway emulator</h1><p>Card hold of <b id=amount>{html.escape(money)}</b> for "
                        f"{html.escape(pi['description'] or '')}</p><form method=post action='{html.escape(h.path)}'>"
                        "<label>Card number <input id=card name=card inputmode=numeric autocomplete=off></label> "
                        "<button id=pay type=submit>Authorize</button></form>"
                        "<p><small>Local emulator: test cards 4242 4242 4242 4242 (ok), 4000 0000 0000 0002 "
                        "(declined).</small></p>")
                return self._page(h, 200, form)
            card = parse_form(body).get("card", "").replace(" ", "")
            if card == CARD_OK:
                pi.update(status="requires_capture" if pi["capture_method"] == "manual" else "succeeded",
                          latest_charge="ch_" + secrets.token_hex(12))
                if pi["status"] == "requires_capture":
                    pi["amount_capturable"] = pi["amount"]
                    self._event("payment_intent.amount_capturable_updated", pi)
                else:
                    pi["amount_received"] = pi["amount"]
                    self._event("payment_intent.succeeded", pi)
                return self._redirect(h, ret, pid)
            pi["last_payment_error"] = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}
            self._event("payment_intent.payment_failed", pi)
            return self._page(h, 402, "<h1>Your card was declined.</h1>")

    def _page(self, h: BaseHTTPRequestHandler, status: int, inner: str) -> None:
        doc = ("<!doctype html><html><head><meta name=viewport content='width=device-width,initial-scale=1'>"
               f"<title>Gateway emulator</title></head><body>{inner}</body></html>").encode()
        self._send(h, status, doc, "text/html; charset=utf-8")

    def _redirect(self, h: BaseHTTPRequestHandler, ret: str, pid: str) -> None:
        sep = "&" if "?" in ret else "?"
        self._send(h, 303, headers={"Location": f"{ret}{sep}payment_intent={pid}"})

    # -- webhooks --------------------------------------------------------------------------------
    def _event(self, kind: str, obj: dict) -> None:
        evt = {"id": "evt_" + secrets.token_hex(12), "object": "event", "type": kind, "created": int(time.time()),
               "livemode": False, "api_version": "2026-10-29", "data": {"object": json.loads(json.dumps(obj))}}
        self.events.append(evt)
        self._outbox.put(evt)

    def sign(self, payload: bytes, t: int | None = None, secret: str | None = None) -> str:
        t = int(time.time()) if t is None else t
        mac = hmac.new((secret or self.webhook_secret).encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
        return f"t={t},v1={mac}"

    def _post_webhook(self, evt: dict) -> None:
        payload = json.dumps(evt).encode()
        for attempt in range(5):  # Stripe retries an endpoint that does not answer 2xx
            if self._post(payload, {"Stripe-Signature": self.sign(payload)}):
                evt["delivered"] = True
                return
            time.sleep(0.2 * (attempt + 1))
