"""Authorization lists on the device's flash (issue #18), under MicroPython on LittleFS over the
power-cut RAM flash (sim/mp/powercut.py), wired as app/charger.py wires them: the uplink's Downlink
streams each verified part into billing.authlist through its ListSink, the list's version lives in
list.bin's header (one rename commits both), and every list write asks the journal's flash
reserve (journal.room) first.

- A power cut at every block write while the last part of a version is applied (the list commit,
  the ledger, the downlink state): after the reboot the device holds the old list or the new one,
  reports exactly the version it holds, takes the differential on top of it, refuses one on the
  other, has nothing half-done on flash, and its journal commits a record.
- A 50,000-card list on a 1 MiB flash: it cannot fit (32 bytes a card); it is refused for room
  before anything is written (the list says its size) or part-way (it does not), the old list
  stays, a list that fits is then taken, and the journal still commits a record whenever asked.
"""
from __future__ import annotations

import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from sim.flashfs import public_hex, sign_authlist, write_messages

DEV = "chg-1"
PER = 32  # entries per part, as backend/downlink.py cuts them

SETUP = """
import vfs, os, json
from powercut import PowerCutDevice
from journal_load import payload_for, signed_for
from journal.journal import Journal
from billing.authlist import AuthList, ListSink
from billing.prepaid import Ledger
from uplink.downlink import Downlink
from uplink.service import backend_verifier

M = "/lf"
VERIFY = backend_verifier(KEY_HEX)

def refuse(*a):
    raise ValueError("not in this test")

def stream(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                yield line.encode()

def load(path):
    return list(stream(path))

def mount(dev):
    try:
        vfs.umount(M)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), M)

def boot(dev, jmax, jseg):
    # as app/charger.py: the journal first, then the list and the uplink's Downlink, both kept
    # out of the journal's reserve
    mount(dev)
    j = Journal(M + "/journal", max_bytes=jmax, segment_bytes=jseg)
    j.recover()
    room = lambda n: j.room(M, n)
    al = AuthList(M + "/auth", room)
    led = Ledger(M + "/auth/spent.bin")
    try:
        os.mkdir(M + "/alstage")
    except OSError:
        pass
    ev = []
    dl = Downlink(DEV, VERIFY, M + "/uplink.json", refuse, ListSink(al, led), refuse, ev.append, M + "/alstage",
                  8192, room=room)
    return j, al, dl, ev

def commit(j):
    seq = j.next_seq()
    j.commit_record(seq, payload_for(seq), signed_for(seq))
    return seq

def leftovers():
    return [n for n in os.listdir(M + "/auth") if n == "list.new"] + os.listdir(M + "/alstage")
"""


def tok(i: int) -> str:
    return hashlib.sha256(b"flash-card%d" % i).digest()[:16].hex()


def full_list(ver: int, tokens: list[str], total: bool = True) -> list[dict]:
    ents = [{"token": t, "status": "accepted", "contract": "C%d" % (int(t[:2], 16) % 5)} for t in sorted(tokens)]
    chunks = [ents[i:i + PER] for i in range(0, len(ents), PER)] or [[]]
    size = {"total": len(ents)} if total else {}
    return [{"ver": ver, "full": True, "base": 0, "part": i, "parts": len(chunks), **size, "entries": c}
            for i, c in enumerate(chunks)]


@pytest.fixture(scope="module")
def key():
    return ec.generate_private_key(ec.SECP256R1())


def _run(mpy, key, tmp_path, code: str, files: dict[str, list[dict]], timeout: float = 300):
    paths = {name: str(write_messages(tmp_path / f"{name}.txt", sign_authlist(key, docs))) for name, docs in files.items()}
    head = f"KEY_HEX = {public_hex(key)!r}\nDEV = {DEV!r}\nFILES = {json.dumps(paths)}\n" + SETUP
    return mpy.run(head + code, timeout=timeout, heap="4m")


