"""The session journal under MicroPython on LittleFS: records, sessions, acks, damage, room."""
from __future__ import annotations

import hashlib


def test_records_chain_and_survive_reboot(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        first = j.recover()
        hashes = [j.prev_hash()]
        for n in range(30):
            commit(j)
            hashes.append(j.prev_hash())
        j.close()
        remount(d)
        j = Journal(D, **CFG)
        rep = j.recover()
        emit({"first": [first.next_seq, first.prev_hash, first.acked_seq, first.problems],
              "hashes": hashes, "next": rep.next_seq, "prev": rep.prev_hash, "pending": rep.pending,
              "records": [[s, b == signed_for(s)] for s, b in j.pending()], "problems": rep.problems,
              "segments": rep.segments, "payloads": {s: payload_for(s).decode() for s in (1, 2, 17, 30)}})
    """)
    assert r["first"] == [1, "", 0, []]
    assert r["hashes"][0] == ""
    assert len(set(r["hashes"])) == 31
    for seq, payload in r["payloads"].items():  # the SHA-256 of the payload, checked by CPython
        assert r["hashes"][int(seq)] == hashlib.sha256(payload.encode()).hexdigest()
    assert r["next"] == 31 and r["prev"] == r["hashes"][30] and r["pending"] == 30
    assert r["records"] == [[s, True] for s in range(1, 31)]
    assert r["problems"] == [] and r["segments"] > 2  # 8 KB segments: rotation happened


def test_bad_input_is_refused_and_changes_nothing(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        j.recover()
        j.open_session("a", {"wh": 1})
        commit(j)
        before = [j.usage(), j.next_seq(), j.prev_hash(), j.open_sessions()]
        errors = []
        for fn in (lambda: j.commit_record(5, b"p", b"s"),                 # not the next seq
                   lambda: j.commit_record(2, b"p", b"s", "nope"),         # unknown session
                   lambda: j.commit_record(2, "p", b"s"),                  # not bytes
                   lambda: j.commit_record(2, b"p", b""),                  # empty record
                   lambda: j.open_session("a", {"wh": 2}),                 # already open
                   lambda: j.open_session("", {"wh": 2}),
                   lambda: j.open_session("x" * 65, {"wh": 2}),
                   lambda: j.open_session("b", [1, 2]),
                   lambda: j.open_session("b", {"blob": "x" * 3000}),
                   lambda: j.checkpoint("zz", {"wh": 1}),
                   lambda: j.drop_session("zz"),
                   lambda: Journal(D, max_bytes=1000),
                   lambda: Journal(D, max_bytes=16384, segment_bytes=16384)):
            try:
                fn()
                errors.append(None)
            except ValueError as e:
                errors.append(str(e))
        acks = [j.ack(0), j.ack(2), j.ack(-1), j.ack("1"), j.acked_seq(), j.ack(1), j.ack(1), j.acked_seq()]
        after = [j.usage(), j.next_seq(), j.prev_hash(), j.open_sessions()]
        emit({"errors": errors, "before": before, "after": after, "acks": acks})
    """)
    assert all(r["errors"]), r["errors"]
    assert "not the next seq" in r["errors"][0]
    assert r["acks"] == [False, False, False, False, 0, True, False, 1]
    assert r["after"][1:] == r["before"][1:]


