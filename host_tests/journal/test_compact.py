"""The journal's compact forms (issue #23): records kept as dense header + dense payload + raw
signature and rebuilt byte-exact, open sessions in small slot files, and what that saves in flash
erases. The dense format is checked by a decoder written here from the format's description in
firmware/journal/dense.py, not by the firmware's own."""
from __future__ import annotations

import base64
import binascii
import json

from hypothesis import given, settings

from host_tests.journal.conftest import MP
from hypothesis import strategies as st

# JSON values like the charger's: objects of short keys, ints, strings (hex-ish ones too), lists.
_text = st.one_of(st.text(max_size=12), st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=80))
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=20,
)


def _reference_decode(data: bytes, phrases: list[bytes]) -> bytes:
    """The dense format as documented: 0x00 b literal, 0x01..0x1A phrase, 0x1B i phrase 26+i,
    0x1C/0x1D n: 2n lower/upper-case hex digits packed in n bytes."""
    out, i = bytearray(), 0
    while i < len(data):
        c = data[i]
        if c >= 0x20:
            out.append(c)
            i += 1
        elif c == 0x00:
            out.append(data[i + 1])
            i += 2
        elif c <= 0x1A:
            out += phrases[c - 1]
            i += 1
        elif c == 0x1B:
            out += phrases[26 + data[i + 1]]
            i += 2
        elif c in (0x1C, 0x1D):
            n = data[i + 1]
            h = data[i + 2 : i + 2 + n].hex()
            out += (h if c == 0x1C else h.upper()).encode()
            i += 2 + n
        else:
            raise AssertionError(f"reserved code {c:#x}")
    return bytes(out)


@settings(max_examples=1, deadline=None)
@given(st.lists(_json, min_size=150, max_size=150), st.lists(st.binary(max_size=300), min_size=50, max_size=50))
def test_dense_round_trip_matches_the_documented_format(mpy, docs, blobs):
    texts = [json.dumps(d, separators=(",", ":")).encode() for d in docs] + blobs
    texts += [b"", b"\x00\x1f\x1e", b"abcdef0123", b"ABCDEF0123", b"0" * 300, b"aF" * 40, b'","excl":1',
              b"\x01" * 200, b"ABCDEF" * 50 + b"\x00" + b'"EUR"' * 30]
    r = mpy.run(f"""
import binascii
from journal import dense

def streamed(e, piece, cap):
    # as crec.Reader decodes: src in pieces as read from flash, text into a fixed buffer, emptied
    # once a step left it fuller than a 3-byte group; a code cut by a piece's end is read again
    # (a piece holds the longest code, 66 bytes, as the reader's 192 do)
    dst, out, i = bytearray(cap), bytearray(), 0
    p = 0
    while i < len(e):
        n = min(piece, len(e) - i)
        used, p = dense.decode_to(memoryview(e)[i:i + n], n, dst, p, i + n >= len(e))
        i += used
        k = p // 3 * 3 if i < len(e) else p
        out.extend(dst[:k])
        dst[:p - k] = dst[k:p]
        p -= k
    return bytes(out)

out = []
for t in {[base64.b64encode(t).decode() for t in texts]!r}:
    t = binascii.a2b_base64(t)
    e = dense.pack(t)
    same = all(streamed(e, piece, cap) == t for piece, cap in ((66, 130), (67, 131), (100, 200), (192, 384)))
    out.append([binascii.hexlify(e).decode(), dense.decode(e) == t and same])
emit({{"out": out, "phrases": [binascii.hexlify(p).decode() for p in dense.PHRASES]}})
""").value
    phrases = [bytes.fromhex(p) for p in r["phrases"]]
    for t, (enc, back) in zip(texts, r["out"]):
        e = bytes.fromhex(enc)
        assert back, t
        assert _reference_decode(e, phrases) == t
        assert len(e) <= len(t) + sum(b < 0x20 for b in t)  # never longer, but for escaped control bytes


