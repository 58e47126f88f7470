# MicroPython side of the journal power-cut tests: a charger-like workload on LittleFS over the
# power-cut block device, then a reboot (remount, recover) and the checks, many cut points per process.
import hashlib

import vfs
from binascii import hexlify
from journal import Journal
from powercut import PowerCutDevice
from journal_load import mount as _mount, payload_for, signed_for

MOUNT = "/jflash"
DIR = MOUNT + "/journal"
SESSIONS = 24
BLOCKS = 64
CONFIG = {"max_bytes": 64 * 1024, "segment_bytes": 8 * 1024, "record_reserve": 4096}


def configure(sessions=24, **config):
    """Workload size and journal settings for the following runs."""
    global SESSIONS, CONFIG
    SESSIONS = sessions
    CONFIG = dict(CONFIG)
    CONFIG.update(config)


def mount(dev, at=MOUNT):
    _mount(dev, at)


def hash_hex(seq):
    return hexlify(hashlib.sha256(payload_for(seq)).digest()).decode() if seq else ""


class Charger:
    """Drives the journal like the charger does and remembers what the journal confirmed."""

    def __init__(self, j):
        self.j = j
        self.committed = 0  # last seq whose commit_record returned
        self.acked = 0  # last ack that returned True
        self.open = {}  # sid -> last checkpoint confirmed (None: start only)
        self.inflight = None  # (op, sid, value) of the call the power cut interrupted
        self.marks = []  # (writes before, writes after, what) of calls that rotate, trim or ack

    def _call(self, op, sid, value, fn, *args):
        self.inflight = (op, sid, value)
        segs = self.j._last_segno, len(self.j._segs)
        fn(*args)
        self.inflight = None
        return segs != (self.j._last_segno, len(self.j._segs))

    def open_session(self, sid, n):
        self._call("open", sid, None, self.j.open_session, sid, {"wh": 1000 * n, "token": "t%d" % n, "tariff": {"id": "T", "ver": 3}})
        self.open[sid] = None

    def checkpoint(self, sid, wh):
        data = {"wh": wh, "cost": wh // 3}
        self._call("check", sid, data, self.j.checkpoint, sid, data)
        self.open[sid] = data

    def commit(self, sid):
        seq = self.j.next_seq()
        self._call("commit", sid, seq, self.j.commit_record, seq, payload_for(seq), signed_for(seq), sid)
        self.committed = seq
        self.open.pop(sid, None)

    def drop(self, sid):
        self._call("drop", sid, None, self.j.drop_session, sid)
        del self.open[sid]

    def ack(self, seq):
        self.inflight = ("ack", None, seq)
        if self.j.ack(seq) and seq > self.acked:
            self.acked = seq
        self.inflight = None


def workload(c, dev=None):
    """At least 20 sessions, two at a time, with checkpoints, drops, acks and segment rotation."""
    queue = []
    for n in range(SESSIONS):
        sid = "S%03d" % n
        before = dev.writes if dev else 0
        c.open_session(sid, n)
        queue.append(sid)
        for k in range(n % 3):
            for s in queue:
                c.checkpoint(s, 1000 * n + 10 * k + 7)
        if len(queue) == 2 or n == SESSIONS - 1:
            s = queue.pop(0)
            if n % 7 == 3:
                c.drop(s)
            else:
                c.commit(s)
        if n % 3 == 2:
            c.ack(c.committed - 1)
            c.ack(c.committed - 3)  # stale: ignored
        if n % 6 == 5:
            c.ack(c.committed)
        if dev is not None:
            c.marks.append((before, dev.writes))
    while queue:
        c.commit(queue.pop(0))
    c.ack(c.committed)


def blank():
    dev = PowerCutDevice(4096, BLOCKS)
    vfs.VfsLfs2.mkfs(dev)
    return dev.snapshot()


def baseline():
    """Writes of the whole workload and the write numbers around rotations, trims and acks."""
    dev = PowerCutDevice(4096, BLOCKS, mem=blank())
    mount(dev)
    j = Journal(DIR, **CONFIG)
    j.recover()
    start = dev.writes
    c = Charger(j)
    rot = []
    orig = c._call

    def watch(*a):
        before = dev.writes
        changed = orig(*a)
        if changed:
            rot.append((before, dev.writes))
        return changed

    c._call = watch
    orig_ack = c.ack

    def watch_ack(seq):
        before = dev.writes
        orig_ack(seq)
        if dev.writes != before:
            rot.append((before, dev.writes))

    c.ack = watch_ack
    workload(c)
    j.close()
    dev.dead = True
    near = set()
    for a, b in rot:
        for k in range(a + 1, b + 2):
            near.add(k)
    return {"start": start, "total": dev.writes, "near": sorted(near), "records": c.committed}


def check_after_cut(dev, c):
    """Reboot on the same flash and check everything the journal confirmed before the cut."""
    problems = []
    dev = dev.reborn()
    mount(dev)
    j = Journal(DIR, **CONFIG)
    r = j.recover()
    op, sid, value = c.inflight or (None, None, None)
    if r.problems:
        problems.append("recovery problems %r" % r.problems)
    last = r.next_seq - 1
    if not (last == c.committed or (op == "commit" and last == value)):
        problems.append("last seq %d, committed %d, in flight %r" % (last, c.committed, c.inflight))
    if not (r.acked_seq == c.acked or (op == "ack" and r.acked_seq == value)) or r.acked_seq > last:
        problems.append("acked %d, confirmed %d, in flight %r, last %d" % (r.acked_seq, c.acked, c.inflight, last))
    if r.prev_hash != hash_hex(last):
        problems.append("prev hash of %d wrong" % last)
    seqs = []
    for seq, signed in j.pending():
        seqs.append(seq)
        if signed != signed_for(seq):
            problems.append("record %d corrupted" % seq)
    if seqs != list(range(r.acked_seq + 1, last + 1)):
        problems.append("pending %r, acked %d, last %d" % (seqs, r.acked_seq, last))
    want = dict(c.open)
    if op == "open" and sid in r.open_sessions:
        want[sid] = None
    if op in ("commit", "drop") and sid not in r.open_sessions:
        want.pop(sid, None)
    if set(r.open_sessions) != set(want):
        problems.append("open sessions %r, want %r, in flight %r" % (sorted(r.open_sessions), sorted(want), c.inflight))
    else:
        for s, last_ck in want.items():
            got = r.open_sessions[s]["last"]
            if got != last_ck and not (op == "check" and s == sid and got == value):
                problems.append("checkpoint of %s: %r, want %r" % (s, got, last_ck))
    # The journal goes on: close the sessions as power-loss records, ack, and survive another reboot.
    for s in sorted(r.open_sessions):
        seq = j.next_seq()
        j.commit_record(seq, payload_for(seq), signed_for(seq), s)
    j.open_session("after", {"wh": 1})
    seq = j.next_seq()
    j.commit_record(seq, payload_for(seq), signed_for(seq), "after")
    j.close()
    j = Journal(DIR, **CONFIG)
    r2 = j.recover()
    if r2.next_seq != seq + 1 or r2.prev_hash != hash_hex(seq) or r2.open_sessions or r2.problems:
        problems.append("after reboot: next %d (want %d), open %r, problems %r" % (r2.next_seq, seq + 1, r2.open_sessions, r2.problems))
    if [s for s, _ in j.pending()] != list(range(r.acked_seq + 1, seq + 1)):
        problems.append("pending after new records wrong")
    j.ack(seq)
    if j.usage()[2] != 0:
        problems.append("ack of everything left %d unacked" % j.usage()[2])
    j.close()
    dev.dead = True  # this trial is over: stale handles must never touch the flash again
    return problems


def sweep(cuts, torn=False):
    """Run the workload once per cut point, cutting the power at that block write; check each."""
    image = blank()
    failures = []
    tried = 0
    for k in cuts:
        dev = PowerCutDevice(4096, BLOCKS, mem=bytearray(image))
        mount(dev)
        j = Journal(DIR, **CONFIG)
        j.recover()
        c = Charger(j)
        dev.cut_at = dev.writes + k
        dev.torn = torn
        dev._rand = k * 2654435761 % 4294967291 or 1
        try:
            workload(c)
        except OSError:
            pass
        if not dev.dead:
            j.close()
            dev.dead = True
            continue  # k is past the end of the workload
        tried += 1
        try:
            p = check_after_cut(dev, c)
        except Exception as e:  # the test must see every failure, not stop at the first
            p = ["%s: %r" % (type(e).__name__, e)]
        if p:
            failures.append({"k": k, "problems": p[:4]})
    try:
        vfs.umount(MOUNT)
    except OSError:
        pass
    return {"tried": tried, "failures": failures[:10], "failed": len(failures)}