def test_open_sessions_are_reported_after_a_reboot(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        j.recover()
        j.open_session("A", {"wh": 1000, "token": "t1", "tariff": {"id": "T", "ver": 2}})
        j.open_session("B", {"wh": 5000})
        j.open_session("C", {"wh": 7000})
        for n in range(30):  # enough to rotate segments while A and B stay open
            j.checkpoint("A", {"wh": 1000 + n, "cost": n})
            j.open_session("x%d" % n, {"wh": n})
            j.ack(commit(j, "x%d" % n))
        j.drop_session("C")
        segs = j._last_segno
        j.close()
        remount(d)
        j = Journal(D, **CFG)
        rep = j.recover()
        opened = rep.open_sessions
        # The charger closes them as power-loss records.
        commit(j, "A")
        commit(j, "B")
        j.close()
        j = Journal(D, **CFG)
        emit({"open": opened, "after": j.recover().open_sessions, "segs": segs})
    """)
    assert r["segs"] >= 5  # rotated and trimmed while A and B stayed open
    assert r["open"] == {
        "A": {"start": {"wh": 1000, "token": "t1", "tariff": {"id": "T", "ver": 2}}, "last": {"wh": 1029, "cost": 29}},
        "B": {"start": {"wh": 5000}, "last": None},
    }
    assert r["after"] == {}


def test_pending_streams_in_order_while_the_journal_changes(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        j.recover()
        for n in range(10):
            commit(j)
        out = {"limit": [s for s, _ in j.pending(limit=3)],
               "after": [s for s, _ in j.pending(after_seq=7)],
               "after_past": [s for s, _ in j.pending(after_seq=99)]}
        seen = []
        for s, b in j.pending():
            seen.append([s, b == signed_for(s)])
            if s == 2:
                j.ack(6)          # removes segments under the reader
            if s == 8:
                commit(j)         # appends to the segment being read
        out["seen"] = seen
        out["acked"] = j.acked_seq()
        emit(out)
    """)
    assert r["limit"] == [1, 2, 3]
    assert r["after"] == [8, 9, 10]
    assert r["after_past"] == []
    assert [s for s, ok in r["seen"] if ok] == [1, 2, 7, 8, 9, 10, 11]  # acked ones skipped
    assert all(ok for _, ok in r["seen"])


def test_recovery_reads_only_the_newest_segment(jrun):
    r = jrun("""
        out = []
        for records in (20, 300):
            d = fresh(256)
            j = Journal(D, max_bytes=900 * 1024, segment_bytes=8 * 1024)
            j.recover()
            for n in range(records):
                commit(j)
            j.close()
            remount(d)
            rep = Journal(D, max_bytes=900 * 1024, segment_bytes=8 * 1024).recover()
            out.append([rep.pending, rep.segments, rep.bytes_read])
        emit(out)
    """, heap="16M")
    (p1, s1, read1), (p2, s2, read2) = r
    assert (p1, p2) == (20, 300) and s2 > 10 * s1 // 2
    assert read1 <= 8 * 1024 + 4096 and read2 <= 8 * 1024 + 4096


def test_damaged_record_is_reported_once_quarantined_and_the_rest_read(jrun):
    r = jrun("""
        d = fresh()
        seen = []
        j = Journal(D, on_problem=seen.append, **CFG)
        j.recover()
        for n in range(12):
            commit(j)
        first = sorted(n for n in os.listdir(D) if n.endswith(".seg"))[0]
        with open(D + "/" + first, "rb") as f:
            raw = bytearray(f.read())
        raw[-100] ^= 0x10   # inside the body of the segment's last record
        with open(D + "/" + first, "wb") as f:
            f.write(raw)
        got1 = [[s, b == signed_for(s)] for s, b in j.pending()]
        n1 = len(seen)
        got2 = [s for s, b in j.pending()]
        q = os.listdir(D + "/q")
        problem = seen[0]
        j.ack(12)
        emit({"got1": got1, "n1": n1, "n2": len(seen), "got2": got2, "q": q, "problem": problem,
              "q_after_ack": os.listdir(D + "/q"), "next": j.next_seq()})
    """)
    lost = r["problem"]["seq"]
    assert r["problem"]["kind"] == "corrupt" and lost is not None
    assert r["got1"] == [[s, True] for s in range(1, 13) if s != lost]
    assert r["n1"] == 1 and r["n2"] == 1  # reported once
    assert r["got2"] == [s for s in range(1, 13) if s != lost]
    assert len(r["q"]) == 1 and r["q_after_ack"] == []
    assert r["next"] == 13


