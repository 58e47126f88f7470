"""The charger's side of a reservation under MicroPython (billing/authorize.py, authcache.py,
prepaid.py): it pays for one session, from the online answer or, unused, from the cache; once a
session has used it the backend is asked again, and nothing of it is spent twice."""
from __future__ import annotations

import hashlib


def tok(i: int) -> str:
    return hashlib.sha256(b"card%d" % i).digest()[:16].hex()


def test_a_reservation_pays_for_one_session_and_then_the_backend_is_asked_again(mpy, tmp_path):
    got = mpy.run(f"""
import asyncio, board
from billing.authcache import AuthCache
from billing.authlist import AuthList
from billing.authorize import Authorizer
from billing.prepaid import Ledger
ROOT = board.mount_flash()
cfg = {{"master_tokens": [], "prepaid_min": 100, "unknown": "online", "offline_max_wh": 0, "offline_max_cost": 0}}
answers = [
    {{"ok": True, "status": "accepted", "contract": "PRE", "exp": 5000, "allowance": 900, "bal_seq": 2, "rsv": True}},
    {{"ok": True, "status": "accepted", "contract": "PRE", "exp": 6000, "allowance": 250, "bal_seq": 9, "rsv": True}},
    None,
]
asked = []
async def ask(token):
    asked.append(token)
    return answers.pop(0)
led = Ledger(ROOT + "/spent.bin")
led.record("{tok(1)}", 7, 120)   # sessions of this card before the tap, not yet acknowledged
a = Authorizer(AuthList(ROOT + "/al"), AuthCache(ROOT + "/cache.bin", 8), led, cfg, ask)
def d(now, seq, known=True):
    x = asyncio.run(a.decide("{tok(1)}", now, known, seq))
    return [x.ok, x.how, x.reason, x.available, x.rsv, len(asked)]
out = [d(1000, 8)]                 # online: all 900 for the session that will be seq 8
out.append(d(1100, 8))             # no session happened (unplugged): the cache still holds it, unused
a.cache = AuthCache(ROOT + "/cache.bin", 8)   # a reboot
out.append(d(1200, 8))
led.record("{tok(1)}", 8, 0)       # a session used it (a void one: it charged nothing)
out.append(d(1300, 9))             # used: asked again, a new reservation
led.record("{tok(1)}", 9, 250)
out.append(d(1400, 10))            # used again, and no answer: offline not allowed
emit(out)
""", env={"EVC_ROOT": str(tmp_path)}).value
    assert got[0] == [True, "online", None, 900, 5000, 1]  # spends before the tap are not this reservation's
    assert got[1] == [True, "cache", None, 900, 5000, 1]
    assert got[2] == [True, "cache", None, 900, 5000, 1]
    assert got[3] == [True, "online", None, 250, 6000, 2]
    assert got[4] == [False, None, "offline-not-allowed", None, None, 3]


def test_an_answer_without_a_reservation_keeps_the_balance_rule(mpy, tmp_path):
    """A backend that does not reserve (no `rsv`): the cached amount less this device's later
    spends, session after session, as before."""
    got = mpy.run(f"""
import asyncio, board
from billing.authcache import AuthCache
from billing.authlist import AuthList
from billing.authorize import Authorizer
from billing.prepaid import Ledger
ROOT = board.mount_flash()
cfg = {{"master_tokens": [], "prepaid_min": 100, "unknown": "online", "offline_max_wh": 0, "offline_max_cost": 0}}
async def ask(token):
    return {{"ok": True, "status": "accepted", "contract": None, "exp": 5000, "allowance": 900, "bal_seq": 2}}
led = Ledger(ROOT + "/spent.bin")
a = Authorizer(AuthList(ROOT + "/al"), AuthCache(ROOT + "/cache.bin", 8), led, cfg, ask)
x = asyncio.run(a.decide("{tok(2)}", 1000, True, 5))
led.record("{tok(2)}", 5, 300)
y = asyncio.run(a.decide("{tok(2)}", 1100, True, 6))
emit([[x.how, x.available, x.rsv], [y.how, y.available, y.rsv]])
""", env={"EVC_ROOT": str(tmp_path)}).value
    assert got == [["online", 900, None], ["cache", 600, None]]
