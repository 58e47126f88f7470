"""The backend's side of prepaid (backend/prepaid.py) on SQLite and PostgreSQL, with records made and
signed by the firmware itself: online reservations settled by the signed `charged`, released when
no session can use them any more; list allowances that split the balance between chargers."""
from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import select

from backend import prepaid
from backend.authorize import answer
from backend.cards import CardRow
from backend.db import open_db
from backend.downlink import Downlinks
from backend.ingest import Ingestor
from backend.keys import Keys, load_public_key
from backend.models import Anomaly, Card, Device
from host_tests.prepaid import ledger
from sim.records import BASE_T, make_records, session_fields

CARD = "5" * 32
OTHER = "6" * 32  # a postpaid card
DEV = "evc-p1"
OPENING = 1000


def record(seq: int, token: str, incl: int, start: int, tq: str = "S", **extra) -> dict:
    f = session_fields(DEV, seq, token, cost=incl)
    span = f["stop"]["t"] - f["start"]["t"]
    f["start"]["t"], f["stop"]["t"] = start, start + span
    f["start"]["tq"] = f["stop"]["tq"] = tq
    f["auth"] = "online" if "rsv" in extra else "list"
    return {**f, **extra}


@pytest.fixture
def bank(db_target, tmp_path):
    """A database with DEV registered (its firmware key), the prepaid CARD and a postpaid card;
    sign(fields...) -> the records as the firmware seals them, chained from the last."""
    sessions = open_db(db_target)
    state = {"prev": ""}

    def sign(*fields: dict) -> list[str]:
        pem, jws, hashes = make_records(tmp_path, DEV, list(fields), prev=state["prev"])
        state["prev"] = hashes[-1]
        state["pem"] = pem
        return jws

    sign.pem = make_records(tmp_path, DEV, [])[0]  # type: ignore[attr-defined]
    with sessions.begin() as db:
        db.add(Device(id=DEV, pubkey=load_public_key(sign.pem), added_at=0, head_seq=0, head_hash=""))  # type: ignore[attr-defined]
        db.add(Card(token=CARD, status="accepted", exp=None, contract=None, balance=OPENING, updated_at=0))
        db.add(Card(token=OTHER, status="accepted", exp=None, contract=None, balance=None, updated_at=0))
    yield sessions, sign
    sessions.kw["bind"].dispose()


def ask(sessions, now: int, ttl_s: int = 86400, dev: str = DEV) -> dict:
    return answer(sessions, json.dumps({"nonce": "n0nce-5678", "token": CARD}).encode(), dev, now=now, ttl_s=ttl_s)


def test_a_reservation_is_settled_with_the_signed_charge_once_and_the_rest_released(bank):
    sessions, sign = bank
    first = ask(sessions, BASE_T)
    assert (first["ok"], first["allowance"], first["rsv"], first["exp"]) == (True, OPENING, True, BASE_T + 86400)
    assert ask(sessions, BASE_T + 1)["ok"] is False  # all of it is held for the first charger
    assert ask(sessions, BASE_T + 1)["allowance"] == 0
    # the balance pays what the device signed as charged (it may be less than cost.incl)
    (rec,) = sign(record(1, CARD, 700, BASE_T + 60, charged=400, rsv=first["exp"]))
    ing = Ingestor(sessions)
    assert [ing.ingest(f"evc/{DEV}/rec", rec).kind for _ in range(3)] == ["stored", "duplicate", "duplicate"]
    assert ledger.charged(sessions, CARD) == [400]  # the signed charge, not cost.incl; once
    assert ledger.balance(sessions, CARD) == OPENING - 400
    (r,) = ledger.reservations(sessions, CARD)
    assert (r.state, r.seq, r.charged, r.amount) == ("settled", 1, 400, OPENING)
    ledger.check(sessions, CARD, OPENING)
    again = ask(sessions, BASE_T + 120)  # what the session did not use is free again
    assert (again["ok"], again["allowance"]) == (True, OPENING - 400)
    assert again["exp"] == BASE_T + 120 + 86400


def test_reservations_of_one_second_get_names_of_their_own(bank):
    sessions, _ = bank
    with sessions.begin() as db:
        db.get(Card, CARD).balance = 0
    assert ask(sessions, BASE_T)["ok"] is False
    with sessions.begin() as db:
        db.get(Card, CARD).balance = OPENING
    a = ask(sessions, BASE_T, ttl_s=3600)
    with sessions.begin() as db:
        db.get(Card, CARD).balance = 2 * OPENING  # a top-up: more to reserve in the same second
    b = ask(sessions, BASE_T, ttl_s=3600)
    assert (a["exp"], b["exp"]) == (BASE_T + 3600, BASE_T + 3599)  # the device names a reservation by its exp
    assert (a["allowance"], b["allowance"]) == (OPENING, OPENING)


