"""Online authorization: answer a charger's auth/req for a token its local list does not know.

Request `{"nonce", "token"}` on evc/<dev>/auth/req (the nonce: fresh random per request). The
answer, on evc/<dev>/auth/res, is a JWS by the backend key (the worker signs what `answer` returns,
keys.sign_document) of

    {"type": "auth", "dev", "nonce", "token", "ok", "status", "contract", "exp", "allowance", "bal_seq", "rsv"}

firmware/uplink/authreq.py accepts it only with a good signature, its own device, nonce and token,
and `exp` (epoch s) still ahead; the device caches the decision until `exp` (billing/authcache.py).
A token the backend does not know is "invalid". A prepaid card is accepted online only when
something of its balance is free (backend/prepaid.py: not held by reservations or by chargers'
list allowances) and the device is registered: all of it (at most `reserve_max`) is then reserved
for this device (`rsv`: true), `allowance` is the amount, good for one session; the reservation
is named by (dev, token, exp) and settled by that session's record (docs/prepaid.md). A refused
prepaid card has allowance 0, a postpaid card null. `bal_seq` is the device's stored head (the
device counts a reservation's spends from its own last seq instead).
Refusals expire sooner than acceptances, so a card unblocked or topped up is asked about again soon.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend import guard, prepaid
from backend.models import Card, Device

_TOKEN = re.compile(r"^[0-9a-f]{32}\Z")  # \Z: "$" would let a trailing newline through
_NONCE = re.compile(r"^[0-9A-Za-z_-]{8,64}\Z")
MAX_REQUEST_BYTES = 1024
TTL_S = 24 * 3600  # how long a device may use an acceptance from its cache (serve --auth-ttl)
REFUSAL_TTL_S = 300  # and a refusal


def answer(sessions: sessionmaker[Session], payload: bytes, dev: str, now: int | None = None,
           ttl_s: int = TTL_S, reserve_max: int | None = None) -> dict[str, Any] | None:
    """The answer document (unsigned) to one auth/req payload of device dev, or None when the
    request is malformed (no answer). A prepaid acceptance is a reservation, committed here."""
    if len(payload) > MAX_REQUEST_BYTES:
        return None
    try:
        req = guard.loads(payload, MAX_REQUEST_BYTES)  # size, UTF-8 and nesting checked before parsing
    except ValueError:
        return None
    if not isinstance(req, dict) or not isinstance(req.get("nonce"), str) or not isinstance(req.get("token"), str):
        return None
    nonce, token = req["nonce"], req["token"]
    if not _NONCE.match(nonce) or len(token) > 64:
        return None
    now = int(time.time()) if now is None else now
    doc: dict[str, Any] = {"type": "auth", "dev": dev, "nonce": nonce, "token": token, "ok": False,
                           "status": "invalid", "contract": None, "exp": now + min(ttl_s, REFUSAL_TTL_S),
                           "allowance": None, "bal_seq": 0}
    if not _TOKEN.match(token):
        return doc
    with sessions.begin() as db:
        card = db.get(Card, token)
        if card is None:
            return doc
        status = card.status
        if status == "accepted" and card.exp and now >= card.exp:
            status = "expired"
        exp = now + ttl_s
        if card.exp:
            exp = min(exp, card.exp)  # never cached past the card's own expiry
        device = db.get(Device, dev)
        ok, allowance = status == "accepted", None
        if card.balance is not None:
            held = None
            if ok and device is not None:
                held = prepaid.reserve(db, card, dev, exp, now, reserve_max)
            ok, allowance = held is not None, 0 if held is None else held.amount
            if held is not None:
                exp = held.exp  # the reservation's name on the device
                doc["rsv"] = True
        doc.update(ok=ok, status=status, contract=card.contract, exp=exp if ok else doc["exp"], allowance=allowance,
                   bal_seq=device.head_seq if device is not None and card.balance is not None else 0)
        return doc


def unreadable(payload: bytes) -> str | None:
    """Why an auth/req payload is not even a request (the worker keeps it as a `bad-auth-req`
    anomaly), or None. Checked before `answer`, within the same bounds."""
    try:
        req = guard.loads(payload, MAX_REQUEST_BYTES)
    except (ValueError, RecursionError) as exc:
        return f"not a request: {exc}"
    if not isinstance(req, dict) or not isinstance(req.get("token"), str):
        return "not a request: a JSON object with a token expected"
    return None