CUT = """
V1, V2 = load(FILES["v1"]), load(FILES["v2"])
DIFF = {1: load(FILES["d1"]), 2: load(FILES["d2"])}
NEW = {1: 40, 2: 70}

def workload(dev):
    # list 1, then list 2 up to its last part; returns the journal and the Downlink
    j, al, dl, ev = boot(dev, 64 * 1024, 8 * 1024)
    for m in V1:
        dl.handle("authlist", m)
    commit(j)
    for m in V2[:-1]:
        dl.handle("authlist", m)
    return dl

def fresh(cut_at=None, torn=False):
    d = PowerCutDevice(4096, 64, cut_at, torn)
    vfs.VfsLfs2.mkfs(d)
    return d

d = fresh()
dl = workload(d)
w0 = d.writes
assert dl.handle("authlist", V2[-1]), "baseline: list 2 applies"
w1 = d.writes
out = {"writes": w1 - w0, "cuts": 0, "held": {"1": 0, "2": 0}, "failures": []}
for torn in (False, True):
    for k in range(w0 + 1, w1 + 2):
        d = fresh(k, torn)
        try:
            dl = workload(d)
            dl.handle("authlist", V2[-1])
        except Exception:
            pass  # the power went mid-way: whatever raised, the reboot decides
        d = d.reborn()
        j, al, dl, ev = boot(d, 64 * 1024, 8 * 1024)
        held = dl.versions()["authlist"]
        why = []
        if held not in (1, 2) or al.version != held:
            why.append("reports %r, list.bin says %r" % (held, al.version))
        else:
            if al.count != NEW[held] or (al.lookup(TOK_V2_ONLY) is not None) != (held == 2):
                why.append("list of %d cards under version %d" % (al.count, held))
            if leftovers():
                why.append("left on flash: %r" % leftovers())
            other = 3 - held
            if dl.handle("authlist", DIFF[other][0]) or not ev or ev[-1]["reason"] != "base":
                why.append("a differential on %d taken by a device at %d" % (other, held))
            if not dl.handle("authlist", DIFF[held][0]) or al.version != 3 or al.lookup(TOK_DIFF).status != "blocked":
                why.append("the differential on %d refused: %r" % (held, ev[-1:]))
            if dl.versions()["authlist"] != 3:
                why.append("reports %r after the differential" % dl.versions()["authlist"])
        try:
            commit(j)
        except Exception as e:
            why.append("journal: %r" % e)
        out["cuts"] += 1
        if held in (1, 2):
            out["held"][str(held)] += 1
        if why:
            out["failures"].append([k, torn, why])
emit(out)
"""


def test_power_cut_between_list_commit_and_version_save(mpy, key, tmp_path):
    v1 = [tok(i) for i in range(40)]
    v2 = [tok(i) for i in range(10, 80)]  # 70 cards, 3 parts
    diff_tok = v2[0] if v2[0] in v1 else v1[15]
    assert diff_tok in v1 and diff_tok in v2
    files = {"v1": full_list(1, v1), "v2": full_list(2, v2),
             "d1": [{"ver": 3, "full": False, "base": 1, "entries": [{"token": diff_tok, "status": "blocked"}]}],
             "d2": [{"ver": 3, "full": False, "base": 2, "entries": [{"token": diff_tok, "status": "blocked"}]}]}
    code = f"TOK_V2_ONLY = {tok(79)!r}\nTOK_DIFF = {diff_tok!r}\n" + CUT
    r = _run(mpy, key, tmp_path, code, files).value
    print(f"\n[list power cut] {r['cuts']} cut points over the {r['writes']} block writes of the last part "
          f"(lost and torn): old list kept {r['held']['1']}, new list {r['held']['2']}")
    assert r["failures"] == [], r["failures"][:5]
    assert r["cuts"] == 2 * (r["writes"] + 1) and r["writes"] >= 5
    assert r["held"]["1"] > 0 and r["held"]["2"] > 0  # the cut points fall on both sides of the commit


BIG = """
dev = PowerCutDevice(4096, 256)  # 1 MiB
vfs.VfsLfs2.mkfs(dev)
JMAX = 256 * 1024
j, al, dl, ev = boot(dev, JMAX, 32 * 1024)
out = {}

def deliver(name):
    done = False
    for m in stream(FILES[name]):  # one document at a time, as from the broker
        done = dl.handle("authlist", m) or done
    return done

def free():
    st = os.statvfs(M)
    return st[0] * st[4]

out["v1"] = [deliver("v1"), al.version, al.count]
commit(j)
# 30,000 or 50,000 cards (0.96 or 1.6 MB) on 1 MiB: the list says its size, refused before a byte
# of it is written
out["v2"] = [deliver("v2"), al.version, al.count, dl.progress(), leftovers(), [e["reason"] for e in ev]]
commit(j)
# no size given (an older backend): refused when the next part would eat into the journal's reserve
ev.clear()
out["v3"] = [deliver("v3"), al.version, al.count, dl.progress(), leftovers(), [e["reason"] for e in ev], free()]
commit(j)
# a list that fits is taken: the device converges on what it can hold
out["v4"] = [deliver("v4"), al.version, al.count, dl.progress(), al.lookup(TOK4).status, leftovers()]
# the journal fills to its own limit: every record commits
n = 0
while j.can_start_session():
    commit(j)
    n += 1
commit(j)  # and the one a session open at that moment would still close with
out["records"] = [n, j.usage()[0], JMAX, free()]
# the flash is now as full as it may get: a list that would need the journal's reserve is refused
ev.clear()
out["v5"] = [deliver("v5"), al.version, al.count, [e["reason"] for e in ev], leftovers()]
commit(j)
out["after"] = [al.version, al.lookup(TOK4).status, j.next_seq() - 1]
emit(out)
"""


