# Boot recovery of the session journal: rebuild the chain state, the ack cursor and the open
# sessions from flash, reading the directory, the ack file, the open sessions' slot files and only
# the newest segment. Older segments are read later, lazily, when pending() streams their records.
import json
import os
import struct

from micropython import const

from journal import dense, frame

SEG_SUFFIX = ".seg"
ACK = "ack"
ACK_TMP = "ack.tmp"
QDIR = "q"
DIGEST = const(32)


class RecoveryReport:
    """What recover() found: the chain state, sessions left open by the power cut, problems."""

    def __init__(self):
        self.open_sessions = {}  # session_id -> {"start": dict, "last": last checkpoint dict or None}
        self.problems = []  # dicts: kind (corrupt, torn, ack, base), seg, off, len, seq
        self.next_seq = 1
        self.prev_hash = ""
        self.acked_seq = 0
        self.pending = 0
        self.segments = 0
        self.bytes_read = 0


def seg_name(segno, base):
    return "%08d-%08d%s" % (segno, base, SEG_SUFFIX)


def slot_name(kind, slot):
    return "%s%d" % (kind, slot)


def parse_slot(name):
    # ("o" or "c", K) for a slot file's name, else None
    if len(name) < 2 or name[0] not in "oc" or not name[1:].isdigit():
        return None
    return name[0], int(name[1:])


def parse_seg(name):
    if not name.endswith(SEG_SUFFIX) or len(name) != 17 + len(SEG_SUFFIX) or name[8] != "-":
        return None
    try:
        return int(name[:8]), int(name[9:17])
    except ValueError:
        return None


def mkdir(path):
    try:
        os.mkdir(path)
    except OSError:
        pass


def recover(j):
    j.close()
    report = j._report = RecoveryReport()
    mkdir(j._dir)
    mkdir(j._path(QDIR))
    segs = []
    slots = {}  # (kind, K) -> size
    for entry in os.ilistdir(j._dir):
        name = entry[0]
        parsed = parse_seg(name)
        size = entry[3] if len(entry) > 3 else None
        slot = parse_slot(name) if parsed is None else None
        if parsed is not None:
            segs.append([parsed[0], parsed[1], os.stat(j._path(name))[6] if size is None else size])
        elif name == ACK_TMP:
            os.remove(j._path(name))
        elif slot is not None:
            slots[slot] = os.stat(j._path(name))[6] if size is None else size
    segs.sort()
    j._segs = segs
    j._quarantined = set()
    for entry in os.ilistdir(j._path(QDIR)):
        parts = entry[0].split("-")
        try:
            j._quarantined.add((int(parts[0]), int(parts[1])))
        except (ValueError, IndexError):
            pass
    acked = j._read_ack()
    j._next, j._prev, j._open, j._base_end = 1, b"", {}, 0
    j._last_segno = segs[-1][0] if segs else 0
    torn = None
    while segs:
        torn = _scan(j, len(segs) - 1)
        if torn is not None:
            break
        # Nothing readable in the newest segment: a rotation cut short (its predecessor is
        # whole), or damage to a lone segment, whose name still tells the next seq.
        seg = segs.pop()
        if not segs and seg[2]:
            j._problem("base", seg[0], 0, seg[2], seg[1])
        j._next = seg[1]
        os.remove(j._seg_path(seg))
    if acked is None:
        acked = segs[0][1] - 1 if segs else j._next - 1
    if acked >= j._next:
        # Never reuse a seq the backend may already hold.
        j._problem("ack", 0, 0, 0, acked)
        j._next = acked + 1
    j._acked = acked
    j._hint = None
    if not segs or torn:
        j._rotate()  # fresh journal, or leave a torn tail behind in a sealed segment
    else:
        j._f = open(j._seg_path(segs[-1]), "ab")
    legacy = j._open  # sessions journaled in the segments by older firmware
    j._open, j._slots = {}, {}
    _read_slots(j, slots)
    j._trim()
    j._broken = False
    for sid, (start, last) in legacy.items():
        if sid not in j._open:  # into a slot, as every open session now is
            j._take_slot(sid, start, None, last)
    report.next_seq = j._next
    report.prev_hash = j.prev_hash()
    report.acked_seq = j._acked
    report.pending = j._next - 1 - j._acked
    report.segments = len(j._segs)
    for sid, (start, last) in j._open.items():
        report.open_sessions[sid] = {"start": start, "last": last}
    j._report = None
    return report


