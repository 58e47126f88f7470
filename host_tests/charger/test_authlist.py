"""Local authorization list, cache and prepaid ledger under MicroPython on LittleFS.

Lists reach the flash the way they reach a charger: documents signed by the backend key the
config pins, handed to the uplink's Downlink (verified, parts staged in any order, all handed over
once every part is in) wired to the list as app/charger.py wires it (sim/flashfs.py DOWNLINK_MP)."""
from __future__ import annotations

import hashlib
import json
import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sim.flashfs import DOWNLINK_MP, get_file, public_hex, sign_authlist, write_messages

DEV = "chg-1"
MAX_PARTS = 2048  # parts of one list version the Downlink accepts (firmware/uplink/downlink.py, docs/protocol.md)
PER_PART = 32  # entries per part, as the backend cuts them (backend/downlink.py LIST_CHUNK): under 8 KiB signed

PRELUDE = """
import board, os
from billing.authlist import AuthList, AuthListError
from billing.authcache import AuthCache
from billing.prepaid import Ledger
ROOT = board.mount_flash()
def tok(i):
    import hashlib, binascii
    return binascii.hexlify(hashlib.sha256(b"card%d" % i).digest()[:16]).decode()
def err(fn, *a):
    try:
        fn(*a)
    except (AuthListError, ValueError) as e:
        return str(e)
    return None
""" + DOWNLINK_MP + """
def deliver(up, path):
    # what the uplink does with each message on evc/<dev>/authlist; True where a version was applied
    return [up.downlink.handle("authlist", m) for m in messages(path)]
"""


def tok(i: int) -> str:
    return hashlib.sha256(b"card%d" % i).digest()[:16].hex()


def full_list(n: int, ver: int = 1, per: int = PER_PART, start: int = 0) -> tuple[list[str], list[dict]]:
    """A full list of n accepted cards (contracts C0..C6) as the backend sends it: parts of `per`."""
    toks = sorted(tok(i) for i in range(start, start + n))
    ents = [dict(token=t, status="accepted", contract="C%d" % (int(t[:4], 16) % 7)) for t in toks]
    chunks = [ents[i:i + per] for i in range(0, n, per)] or [[]]
    return toks, [dict(ver=ver, full=True, part=p, parts=len(chunks), entries=c) for p, c in enumerate(chunks)]


@pytest.fixture(scope="module")
def key():
    """The test backend's key; the device config pins its public key."""
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def run(mpy, tmp_path, key):
    """run(code, *batches, root="dev"): each batch (documents, signed here unless already JWS) is
    written to a file whose path is MSGS[i]; code runs on the flash of device `root`."""
    count = [0]

    def _run(code, *batches, root="dev", **kw):
        paths = []
        for batch in batches:
            count[0] += 1
            paths.append(str(write_messages(tmp_path / f"msgs{count[0]}.txt", sign_authlist(key, batch))))
        cfg = {"device_id": DEV, "backend_key": public_hex(key)}
        head = PRELUDE + f"CONFIG = json.loads({json.dumps(cfg)!r})\nMSGS = {paths!r}\n"
        return mpy.run(head + code, env={"EVC_ROOT": str(tmp_path / root)}, **kw)
    return _run