def test_phrase_table_is_append_only(mpy):
    # Journals on flash are written with this table: changing or reordering an entry would read
    # them wrong. Appending is allowed: update the count and the pinned hash of the first entries.
    r = mpy.run("""
import binascii, hashlib
from journal import dense

def tables_ok():
    # the written-out tables, derived again from PHRASES
    P = dense.PHRASES
    firsts = []
    for p in P:
        if p[0] not in firsts:
            firsts.append(p[0])
    cls = bytearray(256)
    for c in range(32):
        cls[c] = 8
    for c in b"0123456789abcdef":
        cls[c] |= 2
    for c in b"0123456789ABCDEF":
        cls[c] |= 4
    rows = []
    for row, c in enumerate(sorted(firsts)):
        cls[c] |= 1 | row << 4
        rows.append(bytes(sorted([k for k in range(len(P)) if P[k][0] == c], key=lambda k: (-len(P[k]), k))))
    return bytes(cls) == dense._CLASS and tuple(rows) == dense._BY_FIRST and dense._CODE == bytes(range(27))

emit({"n": len(dense.PHRASES), "first86": binascii.hexlify(hashlib.sha256(b"\\n".join(dense.PHRASES[:86])).digest()).decode(),
      "starts": [p[0] for p in dense.PHRASES], "short": [len(p) for p in dense.PHRASES], "tables": tables_ok()})
""").value
    assert r["n"] <= 26 + 256
    assert r["first86"] == PINNED_PHRASES_SHA256
    hexdigits = b"0123456789abcdefABCDEF"
    assert not any(c in hexdigits for c in r["starts"])  # a hex run is never split by a phrase
    assert min(r["short"]) >= 2
    assert r["tables"]  # dense.py's written-out tables match PHRASES


PINNED_PHRASES_SHA256 = "dc445967376fa984636007d256c42b20aa8921dae43202f6e2347a126648ddf8"


def test_dense_refuses_damaged_codes(mpy):
    r = mpy.run("""
from journal import dense
out = []
for bad in (b"\\x1e", b"\\x1f", b"\\x1b\\xff", b"\\x1c\\x00", b"\\x1c\\x41" + b"x" * 65, b"\\x1c\\x04ab", b"\\x00"):
    try:
        dense.decode(bad)
        out.append(None)
    except ValueError as e:
        out.append(type(e).__name__)
emit(out)
""").value
    assert r == ["DenseError"] * 7


def test_records_are_kept_compact_and_come_back_byte_exact(jrun):
    r = jrun("""
        from journal import frame
        d, j = started(128, max_bytes=256 * 1024, segment_bytes=32 * 1024)
        sent = 0
        for n in range(24):
            sent += len(signed_for(commit(j)))
        # kept as sent: not a JWS, a JWS of another payload, a non-canonical signature part
        odd = [b"not a jws at all", signed_for(3), signed_for(5)[:-1] + b"B"]
        for s in odd:
            seq = j.next_seq()
            j.commit_record(seq, payload_for(seq), s)
        kinds = []
        for seg in j._segs:
            with open(j._seg_path(seg), "rb") as f:
                kinds += [e[2] for e in frame.Reader(f, seg[2]) if e[2] != frame.BASE]
        whole = [[s, b == (signed_for(s) if s <= 24 else odd[s - 25])] for s, b in j.pending()]
        pieces = []
        for size in (1, 5, 64, 512):
            ok = True
            for s, rec in j.pending(on_flash=True):
                want = signed_for(s) if s <= 24 else odd[s - 25]
                buf = bytearray(size)
                got = bytearray()
                while True:
                    k = rec.readinto(memoryview(buf))
                    if not k:
                        break
                    got.extend(buf[:k])
                ok = ok and len(rec) == len(want) and bytes(got) == want
            pieces.append(ok)
        emit({"kinds": kinds, "whole": whole, "pieces": pieces, "used": j.usage()[0], "sent": sent,
              "CREC": frame.CREC, "REC": frame.REC})
    """, heap="8M")
    assert r["kinds"] == [r["CREC"]] * 24 + [r["REC"]] * 3
    assert r["whole"] == [[s, True] for s in range(1, 28)]
    assert r["pieces"] == [True] * 4
    assert r["used"] < r["sent"] * 0.4  # the segments hold under 40 % of the JWS bytes