def test_garbage_tail_is_dropped_and_seqs_are_never_reused(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        j.recover()
        for n in range(3):
            commit(j)
        j.close()
        active = sorted(n for n in os.listdir(D) if n.endswith(".seg"))[-1]
        # A torn append, as on a file system without atomic appends: half a header.
        with open(D + "/" + active, "ab") as f:
            f.write(b"\\xe5\\x4a\\x44\\x00\\x10")
        j = Journal(D, **CFG)
        torn = j.recover()
        commit(j)
        j.close()
        # The last record's header damaged: its seq must not be handed out again.
        active = sorted(n for n in os.listdir(D) if n.endswith(".seg"))[-1]
        j = Journal(D, **CFG)
        j.recover()
        size = j._segs[-1][2]
        j.close()
        with open(D + "/" + active, "rb") as f:
            raw = bytearray(f.read())
        # find the last record's header: the last magic in the file
        at = bytes(raw).rfind(b"\\xe5\\x4a\\x0f")  # a compact record (CREC)
        raw[at + 9] ^= 0x01   # a bit of its seq
        with open(D + "/" + active, "wb") as f:
            f.write(raw)
        j = Journal(D, **CFG)
        hit = j.recover()
        emit({"torn": [torn.next_seq, [p["kind"] for p in torn.problems]],
              "hit": [hit.next_seq, sorted(set(p["kind"] for p in hit.problems))],
              "pending": [s for s, _ in j.pending()]})
    """)
    assert r["torn"] == [4, ["torn"]]
    assert r["hit"][0] == 5  # seq 4 was damaged: 5 is next, 4 is never reused
    assert "chain" in r["hit"][1]
    assert r["pending"] == [1, 2, 3]


def test_a_failed_write_heals_on_the_next_call(jrun):
    r = jrun("""
        d = fresh()
        j = Journal(D, **CFG)
        j.recover()
        commit(j)
        j.open_session("s", {"wh": 1})
        d.cut_at = d.writes + 2           # the flash refuses a write mid-append ...
        try:
            commit(j, "s")
            failed = False
        except OSError:
            failed = True
        d.dead = False                    # ... and works again
        d.cut_at = None
        seq = j.next_seq()
        j.commit_record(seq, payload_for(seq), signed_for(seq), "s")
        remount(d)
        j2 = Journal(D, **CFG)
        rep = j2.recover()
        emit({"failed": failed, "seq": seq, "next": rep.next_seq, "open": rep.open_sessions,
              "pending": [[s, b == signed_for(s)] for s, b in j2.pending()]})
    """)
    assert r["failed"] and r["seq"] == 2 and r["next"] == 3 and r["open"] == {}
    assert r["pending"] == [[1, True], [2, True]]


def test_crc32_fallback_matches_binascii(jrun):
    r = jrun("""
        import sys
        real = binascii.crc32
        class NoCrc:
            hexlify = binascii.hexlify
        sys.modules["binascii"] = NoCrc
        del sys.modules["journal.frame"]
        import journal.frame as fallback
        sys.modules["binascii"] = binascii
        data = bytes(range(256)) * 3
        emit([fallback.crc32 is not real, fallback.crc32(b"123456789"), fallback.crc32(data) == real(data),
              fallback.crc32(data[100:], fallback.crc32(data[:100])) == real(data)])
    """)
    assert r == [True, 0xCBF43926, True, True]


def test_full_journal_refuses_sessions_and_loses_nothing(jrun):
    r = jrun("""
        import jcases
        emit(jcases.full())
    """)
    assert r["sessions"] >= 20 and r["full"] and r["full_after_reboot"] == r["full_before_reboot"]
    assert r["refused"] and r["refused"].startswith("journal full")
    assert r["pending_ok"] and r["problems"] == []
    used, cap, unacked = r["usage_full"]
    assert used <= cap and unacked == r["sessions"] + 1  # the open session's record still fitted
    assert r["after_half_ack"][0] is True
    assert r["after_ack"][0] is True and r["after_ack"][1][2] == 0 and r["after_ack"][1][0] < 4096
    assert len([f for f in r["files"] if f.endswith(".seg")]) == 1
