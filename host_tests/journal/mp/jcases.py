# MicroPython side of the journal tests that are not power cuts: bit flips, a full journal.
import os

import vfs
from jsweep import CONFIG, DIR, MOUNT, mount, payload_for, signed_for
from journal import Journal, JournalFull
from powercut import PowerCutDevice


def _fresh(blocks=64):
    dev = PowerCutDevice(4096, blocks)
    vfs.VfsLfs2.mkfs(dev)
    return dev


def _commit(j, sid=None):
    seq = j.next_seq()
    j.commit_record(seq, payload_for(seq), signed_for(seq), sid)
    return seq


def _filled(records, acked, config=CONFIG):
    """A flash image holding `records` records (the first `acked` acknowledged) and two open sessions."""
    dev = _fresh()
    mount(dev, MOUNT)
    j = Journal(DIR, **config)
    j.recover()
    for n in range(records):
        sid = "S%03d" % n
        j.open_session(sid, {"wh": n * 1000})
        j.checkpoint(sid, {"wh": n * 1000 + 500})
        _commit(j, sid)
    j.ack(acked)
    j.open_session("A", {"wh": 1})
    j.checkpoint("A", {"wh": 2})
    j.open_session("B", {"wh": 3})
    j.close()
    vfs.umount(MOUNT)
    return dev.snapshot()


def flips(trials, seed=7, records=15, acked=4):
    """Flip one bit at a random offset of a random segment file; recover, stream, scrub."""
    image = _filled(records, acked)
    rnd = PowerCutDevice(16, 1, seed=seed)  # its xorshift is the random source
    out = {"trials": 0, "detected": 0, "failures": [], "missing": 0}
    mem = bytearray(len(image))  # one flash image for all trials: 3,000 fresh copies fragment the heap
    for t in range(trials):
        mem[:] = image
        dev = PowerCutDevice(4096, 64, mem=mem)
        mount(dev, MOUNT)
        segs = sorted(n for n in os.listdir(DIR) if n.endswith(".seg"))
        name = segs[rnd.random(len(segs))]
        path = DIR + "/" + name
        with open(path, "rb") as f:
            raw = bytearray(f.read())
        off = rnd.random(len(raw))
        raw[off] ^= 1 << rnd.random(8)
        with open(path, "wb") as f:
            f.write(raw)
        seen = []
        fail = []
        try:
            j = Journal(DIR, on_problem=seen.append, **CONFIG)
            r = j.recover()
            got = []
            for seq, signed in j.pending():
                if signed != signed_for(seq):
                    fail.append("record %d returned corrupted" % seq)
                got.append(seq)
            j.scrub()
            want = list(range(acked + 1, records + 1))
            missing = [s for s in want if s not in got]
            out["missing"] += len(missing)
            if len(missing) > 1 or got != sorted(set(got)) or any(s not in want for s in got):
                fail.append("pending %r (want %r)" % (got, want))
            if r.next_seq < records + 1 or r.next_seq > records + 2:
                fail.append("next seq %d after %d records" % (r.next_seq, records))
            if seen:
                out["detected"] += 1
            else:
                fail.append("flip at %s+%d not detected" % (name, off))
            # The journal goes on: a new record, another reboot, everything acknowledged.
            j.open_session("new", {"wh": 9})
            seq = _commit(j, "new")
            j.close()
            j = Journal(DIR, **CONFIG)
            r2 = j.recover()
            if r2.next_seq != seq + 1 or seq not in [s for s, _ in j.pending()]:
                fail.append("new record %d not kept (next %d)" % (seq, r2.next_seq))
            j.ack(seq)
            j.close()
        except Exception as e:
            fail.append("%s at %s+%d: %r" % (type(e).__name__, name, off, e))
        dev.dead = True
        out["trials"] += 1
        if fail:
            out["failures"].append(fail[:3])
    out["failures"] = out["failures"][:10]
    return out


def full():
    """Fill the journal without acks: sessions refused, nothing lost, room back after acks."""
    dev = _fresh()
    mount(dev, MOUNT)
    j = Journal(DIR, **CONFIG)
    j.recover()
    out = {}
    sessions = 0
    j.open_session("long", {"wh": 0})  # one session stays open throughout: its record must still fit
    while j.can_start_session():
        sid = "S%03d" % sessions
        j.open_session(sid, {"wh": sessions})
        j.checkpoint(sid, {"wh": sessions + 1})
        _commit(j, sid)
        sessions += 1
    out["sessions"] = sessions
    out["full"] = j.full()
    try:
        j.open_session("refused", {"wh": 1})
        out["refused"] = None
    except JournalFull as e:
        out["refused"] = str(e)
    refused_ckpt = 0
    for n in range(50):
        if not j.checkpoint("long", {"wh": n}):
            refused_ckpt += 1
    out["checkpoints_refused"] = refused_ckpt
    long_seq = _commit(j, "long")
    out["usage_full"] = list(j.usage())
    out["full_before_reboot"] = j.full()
    j.close()
    # Reboot: as full as before, every record there and intact.
    j = Journal(DIR, **CONFIG)
    r = j.recover()
    out["full_after_reboot"] = j.full()
    got = [(s, b == signed_for(s)) for s, b in j.pending()]
    out["pending_ok"] = [s for s, ok in got if ok] == list(range(1, long_seq + 1))
    out["problems"] = r.problems
    j.ack(long_seq // 2)
    out["after_half_ack"] = [j.can_start_session(), list(j.usage())]
    j.ack(long_seq)
    out["after_ack"] = [j.can_start_session(), list(j.usage())]
    out["files"] = sorted(os.listdir(DIR))
    j.open_session("again", {"wh": 1})
    _commit(j, "again")
    out["next"] = j.next_seq()
    j.close()
    vfs.umount(MOUNT)
    return out