def test_open_sessions_live_in_slot_files_not_in_the_segments(jrun):
    r = jrun("""
        from journal import frame
        d, j = started()
        j.open_session("A", {"wh": 1000, "token": "0123456789abcdef0123456789abcdef", "tariff": "std"})
        j.open_session("B", {"wh": 5000})
        for n in range(3):
            j.checkpoint("B", {"t": 1760000000 + n, "wh": 5000 + n, "cost": n})
        files = sorted(n for n in os.listdir(D) if not n.endswith(".seg"))
        kinds = []
        for seg in j._segs:
            with open(j._seg_path(seg), "rb") as f:
                kinds += [e[2] for e in frame.Reader(f, seg[2])]
        sizes = {n: os.stat(D + "/" + n)[6] for n in files if n[0] in "oc"}
        j.close()
        remount(d)
        j = Journal(D, **CFG)
        opened = j.recover().open_sessions
        commit(j, "A")
        j.drop_session("B")
        left = sorted(n for n in os.listdir(D) if not n.endswith(".seg"))
        j.close()
        j = Journal(D, **CFG)
        emit({"files": files, "kinds": kinds, "BASE": frame.BASE, "sizes": sizes, "open": opened, "left": left,
              "after": j.recover().open_sessions})
    """)
    assert r["files"] == ["c1", "o0", "o1", "q"]
    assert r["kinds"] == [r["BASE"]]  # sessions add nothing to the segments until their record
    assert max(r["sizes"].values()) <= 128  # small enough to live in LittleFS's metadata
    assert r["open"] == {
        "A": {"start": {"wh": 1000, "token": "0123456789abcdef0123456789abcdef", "tariff": "std"}, "last": None},
        "B": {"start": {"wh": 5000}, "last": {"t": 1760000002, "wh": 5002, "cost": 2}},
    }
    assert r["left"] == ["ack", "q"] or r["left"] == ["q"]
    assert r["after"] == {}


def test_a_cut_between_the_record_and_freeing_its_slot_closes_the_session(jrun):
    r = jrun("""
        d, j = started()
        j.open_session("A", {"wh": 1})
        j.checkpoint("A", {"wh": 2})
        for n in range(12):  # the record lands in a later segment than the session's start
            commit(j)
        saved = {n: open(D + "/" + n, "rb").read() for n in ("o0", "c0")}
        seq = commit(j, "A")
        for n, raw in saved.items():  # the slot files as a cut just after the record leaves them
            with open(D + "/" + n, "wb") as f:
                f.write(raw)
        # leftovers of other cuts: a checkpoint without its start, an empty start (cut at creation)
        with open(D + "/c7", "wb") as f:
            f.write(saved["c0"])
        open(D + "/o3", "wb").close()
        j.close()
        remount(d)
        j = Journal(D, **CFG)
        rep = j.recover()
        emit({"open": rep.open_sessions, "problems": rep.problems, "seq": seq, "next": rep.next_seq,
              "files": sorted(n for n in os.listdir(D) if n[0] in "oc")})
    """)
    assert r["open"] == {} and r["problems"] == []
    assert r["next"] == r["seq"] + 1
    assert r["files"] == []


def test_a_damaged_slot_file_is_reported_and_quarantined(jrun):
    r = jrun("""
        d, j = started()
        j.open_session("A", {"wh": 1})
        j.open_session("B", {"wh": 2})
        j.checkpoint("B", {"wh": 3})
        j.close()
        raw = bytearray(open(D + "/o0", "rb").read())
        raw[-1] ^= 0x10
        with open(D + "/o0", "wb") as f:
            f.write(raw)
        raw = bytearray(open(D + "/c1", "rb").read())
        raw[-2] ^= 0x01
        with open(D + "/c1", "wb") as f:
            f.write(raw)
        j = Journal(D, **CFG)
        rep = j.recover()
        emit({"open": rep.open_sessions, "problems": [p["kind"] for p in rep.problems], "q": len(os.listdir(D + "/q"))})
    """)
    assert r["open"] == {"B": {"start": {"wh": 2}, "last": None}}
    assert r["problems"] == ["slot", "slot"]
    assert r["q"] == 2


def test_sessions_of_an_older_journal_move_into_slots(jrun):
    r = jrun("""
        from journal import frame
        d, j = started()
        # as older firmware journaled sessions: entries in the segment, bodies plain JSON
        j._write(frame.OPEN, j.next_seq(), b"L", b'{"wh": 5, "token": "t"}')
        j._write(frame.CHECK, j.next_seq(), b"L", b'{"wh": 9}')
        j._write(frame.OPEN, j.next_seq(), b"M", b'{"wh": 6}')
        j._write(frame.DROP, j.next_seq(), b"M", b"")
        j._write(frame.OPEN, j.next_seq(), b"N", b'{"wh": 7}')
        seq = j.next_seq()
        j._write(frame.REC, seq, binascii.unhexlify(hash_hex(seq)) + b"N", signed_for(seq))
        j.close()
        j = Journal(D, **CFG)
        first = j.recover().open_sessions
        files = sorted(n for n in os.listdir(D) if n[0] in "oc")
        j.close()
        j = Journal(D, **CFG)
        second = j.recover().open_sessions
        pending = [[s, b == signed_for(s)] for s, b in j.pending()]
        commit(j, "L")
        j.close()
        j = Journal(D, **CFG)
        emit({"first": first, "second": second, "files": files, "pending": pending, "after": j.recover().open_sessions})
    """)
    want = {"L": {"start": {"wh": 5, "token": "t"}, "last": {"wh": 9}}}
    assert r["first"] == want and r["second"] == want
    assert r["files"] == ["c0", "o0"]
    assert r["pending"] == [[1, True]]
    assert r["after"] == {}