def test_a_list_larger_than_the_flash_is_refused_and_the_journal_keeps_its_share(mpy, key, tmp_path, exhaustive):
    # The list that says its size is refused at its first part, but every part is verified (ES256)
    # first: 30,000 cards (960 KB on 1 MiB), 50,000 with --exhaustive (~30 s on the unix port). Its
    # size-less variant (refused part-way, near the end of what the flash has besides the journal's
    # reserve) uses 25,000 cards by default, 50,000 with --exhaustive.
    big = 50_000 if exhaustive else 30_000
    no_size = 50_000 if exhaustive else 25_000
    files = {"v1": full_list(1, [tok(i) for i in range(1000)]),
             "v2": full_list(2, [tok(i) for i in range(big)]),
             "v3": full_list(3, [tok(i) for i in range(no_size)], total=False),
             "v4": full_list(4, [tok(i) for i in range(10_000)]),
             "v5": full_list(5, [tok(i) for i in range(14_000)], total=False)}  # 448 KB: more than is left
    code = f"TOK4 = {tok(9999)!r}\n" + BIG
    r = _run(mpy, key, tmp_path, code, files, timeout=600).value
    print(f"\n[list on 1 MiB] {json.dumps(r)}")
    assert r["v1"] == [True, 1, 1000]
    done, ver, count, progress, left, reasons = r["v2"]
    assert (done, ver, count, left) == (False, 1, 1000, [])
    assert progress == {"refused": {"ver": 2, "reason": "no-room"}} and reasons == ["no-room"]
    done, ver, count, progress, left, reasons, free = r["v3"]
    assert (done, ver, count, left) == (False, 1, 1000, []) and reasons == ["no-room"]
    assert progress == {"refused": {"ver": 3, "reason": "no-room"}}
    assert r["v4"] == [True, 4, 10_000, None, "accepted", []]
    n, used, jmax, free_end = r["records"]
    assert n > 50 and used > jmax - 8 * 1024  # the journal reached its own limit
    assert free_end < 14_000 * 32
    assert r["v5"][:3] == [False, 4, 10_000] and r["v5"][3] == ["no-room"] and r["v5"][4] == []
    assert r["after"][:2] == [4, "accepted"] and r["after"][2] == n + 5


def test_a_differential_in_parts_merges_from_flash_as_a_model_says(mpy, key, tmp_path):
    """Differential parts in any token order, a token named in several parts (the later part wins),
    deletions of cards that are not there: the list after the merge is the model's. The parts are
    kept on flash as sorted runs (diff.new), never all in RAM: a 1,000-entry differential in 32
    parts applies with a 128 KiB heap on the unix port (64-bit; the entries alone as dicts took 264 KB)."""
    import random

    rnd = random.Random(18)
    base = {t: ("accepted", "C%d" % (int(t[:2], 16) % 5)) for t in (tok(i) for i in range(300))}  # as full_list
    parts = []
    model = dict(base)
    for _ in range(5):
        part = []
        for _ in range(40):
            t = tok(rnd.randrange(400))
            action = rnd.choice(("delete", "blocked", "accepted"))
            if action == "delete":
                part.append({"token": t})
            else:
                part.append({"token": t, "status": action, "contract": "D%d" % rnd.randrange(3)})
        parts.append(part)
        for e in part:
            if "status" in e:
                model[e["token"]] = (e["status"], e["contract"])
            else:
                model.pop(e["token"], None)
    files = {"v1": full_list(1, sorted(base)),
             "v2": [{"ver": 2, "full": False, "base": 1, "part": i, "parts": len(parts), "entries": p}
                    for i, p in enumerate(parts)]}
    code = f"""
TOKS = {[tok(i) for i in range(400)]!r}
dev = PowerCutDevice(4096, 128)
vfs.VfsLfs2.mkfs(dev)
j, al, dl, ev = boot(dev, 64 * 1024, 8 * 1024)
done = [dl.handle("authlist", m) for m in load(FILES["v1"]) + load(FILES["v2"])]
got = {{}}
for t in TOKS:
    e = al.lookup(t)
    if e:
        got[t] = [e.status, e.contract]
emit({{"done": done, "ver": al.version, "count": al.count, "got": got, "events": ev, "left": leftovers() + [
    n for n in os.listdir(M + "/auth") if n == "diff.new"]}})
"""
    r = _run(mpy, key, tmp_path, code, files).value
    assert r["events"] == [] and r["done"][-1] is True and r["ver"] == 2 and r["left"] == []
    assert r["got"] == {t: list(v) for t, v in model.items()} and r["count"] == len(model)

    # 1,000 changes in 32 parts on a 128 KiB heap, straight through AuthList as the sink drives it
    small = mpy.run(f"""
import vfs, os, gc
from blockdev import FileBlockDevice
from billing.authlist import AuthList
import hashlib, binascii
d = FileBlockDevice({str(tmp_path / "small.img")!r}, 4096, 64)  # on a host file: the heap is the list's
vfs.VfsLfs2.mkfs(d)
vfs.mount(vfs.VfsLfs2(d), "/lf")
def tok(i):
    return binascii.hexlify(hashlib.sha256(b"flash-card%d" % i).digest()[:16]).decode()
al = AuthList("/lf/auth")
al.begin(1, True)
al.add([dict(token=t, status="accepted") for t in sorted(tok(i) for i in range(100))])
al.commit()
al.begin(2, False)
for p in range(32):
    ents = []
    for i in range(p * 32, min(1000, p * 32 + 32)):
        ents.append(dict(token=tok(1000 - i), status="blocked", contract="X%d" % (i % 4)) if i % 5 else dict(token=tok(i)))
    al.add(ents)
    ents = None
    gc.collect()
al.commit()
emit([al.version, al.count, al.lookup(tok(999)).status, al.lookup(tok(10)) is None, gc.mem_free() > 0])
""", heap="128k").value
    # tok(1..800) set blocked (i % 5 != 0 -> token 1000 - i), tok(0, 5, ..., 995) deleted where listed
    # every j in 1..999 with j % 5 != 0 is on the list, blocked; the multiples of 5 are gone
    assert small == [2, 800, "blocked", True, True]


