"""A made-up fleet for the dashboard's screenshots and benchmark: chargers with their last status
and their online history, cards, customers and session rows with a daily rhythm, inserted in bulk
(SQLAlchemy core executemany). The rows are not signed records (raw is a placeholder): the detail
page says they do not verify, as it should. Their payloads carry cost lines: ENERGY, TIME and, for
the tariffs that price parking, PARKING_TIME (the idle time at the end of a session)."""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator

from sqlalchemy import insert

from backend.models import Card, Contract, Customer, Device, DevicePresence, DeviceState, Session

CHUNK = 5000
HOURS = [1, 1, 1, 1, 1, 2, 4, 9, 14, 10, 7, 6, 7, 6, 6, 7, 10, 14, 16, 12, 8, 5, 3, 2]  # weights per hour of day
TARIFFS = ("std", "night", "fleet-2026")
PARKED = ("std", "fleet-2026")  # the tariffs with a PARKING_TIME element


def device_id(i: int) -> str:
    return f"evc-{i:04d}"


def token(i: int) -> str:
    return hashlib.sha256(b"demo card %d" % i).hexdigest()[:32]  # looks like a real token (HMAC output)


def rows(n: int, chargers: int, cards: int, start: int, days: int, seed: int = 1) -> Iterator[dict]:
    """n session rows on chargers devices by cards cards, starting in [start, start + days)."""
    rnd = random.Random(seed)
    seqs = [0] * chargers
    hours = rnd.choices(range(24), HOURS, k=4096)
    for i in range(n):
        d = rnd.randrange(chargers)
        seqs[d] += 1
        t = start + rnd.randrange(days) * 86400 + hours[i % 4096] * 3600 + rnd.randrange(3600)
        secs = rnd.randrange(20 * 60, 4 * 3600)
        power = rnd.choice((3700, 7400, 11000, 11000, 22000))
        share = rnd.randrange(60, 101)  # per cent of the session charging; then it stands plugged in, idle
        charging = secs * share // 100
        wh = power * charging // 3600
        card = rnd.randrange(cards)
        flags, tq, reason = "", "S", rnd.choice(("card", "card", "unplugged", "balance", "remote"))
        roll = rnd.random()
        if roll < 0.01:
            flags, tq = "time-unsynced", "I"
        elif roll < 0.013:
            flags, reason = "meter-fault", "meter-fault"
        elif roll < 0.015:
            flags, wh = "void", 0
        cost = wh * 39 // 100  # 0.39 EUR per kWh incl. VAT, in cents
        lines = [] if flags == "void" else [{"dim": "ENERGY", "el": 0, "qty": wh, "unit": "Wh"},
                                            {"dim": "TIME", "el": 0, "qty": charging, "unit": "s"}]
        if lines and TARIFFS[card % 3] in PARKED and secs > charging:
            lines.append({"dim": "PARKING_TIME", "el": 0, "qty": secs - charging, "unit": "s"})
        yield {"dev": device_id(d), "seq": seqs[d], "hash": "%064x" % i, "raw": "-", "token": token(card),
               "auth": "list", "contract": f"C-{card % 7}" if card % 3 == 0 else None,
               "tariff_id": TARIFFS[card % 3], "tariff_ver": "1", "start_t": t, "start_tq": tq, "start_wh": 0,
               "stop_t": t + secs, "stop_tq": "S", "stop_wh": wh, "stop_reason": reason, "energy_wh": wh,
               "currency": "EUR", "cost_excl": cost * 100 // 119, "cost_incl": cost, "flags": flags,
               "meter_model": "sdm630", "meter_serial": f"M-{d}", "fw": "0.1.0", "ocmf": "-",
               "payload": json.dumps({"v": 1, "cost": {"lines": lines}}, separators=(",", ":")), "charged": 0, "stored_at": t + secs}