def _scan(j, i, fallback=True):
    # Replay segment i into the state. None: nothing valid in it; else whether its tail is torn.
    seg = j._segs[i]
    with open(j._seg_path(seg), "rb") as f:
        r = frame.Reader(f, seg[2])
        e = r.next()
        if e is None or (e[2] == frame.BAD and e[1] >= seg[2]):
            return None
        body = r.read_body() if e[2] == frame.BASE else None
        if body is not None:
            j._next, j._prev = e[3], e[4]
            j._open = {}
            for sid, pair in json.loads(body).items():
                j._open[sid] = [pair[0], pair[1]]
            j._base_end = e[1]
        else:
            # Damaged BASE (a bit flip): the previous segment, when kept, ends in the same state.
            if not (fallback and i > 0 and _scan(j, i - 1, False) is not None and j._next == seg[1]):
                j._problem("base", seg[0], 0, e[1], seg[1])
                j._prev, j._open = b"", {}
            j._next = seg[1]
            j._base_end = 0
            r.pos = 0  # replay from the start: the damaged BASE is quarantined below
        torn = False
        for off, end, kind, seq, key in r:
            if kind == frame.BAD:
                torn = end >= seg[2]
                j._bad("torn" if torn else "corrupt", seg, f, off, end, None)
                if torn:
                    _damaged_tail(j, seg, f, off)
                continue
            torn = False
            if seq > j._next and kind != frame.REC:
                # Entries before this one were lost to damage; they may have held records.
                j._problem("chain", seg[0], off, end - off, seq)
                j._next = seq
            body = None
            if kind == frame.OPEN or kind == frame.CHECK:
                body = r.read_body()
                ok = body is not None
            else:
                ok = r.verify_body()
            if not ok:
                j._bad("corrupt", seg, f, off, end, seq)
            if kind == frame.REC or kind == frame.CREC:
                # A record whose body is damaged still counts: its seq and hash are never reused.
                if seq >= j._next:
                    if seq > j._next:
                        j._problem("chain", seg[0], off, end - off, seq)
                    j._next = seq + 1
                    j._prev = key[:DIGEST]
                j._open.pop(key[DIGEST:].decode(), None)
            elif kind == frame.DROP:
                j._open.pop(key.decode(), None)
            elif body is not None:
                sid = key.decode()
                data = json.loads(body)
                if kind == frame.OPEN:
                    j._open[sid] = [data, None]
                elif sid in j._open:
                    j._open[sid][1] = data
        if j._report is not None:
            j._report.bytes_read += r.bytes_read
    return torn


def _read_slot(j, kind, slot, size):
    # (seq, session id bytes, dict) of a slot file; None when empty (a cut at its creation: the
    # session never started), False when damaged (reported, a copy quarantined).
    if not size:
        return None
    path = j._path(slot_name(kind, slot))
    want = frame.OPEN if kind == "o" else frame.CHECK
    with open(path, "rb") as f:
        r = frame.Reader(f, size)
        e = r.next()
        body = r.read_body() if e is not None and e[2] == want and e[1] == size else None
        if body is not None:
            try:
                return e[3], e[4], json.loads(dense.decode(body))
            except ValueError:
                pass
        j._problem("slot", 0, slot, size, None)
        try:
            f.seek(0)
            raw = f.read(4096)
            with open(j._path("%s/slot-%s" % (QDIR, slot_name(kind, slot))), "wb") as q:
                q.write(raw)
        except OSError:
            pass
    return False


def _read_slots(j, slots):
    # Open sessions from their slot files (oK start, cK last checkpoint). A start whose record is
    # already journaled (a cut between the record and freeing the slot), a checkpoint without its
    # start or of another session, an empty or damaged file: removed.
    kept = set()
    for (kind, slot), size in sorted(slots.items()):
        if kind != "o":
            continue
        got = _read_slot(j, "o", slot, size)
        if got and not (got[0] < j._next and _has_record(j, got[1], got[0])):
            last = None
            if ("c", slot) in slots:
                ck = _read_slot(j, "c", slot, slots[("c", slot)])
                if ck and ck[1] == got[1]:
                    last = ck[2]
                    kept.add(slot)
            j._open[got[1].decode()] = [got[2], last]
            j._slots[got[1].decode()] = slot
            continue
        os.remove(j._path(slot_name("o", slot)))
    for kind, slot in slots:
        if kind == "c" and slot not in kept:
            os.remove(j._path(slot_name("c", slot)))


def _has_record(j, sid, first):
    # Whether a record of session `sid` (bytes) with seq >= first is in the segments.
    segs = j._segs
    i = len(segs) - 1
    while i > 0 and segs[i][1] > first:
        i -= 1
    for seg in segs[i:]:
        with open(j._seg_path(seg), "rb") as f:
            for _, _, kind, seq, key in frame.Reader(f, seg[2]):
                if (kind == frame.REC or kind == frame.CREC) and seq >= first and key[DIGEST:] == sid:
                    return True
    return False


def _damaged_tail(j, seg, f, off):
    # A damaged last entry may have been a record: judge its header leniently (one flipped bit
    # leaves the kind recognisable, see frame) and rather skip a seq than ever reuse one.
    f.seek(off)
    raw = f.read(frame.HEAD + DIGEST)
    if len(raw) < frame.HEAD:
        return
    kind = raw[2]
    seq = struct.unpack_from("<I", raw, 8)[0]
    diff = kind ^ frame.REC
    cdiff = kind ^ frame.CREC
    if kind == frame.REC or kind == frame.CREC or (seq == j._next and (diff & (diff - 1) == 0 or cdiff & (cdiff - 1) == 0)):
        j._problem("chain", seg[0], off, len(raw), j._next)
        j._next += 1
        j._prev = raw[frame.HEAD :] if len(raw) == frame.HEAD + DIGEST else b""