def test_leftovers_of_a_reboot_are_removed_at_boot(key, tmp_path):
    """What a reboot can leave mid-update (a list being built, a differential's runs, parts staged
    ahead of their turn, spooled documents) is removed when the charger's list and uplink are built;
    the committed list stays."""
    from sim.flashfs import DOWNLINK_MP, run_on_flash

    config = {"device_id": DEV, "backend_key": public_hex(key)}
    msgs = write_messages(tmp_path / "v1.txt", sign_authlist(key, full_list(1, [tok(i) for i in range(50)])))
    got = run_on_flash(tmp_path / "dev", DOWNLINK_MP + f"""
up, al = device_uplink(json.loads({json.dumps(config)!r}), ROOT)
for m in messages({str(msgs)!r}):
    up.downlink.handle("authlist", m)
for p in ("auth/list.new", "auth/diff.new", "alstage/al3.json", "alstage/al9.json", "down0.jws", "down1.jws.json"):
    with open(ROOT + "/" + p, "w") as f:
        f.write("x" * 3000)
before = sorted(os.listdir(ROOT + "/auth")) + sorted(os.listdir(ROOT + "/alstage"))
up, al = device_uplink(json.loads({json.dumps(config)!r}), ROOT)  # a reboot
emit({{"before": before, "auth": sorted(os.listdir(ROOT + "/auth")), "stage": os.listdir(ROOT + "/alstage"),
       "down": [n for n in os.listdir(ROOT) if n.startswith("down")], "ver": al.version, "count": al.count,
       "reported": up.downlink.versions()["authlist"]}})
""").value
    assert "list.new" in got["before"] and "al3.json" in got["before"]
    assert got["auth"] == ["contracts.bin", "list.bin"] and got["stage"] == [] and got["down"] == []
    assert (got["ver"], got["count"], got["reported"]) == (1, 50, 1)


def test_parts_ahead_of_their_turn_are_staged_within_a_bound(mpy, key, tmp_path):
    """Parts 1..30 of a 31-part list before part 0: 16 wait on flash, the others are dropped; part 0
    takes the 16 in; the dropped ones, sent again, finish the list; nothing stays staged."""
    files = {"v1": full_list(1, [tok(i) for i in range(31 * PER)])}
    code = """
dev = PowerCutDevice(4096, 128)
vfs.VfsLfs2.mkfs(dev)
j, al, dl, ev = boot(dev, 64 * 1024, 8 * 1024)
docs = load(FILES["v1"])
out = {"early": [dl.handle("authlist", m) for m in docs[1:]]}
out["staged"] = len(os.listdir(M + "/alstage"))
out["first"] = dl.handle("authlist", docs[0])
out["progress"] = dl.progress()
out["again"] = [dl.handle("authlist", m) for m in docs[1:]]
out.update(ver=al.version, count=al.count, left=leftovers(), events=ev, after=dl.progress())
emit(out)
"""
    r = _run(mpy, key, tmp_path, code, files).value
    assert r["early"] == [False] * 30 and r["staged"] == 16 and r["first"] is False
    assert r["progress"] == {"collecting": {"ver": 1, "got": 17, "parts": 31}}
    assert r["again"] == [False] * 29 + [True]
    assert (r["ver"], r["count"], r["left"], r["events"], r["after"]) == (1, 31 * PER, [], [], None)