def test_an_expired_reservation_is_released_once_the_charger_has_shown_it_cannot_use_it(bank):
    sessions, sign = bank
    held = ask(sessions, BASE_T, ttl_s=3600)
    exp = held["exp"]
    assert held["allowance"] == OPENING
    ing = Ingestor(sessions)
    assert ask(sessions, exp + 600)["ok"] is False  # past exp, but the charger may still send a session on it
    before, unknown_time, after = sign(record(1, OTHER, 300, exp - 120),          # started before the exp
                                       record(2, OTHER, 300, exp + 10, tq="U"),   # by a clock not set
                                       record(3, OTHER, 300, exp + 300))           # started after the exp
    assert ing.ingest(f"evc/{DEV}/rec", before).kind == "stored"
    assert ask(sessions, exp + 600)["ok"] is False
    assert [r.state for r in ledger.reservations(sessions, CARD)] == ["held"]
    assert ing.ingest(f"evc/{DEV}/rec", unknown_time).kind == "stored"
    assert ask(sessions, exp + 600)["ok"] is False
    assert ing.ingest(f"evc/{DEV}/rec", after).kind == "stored"
    fresh = ask(sessions, exp + 600)
    assert (fresh["ok"], fresh["allowance"]) == (True, OPENING)  # released: no session can use it any more
    assert [r.state for r in ledger.reservations(sessions, CARD)] == ["released", "held"]
    assert ledger.check(sessions, CARD, OPENING) == 0


def test_a_record_whose_charge_is_not_a_sum_charges_nothing_and_fills_its_seq(bank):
    sessions, sign = bank
    bad, worse = sign(record(1, CARD, 300, BASE_T, charged=-5), record(2, CARD, 300, BASE_T + 900, charged="300"))
    ing = Ingestor(sessions)
    outs = [ing.ingest(f"evc/{DEV}/rec", r) for r in (bad, worse)]
    assert [(o.kind, o.ack) for o in outs] == [("unstorable", 1), ("unstorable", 2)]
    with sessions() as db:
        details = list(db.scalars(select(Anomaly.detail).where(Anomaly.dev == DEV).order_by(Anomaly.seq)))
    assert details == ["charged -5 is not a non-negative integer", "charged '300' is not a non-negative integer"]
    assert ledger.balance(sessions, CARD) == OPENING and ledger.charged(sessions, CARD) == []


def _bodies(msgs) -> dict[str, dict]:
    out = {}
    for topic, jws, _ in msgs:
        p = jws.split(".")[1]
        doc = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
        out[doc["dev"]] = {e["token"]: e.get("balance") for e in doc["entries"]}
    return out


def test_list_allowances_split_the_balance_and_never_add_up_to_more(bank, tmp_path):
    sessions, sign = bank
    with sessions.begin() as db:
        for dev in ("evc-p2", "evc-p3"):
            db.add(Device(id=dev, pubkey=b"", added_at=0, head_seq=0, head_hash=""))
    keys = Keys(tmp_path / "keys")
    keys.init()
    clock = [BASE_T]
    down = Downlinks(sessions, keys, clock=lambda: clock[0])
    rows = [CardRow(CARD, "accepted", 0, None, OPENING), CardRow(OTHER, "accepted", 0, None, None)]
    full = _bodies(down.authlist(None, rows, False, lambda m: None))
    assert {d: e[CARD] for d, e in full.items()} == {DEV: 333, "evc-p2": 333, "evc-p3": 333}  # a third each
    assert full[DEV][OTHER] is None
    ledger.check(sessions, CARD, OPENING)
    online = ask(sessions, BASE_T + 10)
    assert (online["ok"], online["allowance"]) == (True, 1)  # what no list holds: the 1 left over
    (rec,) = sign(record(1, CARD, 300, BASE_T + 60, charged=300))  # a list session on evc-p1, offline
    Ingestor(sessions).ingest(f"evc/{DEV}/rec", rec)
    ledger.check(sessions, CARD, OPENING)
    clock[0] += 100
    diff = _bodies(down.authlist(None, None, True, lambda m: None))
    # evc-p1 may still spend 33 of its 333; nothing is free (1 reserved online): p2 and p3 unchanged
    assert diff == {DEV: {CARD: 33}}
    ledger.check(sessions, CARD, OPENING)
    down.credit(CARD, 600)  # a top-up of 6.00: balance 1300, reservation 1 held, so 1299 to split
    clock[0] += 100
    diff = _bodies(down.authlist(None, None, True, lambda m: None))
    assert diff == {DEV: {CARD: 433}, "evc-p2": {CARD: 433}, "evc-p3": {CARD: 433}}
    assert ledger.check(sessions, CARD, OPENING + 600) == 300
    assert ask(sessions, BASE_T + 400)["ok"] is False  # nothing free: 1 reserved, 1299 in lists
    with sessions.begin() as db:  # evc-p3 is known to hold no entry for the card any more
        assert prepaid.release_allowance(db, "evc-p3", CARD) == 433
        assert prepaid.release_allowance(db, "evc-p3", CARD) == 0
    assert ask(sessions, BASE_T + 500)["allowance"] == 433
    ledger.check(sessions, CARD, OPENING + 600)
