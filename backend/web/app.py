"""The operator's dashboard: server-rendered pages (Jinja2), no JavaScript needed.

  GET  /login, POST /login, POST /logout         operator login (argon2 passwords, rate-limited)
  GET  /sessions, /sessions/{dev}/{seq}          filters, pages; the record, its verification, OCMF, cost lines
  GET  /chargers, POST /chargers/{dev}/stop      state per charger; remote stop (admin)
  GET  /cards, POST /cards/{token}/block         cards, balances, customers; block + differential list (admin)
  GET  /tariffs, POST /tariffs/preview|push      versions held; an OCPI tariff priced by the device engine; push (admin)
  GET  /invoices, /invoices/{number}.pdf|.xml    issued documents (backend/billing renders them)
  POST /invoices/{number}/refund                 a credit note: all, one session, or an amount (admin)
  GET  /anomalies, POST /gaps/{dev}/accept       refused messages, records waiting behind gaps (admin), offline periods
  GET  /offline.csv                              past offline periods
  GET  /analytics, /charts/{name}.svg|.csv       trends, heat map, utilization, revenue, detections
  GET  /audit                                    who did what (admin)

Every POST carries the login's CSRF token (the login form: a double-submit cookie); every action
is written to the audit log with the operator's name and address. Pushing to chargers (stop, card
block, tariff) needs the backend keys and a broker: without them the page says so and nothing is sent.
"""
from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.templating import Jinja2Templates

from backend.db import open_db
from backend.models import AuditEntry, Card, Contract, Customer, Device, Invoice, Session
from backend.web import charts, queries
from backend.web.auth import Accounts, AuthError, Operator, audit, csrf_ok

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
COOKIE, PRE = "evc_login", "evc_pre"
INT64_MAX = (1 << 63) - 1
CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
CHARTS = ("trend-sessions", "trend-energy", "trend-revenue", "heatmap", "utilization", "power", "revenue-contract",
          "revenue-tariff")


class LoginRequired(Exception):
    pass


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def iso(t: int | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def money(minor: int | None, currency: str = "") -> str:
    if minor is None:
        return ""
    sign = "-" if minor < 0 else ""
    return f"{sign}{abs(minor) // 100}.{abs(minor) % 100:02d} {currency}".strip()


def kwh(wh: int | None) -> str:
    return "" if wh is None else f"{wh / 1000:.3f}"


def day_epoch(text: str | None, what: str) -> int | None:
    """A YYYY-MM-DD date (UTC midnight) from a form, or None when empty; Refused when malformed."""
    if not text:
        return None
    try:
        d = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise Refused(400, f"{what}: {text[:20]!r} is not a date (YYYY-MM-DD)") from None
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.timezone.utc).timestamp())


