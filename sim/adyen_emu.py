"""A small local Adyen gateway EMULATOR: the part of Adyen's Checkout API (v72, JSON, X-API-Key)
that backend/payments/adyen_gateway.py uses, for its tests. It is not Adyen and takes no real card.

  POST /v72/sessions                                  amount, merchantAccount, reference, returnUrl,
                                                      mode "hosted", additionalData.manualCapture
  POST /v72/payments/{pspReference}/captures          amount (<= authorised, once): 201 "received"
  POST /v72/payments/{pspReference}/cancels           201 "received" (releases the authorisation)
  POST /v72/payments/{pspReference}/refunds           amount (partial allowed): 201 "received"
Idempotency-Key: the first answer is saved per key and given again for the same request; another
request with a used key is refused (422). Errors are Adyen's shape: {"status", "errorCode",
"message", "errorType"}.

Standard webhooks (notificationItems with NotificationRequestItem) are signed as Adyen documents:
additionalData.hmacSignature = base64(HMAC-SHA256(hex-decoded key, "pspReference:originalReference:
merchantAccountCode:merchantReference:value:currency:eventCode:success")); events AUTHORISATION,
CAPTURE, CANCELLATION, REFUND. The hosted page stand-in (Adyen's Hosted Checkout in production) is
GET/POST /emulator/adyen/{sessionId}; card 4111 1111 1111 1111 authorises, any other is refused.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import urllib.parse
from http.server import BaseHTTPRequestHandler

from sim.gateway_emu import GatewayEmulator

API_KEY = "AQE_emulator_key"
HMAC_KEY = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056"
MERCHANT = "EmulatorMerchant"
CARD_OK = "4111111111111111"


class AdyenError(Exception):
    def __init__(self, status: int, code: str, message: str, type_: str = "validation"):
        super().__init__(message)
        self.status = status
        self.body = {"status": status, "errorCode": code, "message": message, "errorType": type_}


def sign_item(item: dict, key_hex: str) -> str:
    amount = item.get("amount", {})
    fields = [item.get("pspReference", ""), item.get("originalReference", ""), item.get("merchantAccountCode", ""),
              item.get("merchantReference", ""), str(amount.get("value", "")), amount.get("currency", ""),
              item.get("eventCode", ""), item.get("success", "")]
    mac = hmac.new(bytes.fromhex(key_hex), ":".join(fields).encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def _psp() -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(16))


class AdyenEmulator(GatewayEmulator):
    name = "adyen-emu"

    def __init__(self, webhook_url: str | None = None, api_key: str = API_KEY, hmac_key: str = HMAC_KEY):
        super().__init__(webhook_url)
        self.api_key = api_key
        self.hmac_key = hmac_key
        self.sessions: dict[str, dict] = {}
        self.payments: dict[str, dict] = {}  # pspReference -> {authorised, captured, refunded, cancelled, ...}
        self.notifications: list[dict] = []
        self.executed: list[tuple[str, str, int]] = []
        self._saved: dict[str, tuple[str, int, bytes]] = {}

    # -- HTTP --------------------------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urllib.parse.urlsplit(h.path)
        body = self._body(h)
        if url.path.startswith("/emulator/adyen/"):
            return self._hosted(h, method, url, body)
        try:
            if h.headers.get("X-API-Key") != self.api_key:
                raise AdyenError(401, "000", "HTTP Status Response - Unauthorized", "security")
            try:
                req = json.loads(body or b"{}")
            except ValueError:
                raise AdyenError(400, "702", "Structure of the request is invalid") from None
            key = h.headers.get("Idempotency-Key")
            with self._lock:
                if key:
                    fp = hashlib.sha256(f"{method} {url.path} ".encode() + json.dumps(req, sort_keys=True).encode()).hexdigest()
                    saved = self._saved.get(key)
                    if saved is not None:
                        if saved[0] != fp:
                            raise AdyenError(422, "704", f"request already processed or in progress with key {key}")
                        return self._answer(h, saved[1], saved[2])
                status, out = self._route(url.path, req)
                payload = json.dumps(out).encode()
                if key:
                    self._saved[key] = (fp, status, payload)
        except AdyenError as e:
            status, payload = e.status, json.dumps(e.body).encode()
        self._answer(h, status, payload)

    def _answer(self, h: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        self._send(h, status, payload, "application/json")

    def _route(self, path: str, req: dict) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if parts == ["v72", "sessions"]:
            return 201, self._session(req)
        if len(parts) == 4 and parts[:2] == ["v72", "payments"] and parts[3] in ("captures", "cancels", "refunds"):
            pay = self.payments.get(parts[2])
            if pay is None:
                raise AdyenError(422, "167", "Original pspReference required for this operation")
            if req.get("merchantAccount") != MERCHANT:
                raise AdyenError(403, "901", "Invalid Merchant Account", "security")
            return 201, getattr(self, "_" + parts[3])(pay, req)
        raise AdyenError(404, "000", f"no such endpoint {path}")

    @staticmethod
    def _amount(req: dict) -> tuple[int, str]:
        a = req.get("amount")
        if not isinstance(a, dict) or type(a.get("value")) is not int or a["value"] < 0 or not isinstance(a.get("currency"), str):
            raise AdyenError(422, "137", "Invalid amount specified")
        return a["value"], a["currency"]

    def _session(self, req: dict) -> dict:
        value, currency = self._amount(req)
        for f in ("merchantAccount", "reference", "returnUrl"):
            if not req.get(f):
                raise AdyenError(422, "14_030", f"Required field '{f}' is not provided.")
        sid = "CS" + secrets.token_hex(8).upper()
        manual = (req.get("additionalData") or {}).get("manualCapture") == "true"
        self.sessions[sid] = {"id": sid, "amount": {"value": value, "currency": currency}, "reference": req["reference"],
                              "returnUrl": req["returnUrl"], "manual": manual, "done": False,
                              "merchantAccount": req["merchantAccount"]}
        return {"id": sid, "amount": {"value": value, "currency": currency}, "reference": req["reference"],
                "merchantAccount": req["merchantAccount"], "mode": req.get("mode", "embedded"),
                "returnUrl": req["returnUrl"], "sessionData": secrets.token_hex(16),
                "url": f"{self.url}/emulator/adyen/{sid}"}

    def _captures(self, pay: dict, req: dict) -> dict:
        value, currency = self._amount(req)
        if pay["cancelled"] or pay["captured"] or value > pay["authorised"] or currency != pay["currency"]:
            raise AdyenError(422, "167", "Invalid amount or the payment cannot be captured")
        pay["captured"] = value
        self.executed.append(("capture", pay["psp"], value))
        ref = _psp()
        self._notify("CAPTURE", ref, pay, value, original=pay["psp"])
        return {"merchantAccount": MERCHANT, "paymentPspReference": pay["psp"], "pspReference": ref,
                "reference": req.get("reference", ""), "status": "received", "amount": req["amount"]}

    def _cancels(self, pay: dict, req: dict) -> dict:
        if pay["captured"]:
            raise AdyenError(422, "167", "The payment is captured: cancel is not possible")
        pay["cancelled"] = True
        self.executed.append(("cancel", pay["psp"], 0))
        ref = _psp()
        self._notify("CANCELLATION", ref, pay, pay["authorised"], original=pay["psp"])
        return {"merchantAccount": MERCHANT, "paymentPspReference": pay["psp"], "pspReference": ref,
                "reference": req.get("reference", ""), "status": "received"}

    def _refunds(self, pay: dict, req: dict) -> dict:
        value, _cur = self._amount(req)
        if value <= 0 or value > pay["captured"] - pay["refunded"]:
            raise AdyenError(422, "137", "Invalid amount specified: more than is left to refund")
        pay["refunded"] += value
        self.executed.append(("refund", pay["psp"], value))
        ref = _psp()
        self._notify("REFUND", ref, pay, value, original=pay["psp"])
        return {"merchantAccount": MERCHANT, "paymentPspReference": pay["psp"], "pspReference": ref,
                "reference": req.get("reference", ""), "status": "received", "amount": req["amount"]}

    # -- hosted page stand-in ----------------------------------------------------------------------
    def _hosted(self, h: BaseHTTPRequestHandler, method: str, url, body: bytes) -> None:
        sid = url.path.rsplit("/", 1)[-1]
        with self._lock:
            s = self.sessions.get(sid)
            if s is None:
                return self._page(h, 404, "<h1>Unknown session</h1>")
            if method == "GET" and not s["done"]:
                money = f"{s['amount']['value'] / 100:.2f} {s['amount']['currency']}"
                return self._page(h, 200, f"<h1>Adyen emulator</h1><p>Hold of <b id=amount>{html.escape(money)}</b></p>"
                                  f"<form method=post><input id=card name=card><button id=pay>Pay</button></form>")
            if not s["done"]:
                card = dict(urllib.parse.parse_qsl(body.decode())).get("card", "").replace(" ", "")
                s["done"] = True
                psp = _psp()
                ok = card == CARD_OK
                if ok:
                    self.payments[psp] = {"psp": psp, "authorised": s["amount"]["value"], "currency": s["amount"]["currency"],
                                          "captured": 0, "refunded": 0, "cancelled": False, "reference": s["reference"]}
                self._notify("AUTHORISATION", psp, {"reference": s["reference"], "currency": s["amount"]["currency"]},
                             s["amount"]["value"], success=ok)
            ret = s["returnUrl"]
        self._send(h, 303, headers={"Location": ret})

    def _page(self, h: BaseHTTPRequestHandler, status: int, inner: str) -> None:
        doc = f"<!doctype html><html><body>{inner}</body></html>".encode()
        self._send(h, status, doc, "text/html; charset=utf-8")

    # -- webhooks --------------------------------------------------------------------------------
    def _notify(self, code: str, psp: str, pay: dict, value: int, original: str = "", success: bool = True) -> None:
        item = {"additionalData": {}, "amount": {"currency": pay["currency"], "value": value}, "eventCode": code,
                "eventDate": "2026-01-01T00:00:00+00:00", "merchantAccountCode": MERCHANT,
                "merchantReference": pay["reference"], "originalReference": original, "pspReference": psp,
                "reason": "" if success else "Refused", "success": "true" if success else "false"}
        item["additionalData"]["hmacSignature"] = sign_item(item, self.hmac_key)
        note = {"live": "false", "notificationItems": [{"NotificationRequestItem": item}]}
        self.notifications.append(note)
        self._outbox.put(note)

    def _post_webhook(self, note: dict) -> None:
        # one attempt, no retry: the tests hand emu.notifications to the service themselves
        self._post(json.dumps(note).encode(), {})
