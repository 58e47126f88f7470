"""The driver's payment page (server-rendered, works on a phone without JavaScript), as an app
factory an operator dashboard can mount (`create_app(service)`; `python -m backend pay serve`
mounts it at /pay, the path the chargers' pay_url names).

  GET  /{dev}/{code}        the charger, its ad-hoc price and the hold; a button to pay
  POST /{dev}/{code}        the hold at the gateway -> the gateway's hosted page (no card data here)
  GET  /p/{id}              progress: waiting for the card, starting, charging, the total, the receipt
  GET  /p/{id}/state        the same as JSON
  GET  /p/{id}/receipt.pdf  the receipt with the session's transparency data
  POST /webhook             the gateway's signed events
"""
from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.templating import Jinja2Templates

from backend.payments.gateway import GatewayError, WebhookError
from backend.payments.service import PaymentError, PaymentService

log = logging.getLogger("backend.payments.web")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
FINAL = ("captured", "released", "failed")
STEPS = {"new": "Waiting for your card's authorization", "held": "Card authorized",
         "commanded": "Card authorized: the charger is starting", "started": "Charging",
         "captured": "Finished: paid", "released": "Not charged: the hold on your card is released",
         "failed": "The payment did not go through"}


def money(minor: int | None, currency: str) -> str:
    if minor is None:
        return ""
    return f"{minor // 100}.{minor % 100:02d} {currency}"


def create_app(service: PaymentService, title: str = "Pay to charge") -> FastAPI:
    app = FastAPI(title=title, docs_url=None, redoc_url=None, openapi_url=None)

    def page(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, {"title": title, "money": money, **ctx}, status_code=status)

    def view(pid: str) -> dict | None:
        p = service.payment(pid)
        if p is None:
            return None
        s = service.session_of(p) if p.state == "captured" or p.seq is not None else None
        live = service.live.get(p.dev, {}) if p.state == "started" else {}
        return {"id": p.id, "dev": p.dev, "state": p.state, "step": STEPS.get(p.state, p.state), "detail": p.detail,
                "currency": p.currency, "held": p.amount_held, "captured": p.captured, "refunded": p.refunded,
                "final": p.state in FINAL, "wh": s.energy_wh if s else live.get("wh"),
                "cost": s.cost_incl if s else live.get("cost"), "seq": p.seq,
                "session": s, "receipt": s is not None and p.state == "captured"}

    @app.get("/p/{pid}", response_class=HTMLResponse, name="progress")
    def progress(request: Request, pid: str):
        v = view(pid)
        if v is None:
            return page(request, "error.html", 404, message="There is no such payment.")
        return page(request, "progress.html", v=v)

    @app.get("/p/{pid}/state")
    def state(pid: str):
        v = view(pid)
        if v is None:
            return JSONResponse({"error": "no such payment"}, 404)
        s = v.pop("session")
        if s is not None:
            v["record"] = {"dev": s.dev, "seq": s.seq, "hash": s.hash, "energy_wh": s.energy_wh, "incl": s.cost_incl}
        return v

    @app.get("/p/{pid}/receipt.pdf", name="receipt")
    def receipt(pid: str):
        """The session's receipt: the billing document of the receipt series that bills it, issued
        on the first request (Runner.receipt_for), the same one the operator's books and the
        period's billing run know."""
        from backend.billing import doc_cli
        from backend.billing.pdf import RenderError
        from backend.billing.runs import Runner
        from backend.billing.terms import BillingError

        p = service.payment(pid)
        if p is None or p.state != "captured" or p.seq is None:
            return JSONResponse({"error": "no receipt for this payment (yet)"}, 404)
        try:
            number = Runner(service.sessions).receipt_for(p.dev, p.seq)
            if number is None:
                return JSONResponse({"error": "nothing was charged for this payment's session"}, 404)
            _doc, pdf, _what = doc_cli.render(service.sessions, number, "pdf")
        except BillingError as e:
            return JSONResponse({"error": str(e)}, 503)
        except RenderError as e:
            return JSONResponse({"error": str(e)}, 503)
        return Response(pdf, media_type="application/pdf",
                        headers={"Content-Disposition": f'inline; filename="{number}.pdf"'})

    @app.post("/webhook")
    async def webhook(request: Request):
        body = await request.body()
        try:
            evt = await run_in_threadpool(service.on_webhook, body, dict(request.headers))
        except WebhookError as e:
            log.warning("webhook refused: %s", e)
            return JSONResponse({"error": str(e)}, 400)
        except Exception as e:  # noqa: BLE001 - the broker or the database away: the gateway delivers again
            log.exception("webhook not handled")
            return JSONResponse({"error": f"not handled: {type(e).__name__}"}, 503)
        return {"received": True, "kind": evt.kind}

    @app.get("/{dev}/{code}", response_class=HTMLResponse, name="offer")
    def offer(request: Request, dev: str, code: str):
        try:
            o = service.offer(dev, code)
        except PaymentError as e:
            return page(request, "error.html", 404, message=str(e))
        return page(request, "offer.html", o=o)

    @app.post("/{dev}/{code}")
    def pay(request: Request, dev: str, code: str):
        try:
            p, url, secret = service.begin(dev, code, lambda pid: str(request.url_for("progress", pid=pid)))
        except PaymentError as e:
            return page(request, "error.html", 409, message=str(e))
        except GatewayError as e:
            log.error("hold not made: %s", e)
            return page(request, "error.html", 502, message="The payment service is not available: try again.")
        if url:
            return RedirectResponse(url, 303)
        # no hosted page: the gateway's own element takes the card in the browser (Stripe.js)
        return page(request, "element.html", p=p, client_secret=secret,
                    publishable_key=getattr(service.gateway, "publishable_key", None),
                    return_url=str(request.url_for("progress", pid=p.id)))

    return app
