"""The ad-hoc payment service: from a driver's payment link to the captured total.

  offer(dev, code)       the charger, its price and the hold, if the code is the one the charger
                         shows now (its retained status: on_status)
  begin(dev, code, ...)  a payment row (state new) and the gateway's hold; the driver authorizes it
                         on the gateway's page
  on_webhook(...)        the gateway's signed word: hold in place -> a signed start command on
                         evc/<dev>/cmd with the hold, the code and the payment's reference (state
                         commanded); the device answers with an event (on_event): started, or refused
  sweep()                settles: the session's signed record stored (its token is the payment's
                         reference) -> capture of exactly cost.incl, never more than the hold, with
                         (dev, seq) as the idempotency key; no start by the deadline, or a refusal
                         -> release of the hold
  refund(id, amount)     to the card, in part or in full (billing's refunds call it for ad-hoc sessions)

Every gateway call that moves money is made after the intent is on the database and with a key
derived from it, so a call repeated after a crash moves the money once. States: new, held,
commanded, started, captured, released, failed.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from backend.downlink import CMD_TTL_S, Downlinks, Publish
from backend.models import Device, Payment, PaymentCode, PaymentRefund, Session, TariffSource
from backend.payments.gateway import Gateway, GatewayError, GatewayEvent, GatewayUnavailable

log = logging.getLogger("backend.payments")

CODE = re.compile(r"^[A-Z2-7]{8}$")  # firmware/app/adhoc.py
DEV = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
OPEN = ("new", "held", "commanded", "started")
REFUSALS = ("refused", "rejected")  # the device's events for a start that did not happen


class PaymentError(ValueError):
    """What the driver is told: the link is stale, the charger busy, the amount wrong, ..."""


@dataclass(frozen=True)
class Offer:
    dev: str
    code: str
    currency: str
    hold: int
    prices: list[str]  # the ad-hoc price, one line per component, as the page shows it
    state: str  # the charger's state from its status


@dataclass(frozen=True)
class Settings:
    hold: int = 5000  # minor units held on the card: the session's cost cap
    currency: str = "EUR"
    start_deadline_s: int = CMD_TTL_S + 60  # no start by then: released
    new_ttl_s: int = 3600  # a hold the driver never authorized is given up after this
    code_max_age_s: int = 86400  # a code older than this (no status since) is not accepted


class PaymentService:
    def __init__(self, sessions: sessionmaker, gateway: Gateway, downlinks: Downlinks, publish: Publish,
                 settings: Settings = Settings(), clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.gateway = gateway
        self.downlinks = downlinks
        self.publish = publish
        self.settings = settings
        self.clock = clock
        self.live: dict[str, dict] = {}  # dev -> its last status (progress on the driver's page)
        self._settle_lock = threading.Lock()

    def _now(self) -> int:
        return int(self.clock())

    # -- what the chargers say ---------------------------------------------------------------------
    def on_status(self, dev: str, doc: dict) -> None:
        """A charger's retained status: its current payment code ("pay") while idle."""
        if not DEV.match(dev) or not isinstance(doc, dict):
            return
        self.live[dev] = {k: doc[k] for k in ("state", "wh", "cost", "since", "online") if k in doc}
        code = doc.get("pay")
        if isinstance(code, str) and CODE.match(code):
            with self.sessions.begin() as db:
                db.merge(PaymentCode(dev=dev, code=code, seen_at=self._now()))

    def on_event(self, dev: str, doc: dict) -> None:
        """A charger's event: `started` or a refusal naming a payment's reference (the token)."""
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str):
            return
        kind = doc.get("evt")
        if kind not in ("started", *REFUSALS):
            return
        with self.sessions.begin() as db:
            p = db.get(Payment, doc["token"], with_for_update=True)
            if p is None or p.dev != dev or p.state not in ("held", "commanded"):
                return
            if kind == "started":
                p.state, p.updated_at = "started", self._now()
                return
            p.detail = f"start refused: {str(doc.get('reason'))[:64]}"
        log.info("payment %s: %s", doc["token"], p.detail)
        self._release(p.id)

    # -- the driver's page -------------------------------------------------------------------------
    def offer(self, dev: str, code: str) -> Offer:
        if not DEV.match(dev or "") or not CODE.match(code or ""):
            raise PaymentError("This payment link is not valid: scan the code on the charger again.")
        with self.sessions() as db:
            if db.get(Device, dev) is None:
                raise PaymentError(f"There is no charger {dev}.")
            current = db.get(PaymentCode, dev)
            if current is None or current.code != code or self._now() - current.seen_at > self.settings.code_max_age_s:
                raise PaymentError("This payment link has expired: scan the code the charger shows now.")
            # one-time: a code whose hold was authorized is used up (only abandoned or declined holds are not)
            busy = db.scalar(select(Payment.id).where(Payment.dev == dev, Payment.code == code,
                                                      Payment.state.notin_(("new", "failed"))).limit(1))
            if busy is not None:
                raise PaymentError("This code has been paid already: scan the code the charger shows now.")
            tariff = db.get(TariffSource, (dev, ""))
            prices = price_lines(json.loads(tariff.ocpi)) if tariff is not None else []
        return Offer(dev, code, self.settings.currency, self.settings.hold, prices,
                     str(self.live.get(dev, {}).get("state", "unknown")))

    def begin(self, dev: str, code: str, return_url: Callable[[str], str]) -> tuple[Payment, str | None, str | None]:
        """A new payment and its hold at the gateway: (payment, redirect url, client secret)."""
        offer = self.offer(dev, code)
        pid = secrets.token_hex(16)  # the reference: the session's token on its record
        now = self._now()
        with self.sessions.begin() as db:
            p = Payment(id=pid, gateway=self.gateway.name, hold_id=None, dev=dev, code=code, currency=offer.currency,
                        amount_held=offer.hold, captured=0, refunded=0, state="new", seq=None, detail="",
                        created_at=now, updated_at=now, deadline_at=now + self.settings.new_ttl_s)
            db.add(p)
        hold = self.gateway.hold(pid, offer.hold, offer.currency, f"Charging at {dev}", return_url(pid))
        with self.sessions.begin() as db:
            p = db.get(Payment, pid)
            p.hold_id, p.updated_at = hold.hold_id, self._now()
        return p, hold.redirect_url, hold.client_secret

    def payment(self, pid: str) -> Payment | None:
        if not re.fullmatch(r"[0-9a-f]{32}", pid or ""):
            return None
        with self.sessions() as db:
            return db.get(Payment, pid)

    def session_of(self, p: Payment) -> Session | None:
        if p.seq is None:
            return None
        with self.sessions() as db:
            return db.get(Session, (p.dev, p.seq))

    # -- the gateway's word --------------------------------------------------------------------------
    def on_webhook(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Verify (WebhookError when not genuine) and act on one gateway event."""
        evt = self.gateway.parse_webhook(body, headers)
        if evt.kind == "held":
            self._held(evt)
        elif evt.kind == "failed":
            with self.sessions.begin() as db:
                p = self._by_hold(db, evt.hold_id, evt.ref)
                if p is not None and p.state == "new":
                    p.state, p.detail, p.updated_at = "failed", "card not authorized", self._now()
        return evt

    @staticmethod
    def _by_hold(db, hold_id: str, ref: str = "") -> Payment | None:
        p = db.scalar(select(Payment).where(Payment.hold_id == hold_id).with_for_update())
        if p is None and ref:  # a gateway that names the authorization only now (Adyen: its pspReference)
            p = db.get(Payment, ref, with_for_update=True)
        return p

    def _held(self, evt: GatewayEvent) -> None:
        with self.sessions.begin() as db:
            p = self._by_hold(db, evt.hold_id, evt.ref)
            if p is None or p.state != "new":
                return  # unknown, or a repeated delivery
            p.hold_id = evt.hold_id
            ok = evt.amount == p.amount_held and evt.currency == p.currency
            if not ok:  # nothing starts on a hold we did not ask for
                p.detail = f"hold of {evt.amount} {evt.currency} does not match {p.amount_held} {p.currency}"
            p.state = "commanded" if ok else "held"
            p.deadline_at = self._now() + self.settings.start_deadline_s
            p.updated_at = self._now()
            pid, dev, code, hold, currency = p.id, p.dev, p.code, p.amount_held, p.currency
        if not ok:
            self._release(pid)
            return
        try:
            self.downlinks.command(dev, "start", self.publish, hold=hold, code=code, currency=currency, ref=pid)
        except Exception:
            # not sent: back to new, and the webhook answers an error so that the gateway delivers again
            with self.sessions.begin() as db:
                db.get(Payment, pid, with_for_update=True).state = "new"
            raise
        log.info("payment %s: hold of %d in place; start sent to %s", pid, evt.amount, dev)

    # -- settling ------------------------------------------------------------------------------------
    def sweep(self) -> int:
        """Capture what has a stored record, release what never started; returns how many settled."""
        done = 0
        with self._settle_lock:
            with self.sessions() as db:
                open_ = list(db.scalars(select(Payment).where(Payment.state.in_(OPEN))))
            for p in open_:
                try:
                    done += self._settle(p)
                except GatewayUnavailable as e:  # the next sweep repeats it with the same key
                    log.warning("payment %s: gateway unavailable (%s); retried on the next sweep", p.id, e)
                except GatewayError as e:
                    log.error("payment %s: %s", p.id, e)
                    with self.sessions.begin() as db:
                        row = db.get(Payment, p.id)
                        row.detail = str(e)[:255]
        return done

    def _settle(self, p: Payment) -> int:
        if p.state in ("commanded", "started"):
            with self.sessions() as db:
                s = db.scalar(select(Session).where(Session.dev == p.dev, Session.token == p.id,
                                                    Session.auth == "adhoc").limit(1))
            if s is not None:
                return self.capture(p.id, s.seq, s.cost_incl)
        if p.state != "started" and self._now() >= p.deadline_at:
            if p.state == "new":  # never authorized by the driver: the gateway's intent is given up
                if p.hold_id is not None:
                    self.gateway.release(p.hold_id, f"release:{p.id}")
                with self.sessions.begin() as db:
                    row = db.get(Payment, p.id, with_for_update=True)
                    row.state, row.detail, row.updated_at = "failed", "not authorized in time", self._now()
                return 1
            self._release(p.id)
            return 1
        return 0

    def capture(self, pid: str, seq: int, total: int) -> int:
        """Capture the signed total of record (dev, seq), never more than the hold."""
        with self.sessions.begin() as db:
            p = db.get(Payment, pid, with_for_update=True)
            if p.state not in ("commanded", "started", "held"):
                return 0
            p.seq = seq  # first on the database: a crash after the gateway acted retries with the same key
            dev, hold_id, held, currency = p.dev, p.hold_id, p.amount_held, p.currency
        amount = max(0, min(total, held))
        if amount == 0:  # a void session: nothing to take
            self.gateway.release(hold_id, f"release:{pid}")
            captured, state = 0, "released"
        else:
            captured = self.gateway.capture(hold_id, amount, currency, f"capture:{dev}:{seq}")
            state = "captured"
        with self.sessions.begin() as db:
            p = db.get(Payment, pid, with_for_update=True)
            p.captured, p.state, p.updated_at = captured, state, self._now()
            if total > held:
                p.detail = f"record total {total} above the hold {held}: {held} captured"
        log.info("payment %s: %s %d for %s #%d", pid, state, captured, dev, seq)
        return 1

    def _release(self, pid: str) -> None:
        with self.sessions() as db:
            p = db.get(Payment, pid)
        if p.state in ("captured", "released"):
            return
        if p.hold_id is not None:
            self.gateway.release(p.hold_id, f"release:{pid}")
        with self.sessions.begin() as db:
            p = db.get(Payment, pid, with_for_update=True)
            p.state, p.updated_at = "released", self._now()
        log.info("payment %s: hold released", pid)

    # -- refunds ------------------------------------------------------------------------------------
    def refund(self, pid: str, amount: int) -> str:
        """Refund `amount` (minor units, gross) of a captured payment to the card; the gateway's refund id.
        A pending refund left by a crash is finished (same key) before a new one is made."""
        if type(amount) is not int or amount <= 0:
            raise PaymentError(f"refund amount {amount!r}: a positive whole number of minor units")
        self.finish_refunds(pid)
        with self.sessions.begin() as db:
            p = db.get(Payment, pid, with_for_update=True)
            if p is None or p.state != "captured":
                raise PaymentError(f"payment {pid}: nothing captured to refund")
            if amount > p.captured - p.refunded:
                raise PaymentError(f"refund of {amount} exceeds what is left of payment {pid}: {p.captured - p.refunded}")
            p.refunded += amount  # reserved now; the gateway call below is idempotent by the row's id
            r = PaymentRefund(payment_id=pid, amount=amount, state="pending", gateway_ref=None, created_at=self._now())
            db.add(r)
            db.flush()
            rid, hold_id, currency = r.id, p.hold_id, p.currency
        return self._send_refund(rid, hold_id, amount, currency)

    def _send_refund(self, rid: int, hold_id: str, amount: int, currency: str) -> str:
        ref = self.gateway.refund(hold_id, amount, currency, f"refund:{rid}")
        with self.sessions.begin() as db:
            r = db.get(PaymentRefund, rid)
            r.state, r.gateway_ref = "done", ref
        return ref

    def finish_refunds(self, pid: str | None = None) -> None:
        with self.sessions() as db:
            q = select(PaymentRefund, Payment.hold_id, Payment.currency).join(Payment, Payment.id == PaymentRefund.payment_id) \
                .where(PaymentRefund.state == "pending")
            if pid is not None:
                q = q.where(PaymentRefund.payment_id == pid)
            pending = [(r.id, hold, r.amount, cur) for r, hold, cur in db.execute(q)]
        for rid, hold, amount, cur in pending:
            self._send_refund(rid, hold, amount, cur)

    def payment_for_session(self, dev: str, seq: int) -> Payment | None:
        """The ad-hoc payment of a stored session, for billing's refunds."""
        with self.sessions() as db:
            return db.scalar(select(Payment).where(Payment.dev == dev, Payment.seq == seq))


def price_lines(ocpi: dict) -> list[str]:
    """The ad-hoc price from an OCPI tariff, one line per component (the first element's), for the page."""
    unit = {"ENERGY": "per kWh", "TIME": "per hour charging", "PARKING_TIME": "per hour parked", "FLAT": "per session"}
    cur = str(ocpi.get("currency", ""))
    out = []
    for el in (ocpi.get("elements") or [])[:1]:
        for c in el.get("price_components") or []:
            vat = c.get("vat")
            tax = f" + {vat:g} % VAT" if isinstance(vat, (int, float)) else ""
            out.append(f"{c.get('price')} {cur} {unit.get(c.get('type'), str(c.get('type')).lower())}{tax}")
    return out


def queue_refund(db, dev: str, seq: int, amount: int, now: int) -> PaymentRefund | None:
    """In the caller's transaction (billing's refund of session dev:seq): a refund to the card of
    the session's ad-hoc payment, pending; the payment runtime's sweeper sends it to the gateway
    (idempotent by the row's id), so a credit note and its card refund commit or roll back together.
    None when the session was not paid ad hoc. Raises PaymentError for more than is left."""
    p = db.scalar(select(Payment).where(Payment.dev == dev, Payment.seq == seq, Payment.state == "captured")
                  .with_for_update())
    if p is None:
        return None
    if type(amount) is not int or not 0 < amount <= p.captured - p.refunded:
        raise PaymentError(f"refund of {amount!r} for {dev}:{seq}: {p.captured - p.refunded} left on the card payment")
    p.refunded += amount
    r = PaymentRefund(payment_id=p.id, amount=amount, state="pending", gateway_ref=None, created_at=now)
    db.add(r)
    db.flush()
    return r