def test_full_list_in_parts_and_lookup(run):
    toks, docs = full_list(3000)
    assert len(docs) == -(-3000 // PER_PART)
    first = run(
        f"""
up, al = device_uplink(CONFIG, ROOT)
done = deliver(up, MSGS[0])
hits = [al.lookup(t) for t in {toks[::97]!r}]
emit({{"done": done, "count": al.count, "ver": al.version, "events": events(up),
      "hits": [h.to_dict() for h in hits], "miss": al.lookup("00" * 16) is None,
      "staged": os.listdir(ROOT + "/alstage")}})
""", docs).value
    assert first["done"] == [False] * (len(docs) - 1) + [True] and first["count"] == 3000 and first["ver"] == 1
    assert first["events"] == [] and first["staged"] == []
    assert all(h["status"] == "accepted" and h["contract"].startswith("C") for h in first["hits"])
    assert first["miss"]
    again = run(  # a reboot: a new process mounts the flash again
        f"""
up, al = device_uplink(CONFIG, ROOT)
emit({{"count": al.count, "ver": al.version, "c": al.lookup({toks[5]!r}).contract,
       "downlink": up.downlink.versions()["authlist"], "redelivered": deliver(up, MSGS[0])[-1]}})
""", docs[-1:]).value
    assert (again["count"], again["ver"], again["downlink"]) == (3000, 1, 1) and again["c"].startswith("C")
    assert again["redelivered"] is False  # the applied version again: ignored quietly


def test_parts_in_any_order_give_the_same_list(run, tmp_path):
    _, docs = full_list(350)  # 11 parts
    shuffled = docs[:]
    random.Random(15).shuffle(shuffled)
    shuffled.insert(3, shuffled[1])  # a repeated part (QoS 1 redelivery) is ignored
    assert [d["part"] for d in shuffled] != [d["part"] for d in docs]
    code = """
up, al = device_uplink(CONFIG, ROOT)
emit({"done": deliver(up, MSGS[0]), "ver": al.version, "count": al.count, "events": events(up)})
"""
    a = run(code, docs, root="a").value
    b = run(code, shuffled, root="b").value
    assert a["done"] == [False] * 10 + [True] and b["done"] == [False] * 11 + [True]
    assert a["ver"] == b["ver"] == 1 and a["count"] == b["count"] == 350 and a["events"] == b["events"] == []
    for name in ("auth/list.bin", "auth/contracts.bin"):
        assert get_file(tmp_path / "a", name) == get_file(tmp_path / "b", name), name


def test_more_parts_than_the_downlink_takes_are_rejected(run):
    toks, docs = full_list(20)
    ents = [dict(token=toks[0], status="blocked")]
    got = run(
        """
up, al = device_uplink(CONFIG, ROOT)
deliver(up, MSGS[0])
too_many = deliver(up, MSGS[1])
after_too_many = events(up)
at_limit = deliver(up, MSGS[2])
emit({"too_many": too_many, "rejected": after_too_many, "at_limit": at_limit, "at_limit_events": events(up),
      "staged": sorted(os.listdir(ROOT + "/alstage")), "ver": al.version, "count": al.count,
      "still": al.lookup(tok(0)).status})
""",
        docs,
        [dict(ver=2, full=False, base=1, part=0, parts=MAX_PARTS + 1, entries=ents)],
        [dict(ver=2, full=False, base=1, part=MAX_PARTS - 1, parts=MAX_PARTS, entries=ents)],
    ).value
    assert got["too_many"] == [False]
    (rej,) = got["rejected"]
    assert rej["reason"] == "malformed" and f"parts 1..{MAX_PARTS}" in rej["detail"], rej
    # the last part of a list at the limit is taken (staged, waiting for the other 1023)
    assert got["at_limit"] == [False] and got["at_limit_events"] == []
    assert got["staged"] == [f"al{MAX_PARTS - 1}.json"]
    assert got["ver"] == 1 and got["count"] == 20 and got["still"] == "accepted"


def test_differential_add_change_delete_and_versions(run):
    toks, docs = full_list(30, ver=5)  # one part
    diff = dict(ver=6, full=False, base=5, entries=[
        dict(token=tok(1000), status="accepted", balance=2500, bal_seq=7, contract="PRE"),
        dict(token=toks[0], status="blocked"),
        dict(token=toks[1]),  # no info: delete
    ])
    got = run(
        f"""
up, al = device_uplink(CONFIG, ROOT)
done = deliver(up, MSGS[0])
e = al.lookup({tok(1000)!r})
emit({{"done": done, "new": e.to_dict(), "blocked": al.lookup({toks[0]!r}).status,
       "deleted": al.lookup({toks[1]!r}) is None, "count": al.count, "ver": al.version, "events": events(up)}})
emit({{"again": deliver(up, MSGS[1]), "events": events(up), "ver": al.version, "count": al.count,
       "downlink": up.downlink.versions()["authlist"]}})
""",
        docs + [diff],
        [diff,  # the same version again (redelivery): ignored quietly
         dict(ver=3, full=True, entries=[]),  # older: stale
         dict(ver=7, full=False, base=5, entries=[dict(token=toks[2])])],  # not on top of what the device has
    ).results
    assert got[0]["done"] == [True, True] and got[0]["events"] == []
    assert got[0]["new"] == {"token": tok(1000), "status": "accepted", "exp": 0, "contract": "PRE",
                             "balance": 2500, "bal_seq": 7}
    assert got[0]["blocked"] == "blocked" and got[0]["deleted"] and got[0]["count"] == 30 and got[0]["ver"] == 6
    assert got[1]["again"] == [False, False, False]
    assert [(e["evt"], e["reason"]) for e in got[1]["events"]] == [("downlink-rejected", "stale"),
                                                                   ("downlink-rejected", "base")]
    assert got[1]["ver"] == 6 and got[1]["count"] == 30 and got[1]["downlink"] == 6


def _bad(ents: list[dict], **doc) -> list[dict]:
    return [dict(dict(ver=2, full=True, entries=ents), **doc)]


# name -> (documents of version 2 given the tokens of the installed version 1, reason, words in the detail)
BAD_DOCS = {
    "token": (lambda t, k: _bad([dict(token="XYZ", status="accepted")]), "invalid", "token"),
    "status": (lambda t, k: _bad([dict(token=t[0], status="maybe")]), "invalid", "status"),
    "sorted": (lambda t, k: _bad([dict(token=t[1], status="accepted"), dict(token=t[0], status="accepted")]),
               "invalid", "sorted"),
    "balance": (lambda t, k: _bad([dict(token=t[0], status="accepted", balance=1.5)]), "invalid", "balance"),
    "contract": (lambda t, k: _bad([dict(token=t[0], status="accepted", contract="x" * 40)]), "invalid", "contract"),
    "last-part-bad": (lambda t, k: [dict(ver=2, full=True, part=1, parts=2, entries=[dict(token=t[9], status="?")]),
                                    dict(ver=2, full=True, part=0, parts=2,
                                         entries=[dict(token=x, status="accepted") for x in t[:5]])],
                      "invalid", "status"),
    "diff-too-large": (lambda t, k: [dict(ver=2, full=False, base=1, part=p, parts=16,
                                          entries=[dict(token=tok(5000 + 64 * p + i)) for i in range(64)])
                                     for p in range(16)], "invalid", "larger than 1000"),
    "parts-disagree": (lambda t, k: [dict(ver=2, full=True, part=0, parts=2, entries=[]),
                                     dict(ver=2, full=True, part=1, parts=3, entries=[])], "malformed", "disagrees"),
    "part-range": (lambda t, k: _bad([], part=3, parts=2), "malformed", "part must be"),
    "no-ver": (lambda t, k: [dict(full=True, entries=[])], "malformed", "ver"),
    "entries": (lambda t, k: _bad("nope"), "malformed", "entries must be a list"),
    "type": (lambda t, k: _bad([], type="tariff"), "malformed", "authlist"),
    "wrong-device": (lambda t, k: _bad([], dev="chg-2"), "wrong-device", "chg-2"),
    "signature": (lambda t, k: sign_authlist(ec.generate_private_key(ec.SECP256R1()), _bad([])), "signature", ""),
    "unsigned": (lambda t, k: ["eyJhbGciOiJub25lIn0.eyJ0eXBlIjoiYXV0aGxpc3QifQ."], "signature", ""),
    "oversized": (lambda t, k: _bad([dict(token=tok(i), status="accepted", contract="C" * 32) for i in range(200)]),
                  "oversized", "8192"),
}


@pytest.mark.parametrize("case", sorted(BAD_DOCS))
def test_bad_documents_change_nothing(run, key, case):
    make, reason, words = BAD_DOCS[case]
    toks, docs = full_list(20)
    got = run(
        """
up, al = device_uplink(CONFIG, ROOT)
deliver(up, MSGS[0])
done = deliver(up, MSGS[1])
emit({"done": done, "events": events(up), "ver": al.version, "count": al.count, "still": al.lookup(tok(0)).status,
      "downlink": up.downlink.versions()["authlist"], "files": sorted(os.listdir(ROOT + "/auth"))})
""", docs, make(toks, key)).value
    assert not any(got["done"])
    rej = got["events"][-1]
    assert all(e["evt"] == "downlink-rejected" for e in got["events"]) and rej["reason"] == reason, got
    assert words in rej.get("detail", ""), rej
    assert got["ver"] == 1 and got["count"] == 20 and got["still"] == "accepted" and got["downlink"] == 1
    assert "list.new" not in got["files"]


def test_reboot_mid_update_keeps_the_old_list(run):
    _, docs = full_list(30)
    _, docs2 = full_list(130, ver=2, per=50, start=100)  # 3 parts
    before = run(
        """
up, al = device_uplink(CONFIG, ROOT)
deliver(up, MSGS[0])
emit({"done": deliver(up, MSGS[1]), "ver": al.version})
""", docs, [docs2[0], docs2[2]]).value  # then the power goes
    assert before == {"done": [False, False], "ver": 1}
    after = run(
        """
up, al = device_uplink(CONFIG, ROOT)
out = {"ver": al.version, "count": al.count, "downlink": up.downlink.versions()["authlist"]}
out["late_part"] = deliver(up, MSGS[0])  # staging is RAM bookkeeping: the parts before the reboot are gone
out["ver_late"] = al.version
out["resent"] = deliver(up, MSGS[1])  # the backend sees version 1 in the status and publishes again
emit(dict(out, ver_end=al.version, count_end=al.count, events=events(up), staged=os.listdir(ROOT + "/alstage")))
""", [docs2[1]], docs2).value
    assert (after["ver"], after["count"], after["downlink"]) == (1, 30, 1)
    assert after["late_part"] == [False] and after["ver_late"] == 1
    assert after["resent"] == [False, False, True]
    assert (after["ver_end"], after["count_end"]) == (2, 130) and after["events"] == []
    assert after["staged"] == []


def test_list_update_compacts_the_prepaid_ledger(run):
    card = tok(7)
    got = run(
        f"""
try:
    os.mkdir(ROOT + "/auth")
except OSError:
    pass
led = Ledger(ROOT + "/auth/spent.bin")
for seq in range(1, 601):  # more than the ledger keeps before it compacts at a list update
    led.record({card!r}, seq, 10)
up, al = device_uplink(CONFIG, ROOT)
done = deliver(up, MSGS[0])
led = Ledger(ROOT + "/auth/spent.bin")
e = al.lookup({card!r})
emit({{"done": done, "count": led.count, "available": e.balance - led.spent_since({card!r}, e.bal_seq)}})
""", [dict(ver=1, full=True, entries=[dict(token=card, status="accepted", balance=9000, bal_seq=580)])]).value
    # the list's balance includes seq 1..580: only the 20 later spends stay
    assert got == {"done": [True], "count": 20, "available": 9000 - 200}


def test_cache_evicts_expired_then_refused_then_first_to_expire_and_survives_reboot(run):
    got = run(
        f"""
c = AuthCache(ROOT + "/cache.bin", size=3)
c.put("{tok(1)}", "accepted", 1100, now=1000)
c.put("{tok(2)}", "blocked", 1200, now=1000)
c.put("{tok(3)}", "accepted", 1300, now=1000)
c.put("{tok(4)}", "accepted", 1400, now=1000)     # full: the refused one goes
r1 = [c.lookup(tok(i), 1000) and c.lookup(tok(i), 1000).status for i in (1, 2, 3, 4)]
c.put("{tok(5)}", "accepted", 1500, now=1000)     # all accepted: the first to expire goes
c = AuthCache(ROOT + "/cache.bin", size=3)
r2 = [c.lookup(tok(i), 1000) and c.lookup(tok(i), 1000).status for i in (1, 2, 3, 4, 5)]
c.put("{tok(6)}", "accepted", 2000, now=1450)     # tok(3) and tok(4) have expired: one of them goes
r3 = [c.lookup(tok(i), 1450) is not None for i in (3, 4, 5, 6)]
emit([r1, r2, r3, c.lookup(tok(5), 1499).status, c.lookup(tok(5), 1500), c.lookup(tok(5), None)])
"""
    ).value
    assert got[0] == ["accepted", None, "accepted", "accepted"]
    assert got[1] == [None, None, "accepted", "accepted", "accepted"]
    assert got[2] == [False, False, True, True]
    assert got[3:] == ["accepted", None, None]  # expired at its exp; with the time unknown: not used


def test_cache_keeps_contract_and_prepaid_allowance_in_fixed_slots(run):
    got = run(
        f"""
c = AuthCache(ROOT + "/cache.bin", size=4)
c.put("{tok(1)}", "accepted", 5000, "FLEET-" + "x" * 26, 1234, 77, now=1000)  # a 32-byte contract id
c.put("{tok(2)}", "accepted", 5000, None, None, 0, now=1000)
bad = [err(c.put, "{tok(3)}", "accepted", 5000, "y" * 33), err(c.put, "{tok(3)}", "maybe", 5000)]
c = AuthCache(ROOT + "/cache.bin", size=4)
e1, e2 = c.lookup(tok(1), 4999), c.lookup(tok(2), 4999)
emit([e1.to_dict(), e2.to_dict(), bad, os.stat(ROOT + "/cache.bin")[6]])
"""
    ).value
    assert got[0] == {"token": tok(1), "status": "accepted", "exp": 5000, "contract": "FLEET-" + "x" * 26,
                      "balance": 1234, "bal_seq": 77}
    assert got[1] == {"token": tok(2), "status": "accepted", "exp": 5000, "contract": None, "balance": None,
                      "bal_seq": 0}
    assert all(got[2]) and got[3] == 4 * 64  # a fixed 64-byte slot per entry


def test_cached_online_decision_keeps_contract_and_prepaid_amount_and_expires(run):
    """The Authorizer with the backend's (already verified) answers: the cache gives the contract and
    the prepaid allowance less this device's later spends until exp; with the time unknown, or at
    exp, the backend is asked again."""
    got = run(
        f"""
import asyncio
from billing.authorize import Authorizer
cfg = {{"master_tokens": [], "prepaid_min": 100, "unknown": "online", "offline_max_wh": 0, "offline_max_cost": 0}}
answers = {{
    "{tok(1)}": {{"ok": True, "status": "accepted", "contract": "FLEET", "exp": 2000, "allowance": 900, "bal_seq": 4}},
    "{tok(2)}": {{"ok": True, "status": "accepted", "contract": "C2", "exp": 2000, "allowance": None, "bal_seq": 0}},
    "{tok(3)}": {{"ok": False, "status": "blocked", "contract": None, "exp": 1300, "allowance": None, "bal_seq": 0}},
    "{tok(4)}": {{"ok": False, "status": "accepted", "contract": None, "exp": 1300, "allowance": 0, "bal_seq": 0}},
}}
asked = []
async def ask(token):
    asked.append(token)
    return answers.get(token)
led = Ledger(ROOT + "/spent.bin")
a = Authorizer(AuthList(ROOT + "/al"), AuthCache(ROOT + "/cache.bin", 8), led, cfg, ask)
def d(t, now, known=True):
    x = asyncio.run(a.decide(t, now, known))
    return [x.ok, x.how, x.reason, x.contract, x.available, len(asked)]
out = [d(tok(1), 1000)]
led.record(tok(1), 5, 300)            # a session of this card on this device after bal_seq 4
out.append(d(tok(1), 1500))           # from the cache: contract kept, 900 - 300 left
out.append(d(tok(1), 1500, False))    # time unknown: the cache is not used, the backend is asked
a.cache = AuthCache(ROOT + "/cache.bin", 8)   # a reboot
out.append(d(tok(1), 1999))
led.record(tok(1), 6, 550)            # 50 left: under prepaid_min
out.append(d(tok(1), 1999))
del answers[tok(1)]
out.append(d(tok(1), 2000))           # expired: asked again, no answer, offline not allowed
out += [d(tok(2), 1000), d(tok(2), 1999), d(tok(3), 1000), d(tok(3), 1200), d(tok(3), 1300), d(tok(4), 1000), d(tok(4), 1200)]
emit(out)
"""
    ).value
    assert got[0] == [True, "online", None, "FLEET", 900, 1]
    assert got[1] == [True, "cache", None, "FLEET", 600, 1]
    assert got[2] == [True, "online", None, "FLEET", 600, 2]
    assert got[3] == [True, "cache", None, "FLEET", 600, 2]
    assert got[4] == [False, None, "balance", None, None, 2]
    assert got[5] == [False, None, "offline-not-allowed", None, None, 3]
    assert got[6] == [True, "online", None, "C2", None, 4] and got[7] == [True, "cache", None, "C2", None, 4]
    assert got[8] == [False, None, "blocked", None, None, 5] and got[9] == [False, None, "blocked", None, None, 5]
    assert got[10] == [False, None, "blocked", None, None, 6]  # the refusal expired: asked again
    assert got[11] == [False, None, "balance", None, None, 7] and got[12] == [False, None, "balance", None, None, 7]


def test_prepaid_ledger(run):
    got = run(
        f"""
led = Ledger(ROOT + "/spent.bin")
led.record("{tok(1)}", 3, 400)
led.record("{tok(1)}", 8, 250)
led.record("{tok(2)}", 9, 999)
led = Ledger(ROOT + "/spent.bin")
emit([led.spent_since("{tok(1)}", 0), led.spent_since("{tok(1)}", 3), led.spent_since("{tok(1)}", 8),
      err(led.record, "{tok(1)}", 10, -5)])
"""
    ).value
    assert got[:3] == [650, 250, 0] and "non-negative" in got[3]


def test_cache_lookup_across_many_chunks(run):
    got = run(
        """
c = AuthCache(ROOT + "/cache.bin", size=100)
for i in range(90):
    c.put(tok(i), "accepted" if i % 3 else "blocked", 2000 + i, "C%d" % i, now=1000)
emit([[e.status, e.contract, e.expiry] if e else None for e in [c.lookup(tok(i), 1000) for i in range(95)]])
"""
    ).value
    assert got[:90] == [[("accepted" if i % 3 else "blocked"), "C%d" % i, 2000 + i] for i in range(90)]
    assert got[90:] == [None] * 5
