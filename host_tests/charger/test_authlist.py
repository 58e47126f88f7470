"""Local authorization list, cache and prepaid ledger under MicroPython on LittleFS."""
import hashlib

import pytest

PRELUDE = """
import board, os
from billing.authlist import AuthList, AuthListError
from billing.authcache import AuthCache
from billing.prepaid import Ledger
ROOT = board.mount_flash()
def tok(i):
    import hashlib, binascii
    return binascii.hexlify(hashlib.sha256(b"card%d" % i).digest()[:16]).decode()
def full_list(n, ver=1, parts=1, **extra):
    toks = sorted(tok(i) for i in range(n))
    per = (n + parts - 1) // parts
    def docs():  # one chunk in RAM at a time, as over MQTT
        for p in range(parts):
            ents = [dict(token=t, status="accepted", contract="C%d" % (int(t[:4], 16) % 7)) for t in toks[p*per:(p+1)*per]]
            yield dict(type="authlist", ver=ver, full=True, part=p, parts=parts, entries=ents)
    return toks, list(docs()) if parts == 1 else docs()
def err(fn, *a):
    try:
        fn(*a)
    except (AuthListError, ValueError) as e:
        return str(e)
    return None
"""


def tok(i: int) -> str:
    return hashlib.sha256(b"card%d" % i).digest()[:16].hex()


@pytest.fixture
def run(mpy, tmp_path):
    def _run(code, **kw):
        return mpy.run(PRELUDE + code, env={"EVC_ROOT": str(tmp_path)}, **kw)
    return _run


def test_full_list_in_chunks_and_lookup(run):
    got = run(
        """
al = AuthList(ROOT + "/auth")
toks, docs = full_list(3000, parts=3)
done = [al.apply(d) for d in docs]
hits = [al.lookup(t) for t in toks[::97]]
emit({"done": done, "count": al.count, "ver": al.version,
      "hits": [h.to_dict() for h in hits], "miss": al.lookup("00" * 16) is None})
al2 = AuthList(ROOT + "/auth")   # as after a reboot
emit({"count": al2.count, "ver": al2.version, "c": al2.lookup(toks[5]).contract})
"""
    ).results
    first, again = got
    assert first["done"] == [False, False, True] and first["count"] == 3000 and first["ver"] == 1
    assert all(h["status"] == "accepted" and h["contract"].startswith("C") for h in first["hits"])
    assert first["miss"]
    assert again["count"] == 3000 and again["ver"] == 1 and again["c"].startswith("C")


def test_differential_add_change_delete_and_versions(run):
    got = run(
        f"""
al = AuthList(ROOT + "/auth")
toks, docs = full_list(50, ver=5)
al.apply(docs[0])
diff = dict(ver=6, full=False, entries=[
    dict(token="{tok(1000)}", status="accepted", balance=2500, bal_seq=7, contract="PRE"),
    dict(token=toks[0], status="blocked"),
    dict(token=toks[1]),              # no info: delete
])
al.apply(diff)
e = al.lookup("{tok(1000)}")
emit({{"new": e.to_dict(), "blocked": al.lookup(toks[0]).status, "deleted": al.lookup(toks[1]) is None,
       "count": al.count, "ver": al.version}})
emit({{"stale": err(al.apply, dict(ver=6, full=False, entries=[])), "older": err(al.apply, dict(ver=3, full=True, entries=[])),
       "ver": al.version, "count": al.count}})
"""
    ).results
    assert got[0]["new"] == {"token": tok(1000), "status": "accepted", "exp": 0, "contract": "PRE", "balance": 2500, "bal_seq": 7}
    assert got[0]["blocked"] == "blocked" and got[0]["deleted"] and got[0]["count"] == 50 and got[0]["ver"] == 6
    assert "does not move forward" in got[1]["stale"] and "does not move forward" in got[1]["older"]
    assert got[1]["ver"] == 6 and got[1]["count"] == 50


BAD_DOCS = [
    ('dict(ver=2, full=True, entries=[dict(token="XYZ", status="accepted")])', "token"),
    ('dict(ver=2, full=True, entries=[dict(token=toks[0], status="maybe")])', "status"),
    ('dict(ver=2, full=True, entries=[dict(token=toks[1], status="accepted"), dict(token=toks[0], status="accepted")])', "sorted"),
    ('dict(ver=2, full=True, entries=[dict(token=toks[0], status="accepted", balance=1.5)])', "balance"),
    ('dict(ver=2, full=True, entries=[dict(token=toks[0], status="accepted", contract="x" * 40)])', "contract"),
    ('dict(ver=2, full=True, part=1, parts=2, entries=[])', "out of order"),
    ('dict(ver=2, full=True, part=3, parts=2, entries=[])', "bad part"),
    ('dict(full=True, entries=[])', "lacks ver"),
    ('dict(ver=2, full=True, entries="nope")', "list"),
]


@pytest.mark.parametrize("doc,words", BAD_DOCS, ids=[w for _, w in BAD_DOCS])
def test_bad_documents_change_nothing(run, doc, words):
    got = run(
        f"""
al = AuthList(ROOT + "/auth")
toks, docs = full_list(20)
al.apply(docs[0])
msg = err(al.apply, {doc})
emit({{"msg": msg, "ver": al.version, "count": al.count, "still": al.lookup(toks[3]).status,
       "files": sorted(os.listdir(ROOT + "/auth"))}})
"""
    ).value
    assert got["msg"] and words in got["msg"], got
    assert got["ver"] == 1 and got["count"] == 20 and got["still"] == "accepted"
    assert "list.new" not in got["files"]


def test_interrupted_chunked_update_keeps_old_list(run):
    got = run(
        """
al = AuthList(ROOT + "/auth")
toks, docs = full_list(30)
al.apply(docs[0])
toks2, docs2 = full_list(60, ver=2, parts=2)
al.apply(next(docs2))              # first chunk only, then a reboot
al = AuthList(ROOT + "/auth")
emit({"ver": al.version, "count": al.count})
"""
    ).value
    assert got == {"ver": 1, "count": 30}


def test_cache_evicts_invalid_first_then_oldest_and_survives_reboot(run):
    got = run(
        f"""
c = AuthCache(ROOT + "/cache.bin", size=3)
c.put("{tok(1)}", "accepted", 100)
c.put("{tok(2)}", "blocked", 200)
c.put("{tok(3)}", "accepted", 300)
c.put("{tok(4)}", "accepted", 400)     # full: the blocked one goes
r1 = [c.lookup(tok(i)) for i in (1, 2, 3, 4)]
c.put("{tok(5)}", "accepted", 500)     # all accepted: the oldest goes
c = AuthCache(ROOT + "/cache.bin", size=3)
r2 = [c.lookup(tok(i)) for i in (1, 2, 3, 4, 5)]
emit([r1, r2])
"""
    ).value
    assert got[0] == ["accepted", None, "accepted", "accepted"]
    assert got[1] == [None, None, "accepted", "accepted", "accepted"]


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
    c.put(tok(i), "accepted" if i % 3 else "blocked", 1000 + i)
emit([c.lookup(tok(i)) for i in range(95)])
"""
    ).value
    assert got[:90] == [("accepted" if i % 3 else "blocked") for i in range(90)]
    assert got[90:] == [None] * 5