def populate(sessions, n: int = 1000, chargers: int = 8, cards: int = 400, start: int = 1_772_409_600,
             days: int = 28, seed: int = 1, now: int | None = None) -> None:
    """Insert the fleet and n sessions (start: 2026-03-02 by default)."""
    now = start + days * 86400 if now is None else now
    rnd = random.Random(seed + 1)
    with sessions.begin() as db:
        db.execute(insert(Device), [{"id": device_id(i), "pubkey": b"-", "added_at": start, "head_seq": 0,
                                     "head_hash": ""} for i in range(chargers)])
        states = [_state(rnd, i, now) for i in range(chargers)]
        db.execute(insert(DeviceState), states)
        db.execute(insert(DevicePresence),
                   [p for i in range(chargers) for p in _presence(rnd, i, start, now, states[i])])
        db.execute(insert(Customer), [{"id": f"CU-{k}", "kind": "company" if k % 2 else "driver",
                                       "name": f"Customer {k}", "address": "Str. 1", "postcode": "10115",
                                       "city": "Berlin", "country": "DE", "language": "en", "currency": "EUR",
                                       "created_at": start} for k in range(7)])
        db.execute(insert(Contract), [{"id": f"C-{k}", "customer_id": f"CU-{k}", "created_at": start} for k in range(7)])
        db.execute(insert(Card), [{"token": token(c), "status": "accepted" if c % 17 else "blocked",
                                   "contract": f"C-{c % 7}" if c % 3 == 0 else None,
                                   "balance": 5000 - c * 10 if c % 4 == 1 else None, "updated_at": start}
                                  for c in range(cards)])
    batch: list[dict] = []
    heads = {}
    for r in rows(n, chargers, cards, start, days, seed):
        batch.append(r)
        heads[r["dev"]] = r["seq"]
        if len(batch) == CHUNK:
            with sessions.begin() as db:
                db.execute(insert(Session), batch)
            batch = []
    with sessions.begin() as db:
        if batch:
            db.execute(insert(Session), batch)
        for dev, head in heads.items():
            db.get(Device, dev).head_seq = head


def _state(rnd: random.Random, i: int, now: int) -> dict:
    """A charger's device_states row with its last status (docs/protocol.md): offline, idle or charging."""
    online = rnd.random() > 0.15
    fw = "0.1.0" if i % 4 else "0.0.9"  # the older firmware sends no power ("w") while charging
    status: dict = {"online": False}
    if online:
        status = {"online": True, "state": "idle", "fw": fw, "seq": 100 + i, "acked": 100 + i, "pending": i % 3 // 2,
                  "versions": {"tariff": 3, "authlist": 12 if i % 5 else 11}, "t": now, "tq": "S"}
        if rnd.random() < 0.5:
            w = rnd.choice((3680, 7360, 10900, 21800))
            secs = rnd.randrange(300, 3 * 3600)
            status.update({"state": "charging", "wh": w * secs // 3600, "cost": w * secs // 3600 * 39 // 1000,
                           "since": now - secs})
            if fw == "0.1.0":
                status["w"] = w
    return {"dev": device_id(i), "online": online, "tariff_ver": 3, "list_ver": 12 if i % 5 else 11,
            "seen_at": now - rnd.randrange(7200), "pushed_tariff_ver": 3, "pushed_list_ver": 12,
            "status": json.dumps(status, separators=(",", ":"))}


def _presence(rnd: random.Random, i: int, start: int, now: int, state: dict) -> list[dict]:
    """A charger's online changes: a few outages of minutes to a day, and offline at the end when its state says so."""
    out, t = [{"dev": device_id(i), "at": start, "online": True}], start
    for _ in range(rnd.randrange(0, 4)):
        t += rnd.randrange(3600, max(3601, (now - t) // 2))
        back = t + rnd.choice((600, 1800, 2 * 3600, 5 * 3600, 26 * 3600))
        if back >= now - 7200:
            break
        out += [{"dev": device_id(i), "at": t, "online": False}, {"dev": device_id(i), "at": back, "online": True}]
        t = back
    if not state["online"]:
        out.append({"dev": device_id(i), "at": state["seen_at"], "online": False})
    return out