def test_a_session_costs_under_two_block_erases(jrun):
    # Counted on the block device under LittleFS (not timed): open, 3 checkpoints, the signed
    # record, its ack, over 60 sessions. Before the compact forms: 5.8 erases per session.
    r = jrun("""
        d, j = started(256, max_bytes=512 * 1024, segment_bytes=32 * 1024)
        e0 = d.erases
        for n in range(60):
            sid = "S%d" % n
            j.open_session(sid, {"wh": n * 1000, "token": "0123456789abcdef0123456789abcdef", "tariff": "std"})
            for c in range(3):
                j.checkpoint(sid, {"t": 1760000000 + c * 60, "wh": n * 1000 + c * 100, "cost": c * 37})
            j.ack(commit(j, sid))
        per_session = d.erases - e0
        e0 = d.erases
        j.open_session("long", {"wh": 1})
        for c in range(60):
            j.checkpoint("long", {"t": 1760000000 + c * 60, "wh": 1 + c * 180, "cost": c * 11})
        emit({"sessions": per_session, "checkpoints": d.erases - e0})
    """, heap="8M")
    assert r["sessions"] <= 2 * 60
    assert r["checkpoints"] <= 6  # an hour of 60 s checkpoints: a tenth of an erase each at most


def test_the_chargers_seal_commits_compact_on_a_heap_of_small_holes(mpy):
    """record.seal with commit into the journal (the charger's path) on a heap chopped into
    512-byte holes: the compact body is built in pieces of at most 256 bytes, so the record is
    committed, and it comes back as exactly the JWS the copying path makes."""
    from host_tests.crypto.conftest import RFC_PRIV, session_fields

    fields = session_fields()
    fields["cost"]["lines"] = [  # a time-of-day session: its compact body is over 512 bytes
        {"billed": 3600 + k, "dim": "ENERGY", "el": k, "excl": 120 + k, "from": 1760000000 + 900 * k, "incl": 143 + k,
         "price": 3950 - 100 * k, "qty": 3600 + k, "to": 1760000900 + 900 * k, "unit": "Wh", "vat": 1900}
        for k in range(4)]
    res = mpy.run(f"""
import gc, json
from crypto import keys, canon, p256
from billing import record
from journal import Journal
from powercut import PowerCutDevice
from journal_load import mount
import vfs
key = keys.Key({RFC_PRIV})
p256.comb_table()
canon.reserve(4096)
dev = PowerCutDevice(4096, 24)
vfs.VfsLfs2.mkfs(dev)
mount(dev, "/jf")
j = Journal("/jf/journal", max_bytes=32 * 1024, segment_bytes=8 * 1024)
j.recover()
j.open_session("S", {{"wh": 1}})
f = json.loads({json.dumps(fields)!r})
gc.collect()
pieces = [None] * 1600  # made first: a list grown while filling would leave larger holes behind
crumbs = [None] * 3000
n = 0
try:
    while n < len(pieces):
        pieces[n] = bytearray(496)
        n += 1
except MemoryError:
    pass
try:  # and the smaller holes left over: no freed piece may merge with one
    for k in range(len(crumbs)):
        crumbs[k] = bytearray(8)
except MemoryError:
    pass
for i in range(0, n, 2):
    pieces[i] = None
gc.collect()
out = {{"largest": 0}}
for size in (512, 640, 768, 1024, 2048):
    try:
        bytearray(size - 16)
        out["largest"] = size
    except MemoryError:
        break
try:
    record.seal(key, f, lambda p, s: j.commit_record(j.next_seq(), p, s, "S"))
    out["committed"] = j.next_seq() - 1
except MemoryError:
    out["committed"] = "MemoryError"
pieces = crumbs = None
gc.collect()
want = record.seal(key, f)[1]
out["same"] = [b == want for _, b in j.pending()]
out["open"] = j.open_sessions()
out["n"] = n
out["sizes"] = [len(want), j.usage()[0]]
emit(out)
""", extra_path=[MP], heap="768k").value
    assert res["n"] < 1600 and res["largest"] == 512, res  # the heap was full, then holes of 512 bytes
    assert res["committed"] == 1 and res["same"] == [True] and res["open"] == {}, res
