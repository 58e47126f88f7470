"""Online authorization: answer a charger's auth/req for a token its local list does not know.

Request `{"id", "token"}` on evc/<dev>/auth/req; answer `{"id", "ok", "status", "contract"}` on
evc/<dev>/auth/res (firmware/uplink/authreq.py). A token the backend does not know is "invalid".
A prepaid card is accepted online only with a positive balance.
"""
from __future__ import annotations

import json
import re
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.models import Card

_TOKEN = re.compile(r"^[0-9a-f]{32}$")
MAX_REQUEST_BYTES = 1024


def answer(sessions: sessionmaker[Session], payload: bytes, now: int | None = None) -> dict[str, Any] | None:
    """The answer to one auth/req payload, or None when the request is malformed (no answer)."""
    if len(payload) > MAX_REQUEST_BYTES:
        return None
    try:
        req = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(req, dict) or not isinstance(req.get("id"), str) or not isinstance(req.get("token"), str):
        return None
    rid, token = req["id"][:64], req["token"]
    if not _TOKEN.match(token):
        return {"id": rid, "ok": False, "status": "invalid"}
    now = int(time.time()) if now is None else now
    with sessions() as db:
        card = db.get(Card, token)
        if card is None:
            return {"id": rid, "ok": False, "status": "invalid"}
        status = card.status
        if status == "accepted" and card.exp and now >= card.exp:
            status = "expired"
        ok = status == "accepted" and (card.balance is None or card.balance > 0)
        return {"id": rid, "ok": ok, "status": status, "contract": card.contract}