def create_app(db_target: str, broker: str | None = None, keys: str | Path | None = None, prefix: str = "evc",
               max_power_w: int = 22_000, offline_after_s: int = 3600, secure_cookies: bool = False,
               clock: Callable[[], float] = time.time, publish: Callable | None = None,
               max_failures: int = 5, window_s: int = 15 * 60) -> FastAPI:
    """The dashboard on the database db_target. broker + keys (the backend-keys folder): what remote
    stop and card blocking push with (publish: a stand-in for publishing to broker)."""
    sessions = open_db(db_target)
    accounts = Accounts(sessions, clock, max_failures, window_s)
    downlinks, why_not = None, ""
    if keys is not None and Path(keys, "backend.key").is_file() and (broker or publish):
        from backend.downlink import Downlinks  # noqa: PLC0415
        from backend.keys import Keys  # noqa: PLC0415

        downlinks = Downlinks(sessions, Keys(keys), prefix, clock)
        if publish is None:
            from backend.mqtt import publish_all  # noqa: PLC0415

            publish = lambda msgs: publish_all(broker, msgs)  # noqa: E731
    else:
        why_not = ("not sent to chargers: the dashboard runs without " +
                   ("a broker (--broker)" if not (broker or publish) else "the backend keys (--keys)"))
    app = FastAPI(title="EV charging: operator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sessions, app.state.accounts = sessions, accounts

    @app.middleware("http")
    async def _headers(request: Request, call_next):
        # no framing (clickjacking), no scripts at all, forms only to here, nothing cached
        resp = await call_next(request)
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    def ip(request: Request) -> str:
        return request.client.host if request.client else ""

    def current(request: Request) -> Operator:
        op = accounts.operator(request.cookies.get(COOKIE))
        if op is None:
            raise LoginRequired()
        return op

    def page(request: Request, name: str, op: Operator | None, status: int = 200, **ctx) -> HTMLResponse:
        return TEMPLATES.TemplateResponse(request, name, {"op": op, "iso": iso, "money": money, "kwh": kwh, **ctx},
                                          status_code=status)

    def action(request: Request, csrf: str, admin: bool, what: str, target: str) -> Operator:
        """The operator of a POST, after its CSRF token and role are checked (refusals are audited)."""
        op = current(request)
        if not csrf_ok(op, csrf):
            with sessions.begin() as db:
                audit(db, op.name, ip(request), "csrf-refused", target, what, int(clock()))
            raise Refused(403, "the form's security token is missing or stale: reload the page and try again")
        if admin and not op.admin:
            with sessions.begin() as db:
                audit(db, op.name, ip(request), "denied", target, what, int(clock()))
            raise Refused(403, f"{what} needs an admin; you are a {op.role}")
        return op

    def log(request: Request, op: Operator, act: str, target: str, detail: str = "") -> None:
        with sessions.begin() as db:
            audit(db, op.name, ip(request), act, target, detail, int(clock()))

    @app.exception_handler(LoginRequired)
    def _login(request: Request, _exc):
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Refused)
    def _refused(request: Request, exc: Refused):
        op = accounts.operator(request.cookies.get(COOKIE))
        return page(request, "error.html", op, exc.status, message=exc.message)

    # -- login ----------------------------------------------------------------------------------

    @app.get("/login", response_class=HTMLResponse)
    def login_form(request: Request):
        pre = secrets.token_urlsafe(24)
        resp = page(request, "login.html", None, pre=pre, error=None)
        resp.set_cookie(PRE, pre, httponly=True, samesite="strict", secure=secure_cookies, max_age=3600)
        return resp

    @app.post("/login")
    def login(request: Request, user: str = Form(""), password: str = Form(""), csrf: str = Form("")):
        pre = request.cookies.get(PRE)
        if not pre or not secrets.compare_digest(pre.encode(), csrf.encode()):
            with sessions.begin() as db:
                audit(db, user, ip(request), "csrf-refused", user, "login", int(clock()))
            raise Refused(403, "the login form's security token is missing or stale: reload the page")
        try:
            token = accounts.login(user[:200], password[:1000], ip(request))
        except AuthError as exc:
            new = secrets.token_urlsafe(24)
            resp = page(request, "login.html", None, 401, pre=new, error=str(exc))
            resp.set_cookie(PRE, new, httponly=True, samesite="strict", secure=secure_cookies, max_age=3600)
            return resp
        resp = RedirectResponse("/sessions", status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure_cookies)
        resp.delete_cookie(PRE)
        return resp

    @app.post("/logout")
    def logout(request: Request, csrf: str = Form("")):
        action(request, csrf, False, "logout", "")
        accounts.logout(request.cookies[COOKIE], ip(request))
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/")
    def home(request: Request):
        current(request)
        return RedirectResponse("/sessions", status_code=303)

    # -- sessions -------------------------------------------------------------------------------

    @app.get("/sessions", response_class=HTMLResponse)
    def sessions_list(request: Request, dev: str = "", token: str = "", customer: str = "", contract: str = "",
                      start: str = "", end: str = "", flag: str = "", page_no: int = 1):
        op = current(request)
        if flag and flag not in queries.FLAGS:
            raise Refused(400, f"flag must be one of {', '.join(queries.FLAGS)}")
        e = day_epoch(end, "to")
        f = queries.SessionFilter(dev[:32] or None, token[:64] or None, customer[:64] or None, contract[:64] or None,
                                  day_epoch(start, "from"), None if e is None else e + queries.DAY, flag or None)
        if page_no < 1 or page_no > 100_000:
            raise Refused(400, "page out of range")
        with sessions() as db:
            rows, more = queries.sessions_page(db, f, page_no)
            devs = list(db.scalars(select(Device.id).order_by(Device.id)))
        args = {"dev": dev, "token": token, "customer": customer, "contract": contract, "start": start, "end": end,
                "flag": flag}
        return page(request, "sessions.html", op, rows=rows, more=more, page_no=page_no, args=args, devs=devs,
                    flags=queries.FLAGS)

    @app.get("/sessions/{dev}/{seq}", response_class=HTMLResponse)
    def session_detail(request: Request, dev: str, seq: int):
        op = current(request)
        if not 1 <= seq <= INT64_MAX:
            raise Refused(404, f"no session {dev[:32]}:{seq}")
        with sessions() as db:
            s = db.get(Session, (dev, seq))
            if s is None:
                raise Refused(404, f"no session {dev}:{seq}")
            device = db.get(Device, dev)
            before = db.get(Session, (dev, seq - 1))
            invoice = queries.invoice_of(db, dev, seq)
        verdict = verification(s, device.pubkey, before)
        record = json.loads(s.payload)
        lines = (record.get("cost") or {}).get("lines") or []
        keys = sorted({k for line in lines if isinstance(line, dict) for k in line})
        return page(request, "session.html", op, s=s, verdict=verdict, record=json.dumps(record, indent=1),
                    lines=lines, line_keys=keys, invoice=invoice)

    # -- chargers -------------------------------------------------------------------------------

    @app.get("/chargers", response_class=HTMLResponse)
    def chargers(request: Request, done: str = ""):
        op = current(request)
        with sessions() as db:
            rows = [(r, queries.live(r.status)) for r in queries.chargers(db)]
        return page(request, "chargers.html", op, rows=rows, push=downlinks is not None, why_not=why_not, done=done)

    @app.post("/chargers/{dev}/stop")
    def stop(request: Request, dev: str, csrf: str = Form("")):
        op = action(request, csrf, True, "remote stop", dev)
        if downlinks is None:
            log(request, op, "stop-refused", dev, why_not)
            raise Refused(409, f"remote stop {why_not}")
        try:
            downlinks.command(dev, "stop", publish)
        except (ValueError, OSError, ConnectionError) as exc:
            log(request, op, "stop-failed", dev, str(exc))
            raise Refused(502, f"remote stop of {dev} not sent: {exc}") from None
        log(request, op, "stop", dev)
        return RedirectResponse(f"/chargers?done=stop+sent+to+{dev}", status_code=303)

    # -- cards and customers --------------------------------------------------------------------

    @app.get("/cards", response_class=HTMLResponse)
    def cards(request: Request, done: str = ""):
        op = current(request)
        with sessions() as db:
            rows = queries.cards(db)
            customers = db.execute(select(Customer.id, Customer.kind, Customer.name, Customer.currency)
                                   .order_by(Customer.id)).all()
            contracts = db.execute(select(Contract.id, Contract.customer_id).order_by(Contract.id)).all()
        return page(request, "cards.html", op, rows=rows, customers=customers, contracts=contracts, done=done,
                    push=downlinks is not None, why_not=why_not)

    @app.post("/cards/{token}/block")
    def block(request: Request, token: str, csrf: str = Form("")):
        op = action(request, csrf, True, "blocking a card", token)
        with sessions() as db:
            card = db.get(Card, token)
        if card is None:
            raise Refused(404, f"no card {token[:64]}")
        if downlinks is None:
            with sessions.begin() as db:
                row = db.get(Card, token, with_for_update=True)
                row.status, row.updated_at = "blocked", int(clock())
                audit(db, op.name, ip(request), "card-block", token, why_not, int(clock()))
            return RedirectResponse(f"/cards?done=card+blocked+({why_not.replace(' ', '+')})", status_code=303)
        from backend.cards import CardRow  # noqa: PLC0415

        row = CardRow(token, "blocked", card.exp or 0, card.contract, card.balance)
        try:
            msgs = downlinks.authlist(None, [row], True, publish)
        except (ValueError, OSError, ConnectionError) as exc:
            log(request, op, "card-block-failed", token, str(exc))
            raise Refused(502, f"card not blocked (nothing changed): {exc}") from None
        log(request, op, "card-block", token, f"differential list in {len(msgs)} messages")
        return RedirectResponse("/cards?done=card+blocked+and+pushed+to+the+chargers", status_code=303)

    # -- invoices -------------------------------------------------------------------------------

    @app.get("/invoices", response_class=HTMLResponse)
    def invoices(request: Request, done: str = ""):
        op = current(request)
        with sessions() as db:
            rows = queries.invoices(db)
        return page(request, "invoices.html", op, rows=rows, done=done)

    @app.get("/invoices/{number}.{fmt}")
    def invoice_file(request: Request, number: str, fmt: str):
        op = current(request)
        if fmt not in ("pdf", "xml"):
            raise Refused(404, "documents come as .pdf or .xml")
        from backend.billing import doc_cli  # noqa: PLC0415

        with sessions() as db:
            if db.get(Invoice, number[:32]) is None:
                raise Refused(404, f"no document {number[:32]}")
        try:
            _doc, data, _what = doc_cli.render(sessions, number, fmt)
        except ValueError as exc:  # a receipt as XML, a document that fails its checks
            raise Refused(409, str(exc)) from None
        log(request, op, "download", number, fmt)
        return Response(data, media_type="application/pdf" if fmt == "pdf" else "application/xml",
                        headers={"Content-Disposition": f'attachment; filename="{number}.{fmt}"'})

    @app.post("/invoices/{number}/refund")
    def refund(request: Request, number: str, session: str = Form(""), amount: str = Form(""), note: str = Form(""),
               csrf: str = Form("")):
        op = action(request, csrf, True, "a refund", number[:32])
        from backend.billing.refunds import Refunds, parse_session  # noqa: PLC0415

        try:
            only = [parse_session(session.strip())] if session.strip() else None
            if amount.strip() and not amount.strip().isdigit():
                raise ValueError(f"amount {amount[:20]!r}: a positive whole number of minor units")
            credit = Refunds(sessions, clock).refund(number[:32], only, int(amount) if amount.strip() else None,
                                                     note.strip()[:200])
        except ValueError as exc:  # BillingError: unknown document, nothing left to credit, ...
            log(request, op, "refund-refused", number[:32], str(exc)[:300])
            raise Refused(400, f"no refund: {exc}") from None
        log(request, op, "refund", number[:32], f"{credit}: {session or 'all'} {amount or 'all'} {note[:100]}")
        return RedirectResponse(f"/invoices?done=credit+note+{credit}+issued", status_code=303)

    # -- anomalies and gaps ---------------------------------------------------------------------

    def min_offline(hours: str) -> int:
        if not hours.strip():
            return offline_after_s
        if not hours.strip().isdigit() or not 0 < int(hours) <= 100_000:
            raise Refused(400, "offline for at least: a whole number of hours from 1")
        return int(hours) * 3600

    @app.get("/anomalies", response_class=HTMLResponse)
    def anomalies(request: Request, done: str = "", min_h: str = "", start: str = "", end: str = ""):
        op = current(request)
        longer, (s, e) = min_offline(min_h), window(start, end)
        with sessions() as db:
            rows, gaps = queries.anomalies(db), queries.gaps(db)
            offline = queries.offline(db, int(clock()), offline_after_s)
            periods = queries.offline_periods(db, int(clock()), longer, s, e, limit=200)
        qs = request.url.query
        return page(request, "anomalies.html", op, rows=rows, gaps=gaps, offline=offline, done=done, periods=periods,
                    min_h=longer // 3600, start=start, end=end, qs=qs)

    @app.get("/offline.csv")
    def offline_csv(request: Request, min_h: str = "", start: str = "", end: str = ""):
        current(request)
        longer, (s, e) = min_offline(min_h), window(start, end)
        with sessions() as db:
            rows = [(r.dev, iso_s(r.since), iso_s(r.until), r.seconds)
                    for r in queries.offline_periods(db, int(clock()), longer, s, e)]
        return PlainTextResponse(charts.to_csv(["charger", "offline_from", "back_online", "seconds"], rows),
                                 media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="offline.csv"'})

    @app.post("/gaps/{dev}/accept")
    def accept_gap(request: Request, dev: str, through: int = Form(...), reason: str = Form(""), csrf: str = Form("")):
        op = action(request, csrf, True, "accepting a gap", dev)
        if not reason.strip():
            raise Refused(400, "say why the records are lost for good (the reason is kept)")
        if not 1 <= through <= INT64_MAX:
            raise Refused(400, "through: a seq from 1")
        from backend.ingest import Ingestor  # noqa: PLC0415

        try:
            head = Ingestor(sessions).accept_gap(dev, through, f"{reason.strip()[:200]} (by {op.name})")
        except ValueError as exc:
            log(request, op, "gap-accept-failed", dev, str(exc))
            raise Refused(409, str(exc)) from None
        log(request, op, "gap-accept", dev, f"through {through}: {reason[:200]}")
        return RedirectResponse(f"/anomalies?done={dev}+head+now+{head}", status_code=303)

    # -- tariffs --------------------------------------------------------------------------------

    def tariffs_page(request: Request, op: Operator, status: int = 200, **ctx) -> HTMLResponse:
        from backend.web import tariffs as tf  # noqa: PLC0415

        with sessions() as db:
            rows = tf.holdings(db)
        ctx = {"start": "2026-03-02T18:00", "minutes": 90, "kwh": "20", "tz": "UTC", "result": None, "ocpi": "",
               "error": None, "done": "", **ctx}
        return page(request, "tariffs.html", op, status, rows=rows, push=downlinks is not None, why_not=why_not, **ctx)

    @app.get("/tariffs", response_class=HTMLResponse)
    def tariffs(request: Request, done: str = ""):
        return tariffs_page(request, current(request), done=done)

    @app.post("/tariffs/preview", response_class=HTMLResponse)
    def tariff_preview(request: Request, tariff: UploadFile = File(...), start: str = Form(""), minutes: int = Form(90),
                       kwh: str = Form("20"), tz: str = Form(""), csrf: str = Form("")):
        from backend.web import tariffs as tf  # noqa: PLC0415

        op = action(request, csrf, False, "tariff preview", tariff.filename or "")
        form = {"start": start, "minutes": minutes, "kwh": kwh, "tz": tz}
        data = tariff.file.read(tf.MAX_TARIFF_BYTES + 1)
        try:
            doc = tf.parse(data)
            result = tf.preview(doc, tf.example_cdr(start, minutes, kwh), tz.strip()[:64])
        except tf.TariffInputError as exc:
            return tariffs_page(request, op, 400, error=str(exc), **form)
        log(request, op, "tariff-preview", str(doc.get("id", ""))[:64], f"{kwh} kWh, {minutes} min from {start}")
        return tariffs_page(request, op, result=result, ocpi=json.dumps(doc, indent=1), **form)

    @app.post("/tariffs/push")
    def tariff_push(request: Request, ocpi: str = Form(...), device: str = Form(""), contract: str = Form(""),
                    rule: str = Form("UTC0"), csrf: str = Form("")):
        from backend.web import tariffs as tf  # noqa: PLC0415

        op = action(request, csrf, True, "pushing a tariff", device or "all")
        try:
            doc = tf.parse(ocpi.encode())
        except tf.TariffInputError as exc:
            raise Refused(400, str(exc)) from None
        if downlinks is None:
            log(request, op, "tariff-push-refused", device or "all", why_not)
            raise Refused(409, f"tariff {why_not}")
        from backend.commands import compile_tariff  # noqa: PLC0415

        try:
            msgs = downlinks.tariff(device or None, doc, contract.strip() or None, compile_tariff(rule.strip() or "UTC0"),
                                    publish)
        except (ValueError, OSError, ConnectionError) as exc:
            log(request, op, "tariff-push-failed", device or "all", str(exc)[:300])
            raise Refused(502 if isinstance(exc, (OSError, ConnectionError)) else 400,
                          f"tariff not pushed (nothing changed): {exc}") from None
        log(request, op, "tariff-push", device or "all", f"{doc.get('id', '')} contract {contract or '(default)'}; "
                                                        f"{len(msgs)} documents")
        return RedirectResponse(f"/tariffs?done=tariff+pushed+to+{len(msgs)}+chargers", status_code=303)

    # -- analytics ------------------------------------------------------------------------------

    def window(start: str, end: str) -> tuple[int | None, int | None]:
        e = day_epoch(end, "to")
        return day_epoch(start, "from"), None if e is None else e + queries.DAY

    @app.get("/analytics", response_class=HTMLResponse)
    def analytics(request: Request, period: str = "day", start: str = "", end: str = ""):
        op = current(request)
        if period not in queries.PERIODS:
            raise Refused(400, f"period must be one of {', '.join(queries.PERIODS)}")
        s, e = window(start, end)
        with sessions() as db:
            avg = queries.averages(db, s, e)
            found = {"energy above the charger's power": queries.overpowered(db, max_power_w),
                     "void or meter fault": queries.faulty(db), "time not synchronized": queries.unsynced(db)}
            concurrent = queries.concurrent_cards(db)
        qs = request.url.query
        return page(request, "analytics.html", op, period=period, start=start, end=end, qs=qs, charts=CHARTS,
                    avg=avg, found=found, concurrent=concurrent, max_power_w=max_power_w)

    @app.get("/charts/{name}.{fmt}")
    def chart(request: Request, name: str, fmt: str, period: str = "day", start: str = "", end: str = ""):
        current(request)
        if name not in CHARTS or fmt not in ("svg", "csv"):
            raise Refused(404, "no such chart")
        if period not in queries.PERIODS:
            raise Refused(400, f"period must be one of {', '.join(queries.PERIODS)}")
        s, e = window(start, end)
        header, rows, draw = chart_data(name, period, s, e)
        if fmt == "csv":
            return PlainTextResponse(charts.to_csv(header, rows), media_type="text/csv",
                                     headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
        return Response(draw(), media_type="image/svg+xml")

    def chart_data(name: str, period: str, s: int | None, e: int | None):
        with sessions() as db:
            if name.startswith("trend-"):
                rows = [(label(period, r.bucket), r.currency, r.sessions, r.energy_wh, r.revenue)
                        for r in queries.trend(db, period, s, e)]
                col, unit = {"trend-sessions": (2, "sessions"), "trend-energy": (3, "Wh"),
                             "trend-revenue": (4, "minor units")}[name]
                multi = len({r[1] for r in rows}) > 1
                labels = [f"{r[0]} {r[1]}" if multi else r[0] for r in rows]
                return (["period", "currency", "sessions", "energy_wh", "revenue"], rows,
                        lambda: charts.bars(labels, [r[col] for r in rows], f"{name[6:]} per {period}", unit))
            if name == "heatmap":
                grid = queries.heatmap(db, s, e)
                rows = [(charts.WEEKDAYS[d], *grid[d]) for d in range(7)]
                return (["weekday"] + [f"{h:02d}" for h in range(24)], rows,
                        lambda: charts.heat(grid, "sessions started per weekday and hour"))
            if name in ("utilization", "power"):
                lo = s if s is not None else (db.scalar(select(Session.start_t).order_by(Session.start_t).limit(1)) or 0)
                hi = e if e is not None else max(lo + 1, int(clock()))
                found = queries.usage(db, lo, hi)
            if name == "utilization":
                span = hi - lo
                rows = [(r.id, r.sessions, r.plugged_s, r.charging_s, r.idle_s, r.idle_sessions, r.energy_wh,
                         r.plugged_s * 1000 // span, r.charging_s * 1000 // span, r.idle_s * 1000 // span)
                        for r in found]
                return (["charger", "sessions", "plugged_s", "charging_s", "idle_s", "idle_sessions", "energy_wh",
                         "plugged_permille", "charging_permille", "idle_permille"], rows,
                        lambda: charts.stacked([r[0] for r in rows], [("charging", [r[8] / 10 for r in rows]),
                                                                      ("plugged, idle", [r[9] / 10 for r in rows])],
                                               "share of time charging and plugged in idle", "% of the window"))
            if name == "power":
                rows = [(r.id, r.sessions, r.energy_wh, r.charging_s, r.avg_w, r.max_w) for r in found]
                return (["charger", "sessions", "energy_wh", "charging_s", "avg_w", "max_w"], rows,
                        lambda: charts.grouped([r[0] for r in rows], [("average", [r[4] for r in rows]),
                                                                      ("highest session", [r[5] for r in rows])],
                                               "power while charging", "W"))
            what = name.split("-", 1)[1]
            rows = [tuple(r) for r in queries.revenue_by(db, what, s, e)]
            return ([what, "currency", "sessions", "energy_wh", "revenue"], rows,
                    lambda: charts.bars([f"{r[0] or '(none)'} {r[1]}" for r in rows], [r[4] for r in rows],
                                        f"revenue per {what}", "minor units"))

    # -- audit ----------------------------------------------------------------------------------

    @app.get("/audit", response_class=HTMLResponse)
    def audit_log(request: Request):
        op = current(request)
        if not op.admin:
            log(request, op, "denied", "audit", "reading the audit log")
            raise Refused(403, "the audit log is for admins")
        with sessions() as db:
            rows = db.execute(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(500)).scalars().all()
        return page(request, "audit.html", op, rows=rows)

    return app


def iso_s(t: int | None) -> str:
    return "" if t is None else dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def label(period: str, b) -> str:
    return b if period == "month" else dt.datetime.fromtimestamp(int(b), dt.timezone.utc).strftime("%Y-%m-%d")


def verification(s: Session, pubkey: bytes, before: Session | None) -> dict:
    """The record checked again from its raw JWS with the device's registered key, and its chain link."""
    from evc.verify import VerifyError, verify_record  # noqa: PLC0415

    try:
        rec = verify_record(s.raw, pubkey, kid=s.dev)
    except VerifyError as exc:
        return {"ok": False, "text": f"does NOT verify: {exc}"}
    if rec.digest != s.hash:
        return {"ok": False, "text": "signature holds but the stored hash differs from the payload's"}
    prev = rec.fields.get("prev")
    if s.seq == 1:
        chain = "first record of the device"
    elif before is None:
        chain = f"predecessor {s.seq - 1} is not a stored session (an anomaly or lost)"
    else:
        chain = "chained to record %d" % before.seq if before.hash == prev else "prev does NOT match record %d" % before.seq
    return {"ok": "NOT" not in chain, "text": f"signature verified (ES256, {s.dev}'s registered key); {chain}",
            "hash": rec.digest}
