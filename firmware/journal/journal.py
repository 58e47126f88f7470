# The session journal: open sessions and finished signed records, kept on flash until the backend
# acknowledges them, surviving any power cut.
#
# Layout in the journal folder:
#   SSSSSSSS-NNNNNNNN.seg  segments, oldest first: S the segment number, N the seq of the first record
#                          that can be in it. Each starts with a BASE entry carrying the chain state
#                          (next seq, previous record hash), so boot recovery reads only the newest
#                          segment, and older segments can be removed once their records are
#                          acknowledged. Records are kept compact (CREC entries: crec.py).
#   oK, cK                 an open session in slot K: its OPEN entry (start) and its last CHECK
#                          entry, bodies in dense form (dense.py). Files this small live inside
#                          LittleFS's metadata log: writing one costs no block erase, where every
#                          append to a segment copies the segment's last block to a fresh one.
#   ack                    acknowledged-through seq + CRC, replaced atomically (write ack.tmp, rename)
#   q/SSSSSSSS-OFFSET      quarantined copies of damaged regions (each reported once)
#
# LittleFS commits a file's new size (or a small file's new content) only at flush or close, so a
# write is all-or-nothing at a power cut; the CRCs catch what LittleFS does not check: bit flips in
# file data. Journals of older firmware (sessions as OPEN/CHECK/DROP entries in the segments,
# records as sent) are read as before; recovery moves their open sessions into slots.
import binascii
import gc
import hashlib
import json
import os
import struct

from micropython import const

from journal import crec, dense, frame, recovery
from journal.recovery import ACK, ACK_TMP, QDIR, seg_name, slot_name

_Q_KEEP = const(4096)  # bytes of a damaged region kept for the technician
_MAX_SID = const(64)
_MAX_SESSION_JSON = const(2048)
_BYTES = (bytes, bytearray, memoryview)  # a record may be views of the sealing buffer (billing/record.py)


class JournalFull(Exception):
    pass


class OnFlash:
    """A record kept as sent: len() bytes at offset `off` of file `path`, read in pieces with
    readinto() (as crec.Reader reads a compact one). Valid until the record is acknowledged
    (segments holding unacknowledged records are never removed)."""

    __slots__ = ("path", "off", "n", "_pos")

    def __init__(self, path, body):
        self.path = path
        self.off, self.n = body
        self._pos = 0

    def __len__(self):
        return self.n

    def readinto(self, mv):
        k = min(len(mv), self.n - self._pos)
        if k <= 0:
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.off + self._pos)
            got = f.readinto(mv[:k])
        if got != k:
            raise OSError("record %s@%d ends early on flash" % (self.path, self.off))
        self._pos += k
        return k


def _sid_bytes(session_id):
    if not isinstance(session_id, str) or not session_id:
        raise ValueError("session id must be a non-empty string")
    b = session_id.encode()
    if len(b) > _MAX_SID:
        raise ValueError("session id longer than %d bytes" % _MAX_SID)
    return b


def _session_dense(data):
    if not isinstance(data, dict):
        raise ValueError("session data must be a dict")
    b = json.dumps(data, separators=(",", ":")).encode()
    if len(b) > _MAX_SESSION_JSON:
        raise ValueError("session data over %d bytes" % _MAX_SESSION_JSON)
    return dense.pack(b)


class Journal:
    def __init__(self, path, max_bytes=512 * 1024, segment_bytes=32 * 1024, record_reserve=4096, on_problem=None):
        for name, v, low in (("max_bytes", max_bytes, 8192), ("segment_bytes", segment_bytes, 1024),
                             ("record_reserve", record_reserve, 256)):
            if not isinstance(v, int) or v < low:
                raise ValueError("%s must be an integer >= %d" % (name, low))
        if max_bytes < 2 * segment_bytes:
            raise ValueError("max_bytes must hold at least two segments")
        self._dir = path.rstrip("/")
        self._max = max_bytes
        self._seg_bytes = segment_bytes
        self._reserve = record_reserve
        self._on_problem = on_problem
        self._segs = []  # [segno, first seq, size], oldest first; the last is the active segment
        self._base_end = 0  # size of the active segment right after its BASE entry
        self._open = {}  # session_id -> [start dict, last checkpoint dict or None]
        self._slots = {}  # session_id -> slot K of its files oK, cK
        self._next = 1
        self._prev = b""  # SHA-256 digest of the last record's payload
        self._acked = 0
        self._f = None  # append handle on the active segment
        self._head = bytearray(frame.HEAD)
        self._last_segno = 0
        self._quarantined = set()  # (segno, offset) already reported and copied
        self._hint = None  # (segno, offset, seq): where pending() stopped, to resume without rescanning
        self._report = None
        self._broken = True  # recover() first; again after a failed write

    # -- paths and small files --

    def _path(self, name):
        return self._dir + "/" + name

    def _seg_path(self, seg):
        return self._path(seg_name(seg[0], seg[1]))

    def _read_ack(self):
        try:
            with open(self._path(ACK), "rb") as f:
                raw = f.read(8)
        except OSError:
            return None
        if len(raw) == 8:
            seq, crc = struct.unpack("<II", raw)
            if frame.crc32(raw[:4]) == crc:
                return seq
        self._problem("ack", 0, 0, len(raw), None)
        return None

    def _write_ack(self, seq):
        raw = struct.pack("<I", seq)
        tmp = self._path(ACK_TMP)
        with open(tmp, "wb") as f:
            f.write(raw)
            f.write(struct.pack("<I", frame.crc32(raw)))
        os.rename(tmp, self._path(ACK))

    def _problem(self, kind, segno, off, length, seq):
        p = {"kind": kind, "seg": segno, "off": off, "len": length, "seq": seq}
        if self._report is not None:
            self._report.problems.append(p)
        if self._on_problem is not None:
            try:
                self._on_problem(p)
            except Exception:  # a failing listener must not stop the journal
                pass

    def _bad(self, kind, seg, f, off, end, seq):
        # Report a damaged region once and keep a copy of it for the technician.
        if (seg[0], off) in self._quarantined:
            return
        self._quarantined.add((seg[0], off))
        self._problem(kind, seg[0], off, end - off, seq)
        try:
            f.seek(off)
            raw = f.read(min(end - off, _Q_KEEP))
            with open(self._path("%s/%08d-%d" % (QDIR, seg[0], off)), "wb") as q:
                q.write(raw)
        except OSError:
            pass

    # -- boot recovery --

    def recover(self):
        """Rebuild the state from flash: read the ack cursor and only the newest segment.

        Returns a RecoveryReport: open sessions (to close as power-loss records), problems."""
        return recovery.recover(self)

    # -- writing --

    def _write(self, kind, seq, key, body):
        if self._broken:
            self.recover()
        seg = self._segs[-1]
        n = frame.pack_head(self._head, kind, seq, key, body)
        if seg[2] > self._base_end and seg[2] + n > self._seg_bytes:
            self._rotate()  # packs its BASE into the same head buffer: pack ours again
            seg = self._segs[-1]
            frame.pack_head(self._head, kind, seq, key, body)
        try:
            f = self._f
            f.write(self._head)
            if key:
                f.write(key)
            for p in body if isinstance(body, list) else (body,):
                if p:
                    f.write(p)
            f.flush()
        except OSError:
            # The file's tail is now unknown: the next call re-reads the truth from flash.
            self._broken = True
            raise
        seg[2] += n

    def _put_slot(self, name, kind, key, body):
        # Replace a session's small file whole: LittleFS commits it at close, old or new.
        if self._broken:
            self.recover()
        frame.pack_head(self._head, kind, self._next, key, body)
        try:
            with open(self._path(name), "wb") as f:
                f.write(self._head)
                f.write(key)
                f.write(body)
        except OSError:
            self._broken = True
            raise

    def _free_slot(self, session_id):
        # The start goes first: a cut between the two leaves a checkpoint without its start,
        # which recovery removes, never a start that would come back as a power-loss session.
        slot = self._slots.pop(session_id, None)
        if slot is None:
            return
        os.remove(self._path(slot_name("o", slot)))
        try:
            os.remove(self._path(slot_name("c", slot)))
        except OSError:
            pass  # no checkpoint yet

    def _rotate(self):
        if self._f is not None:
            self._f.close()
            self._f = None
        self._last_segno += 1
        gc.collect()  # the new segment's file (and its LittleFS cache) lives long: let it land low in the heap
        seg = [self._last_segno, self._next, 0]
        body = b"{}"  # open sessions live in their slots (oK, cK), not in the segments
        frame.pack_head(self._head, frame.BASE, self._next, self._prev, body)
        try:
            f = open(self._seg_path(seg), "wb")
            f.write(self._head)
            f.write(self._prev)
            f.write(body)
            f.flush()
        except OSError:
            self._broken = True
            raise
        seg[2] = frame.HEAD + len(self._prev) + len(body)
        self._segs.append(seg)
        self._base_end = seg[2]
        self._f = f
        self._trim()

    def _trim(self):
        # Remove sealed segments whose records are all acknowledged, oldest first.
        segs = self._segs
        while len(segs) > 1 and segs[1][1] - 1 <= self._acked:
            segno = segs[0][0]
            os.remove(self._seg_path(segs.pop(0)))
            for q in [q for q in self._quarantined if q[0] == segno]:
                self._quarantined.discard(q)
                try:
                    os.remove(self._path("%s/%08d-%d" % (QDIR, q[0], q[1])))
                except OSError:
                    pass

    def close(self):
        if self._f is not None:
            try:
                self._f.close()
            except OSError:
                pass
            self._f = None
        self._broken = True

    # -- sessions --

    def open_session(self, session_id, start):
        """Journal a session start; call before the relay closes. JournalFull when out of room."""
        sid = _sid_bytes(session_id)
        body = _session_dense(start)
        if session_id in self._open:
            raise ValueError("session %s is already open" % session_id)
        if not self.can_start_session():
            used, cap, unacked = self.usage()
            raise JournalFull("journal full: %d of %d bytes, %d records unacknowledged" % (used, cap, unacked))
        if self._broken:
            self.recover()
        self._take_slot(session_id, start, body)

    def _take_slot(self, session_id, start, body=None, last=None):
        # The first free slot K gets the session's start (oK; body: its dense form, when made
        # already) and, when given, its last checkpoint (cK).
        if body is None:
            body = _session_dense(start)
        used = self._slots.values()
        slot = 0
        while slot in used:
            slot += 1
        sid = session_id.encode()
        self._put_slot(slot_name("o", slot), frame.OPEN, sid, body)
        if last is not None:
            self._put_slot(slot_name("c", slot), frame.CHECK, sid, _session_dense(last))
        self._open[session_id] = [start, last]
        self._slots[session_id] = slot

    def checkpoint(self, session_id, data):
        """Journal a session checkpoint. False when skipped to keep room for the open sessions' records."""
        sid = _sid_bytes(session_id)
        body = _session_dense(data)
        if session_id not in self._open:
            raise ValueError("session %s is not open" % session_id)
        if self.bytes_used() + len(self._open) * self._reserve > self._max:
            return False
        if self._broken:
            self.recover()
        self._put_slot(slot_name("c", self._slots[session_id]), frame.CHECK, sid, body)
        self._open[session_id][1] = data
        return True

    def drop_session(self, session_id):
        """Close an open session that produced no record."""
        _sid_bytes(session_id)
        if session_id not in self._open:
            raise ValueError("session %s is not open" % session_id)
        if self._broken:
            self.recover()
        try:
            self._free_slot(session_id)
        except OSError:
            self._broken = True
            raise
        del self._open[session_id]

    def open_sessions(self):
        return {sid: {"start": s, "last": c} for sid, (s, c) in self._open.items()}

    # -- records --

    def commit_record(self, seq, payload, signed, session_id=None):
        """Keep a signed record until acknowledged; closes its session in the same entry.

        `seq` must be next_seq(); the payload's SHA-256 becomes prev_hash() for the next record.
        Never refused for room: the reserve kept by can_start_session() is there for it.
        """
        if self._broken:
            self.recover()
        if seq != self._next:
            raise ValueError("record seq %r is not the next seq %d" % (seq, self._next))
        if not isinstance(payload, _BYTES) or not isinstance(signed, _BYTES) or not signed:
            raise ValueError("payload and signed record must be bytes")
        sid = b"" if session_id is None else _sid_bytes(session_id)
        if session_id is not None and session_id not in self._open:
            raise ValueError("session %s is not open" % session_id)
        digest = hashlib.sha256(payload).digest()
        parts = crec.split(signed, payload)
        if parts is None:
            self._write(frame.REC, seq, digest + sid, signed)
        else:
            self._write(frame.CREC, seq, digest + sid, crec.pack(parts[0], payload, parts[1]))
        self._next = seq + 1
        self._prev = digest
        if session_id is not None:
            del self._open[session_id]
            try:
                self._free_slot(session_id)  # a cut before this: recovery finds the record, frees it
            except OSError:
                self._broken = True  # the record is on flash: recovery sees the session closed

    def next_seq(self):
        return self._next

    def prev_hash(self):
        return binascii.hexlify(self._prev).decode() if self._prev else ""

    def acked_seq(self):
        return self._acked

    def digest(self, seq):
        """SHA-256 digest (32 bytes) of record seq's payload, or None when the journal lacks it.

        Read from the REC entry's key (digest + session id), which the header CRC covers: right
        even when the record's body is damaged. The last record's comes from RAM; an older one
        costs a walk over the headers of the segment holding it (no bodies are read)."""
        if not isinstance(seq, int) or seq <= self._acked or seq >= self._next:
            return None
        if self._broken:
            self.recover()
        if seq == self._next - 1 and len(self._prev) == 32:
            return self._prev
        segs = self._segs
        i = len(segs) - 1
        while i > 0 and segs[i][1] > seq:
            i -= 1
        seg = segs[i]
        with open(self._seg_path(seg), "rb") as f:
            for _, _, kind, s, key in frame.Reader(f, seg[2]):
                if (kind == frame.REC or kind == frame.CREC) and s >= seq:
                    return key[:32] if s == seq and len(key) >= 32 else None
        return None

    def ack(self, seq):
        """Cumulative acknowledgement: every record up to `seq` is stored by the backend.

        Stale or out-of-range values are ignored (False)."""
        if not isinstance(seq, int) or seq <= self._acked or seq >= self._next:
            return False
        if self._broken:
            self.recover()
        self._write_ack(seq)
        self._acked = seq
        self._trim()
        active = self._segs[-1]
        if seq == self._next - 1 and active[1] <= seq and (active[2] * 2 >= self._seg_bytes or not self.can_start_session()):
            self._rotate()  # the active segment holds only acknowledged records: give its room back
        return True

    def pending(self, after_seq=None, limit=None, on_flash=False):
        """Yield (seq, signed bytes) of unacknowledged records in order, read from flash one at a time.

        on_flash: yield (seq, OnFlash) instead, the record's place on flash with its CRC checked
        (read in 256-byte pieces): the uplink sends it from there without a copy in RAM.
        """
        want = self._acked + 1
        if after_seq is not None and after_seq + 1 > want:
            want = after_seq + 1
        count = 0
        while limit is None or count < limit:
            if want <= self._acked:  # acknowledged while we were yielding: skip them
                want = self._acked + 1
            if want >= self._next:
                return
            found = self._find(want, on_flash)
            if found is None:
                return
            yield found
            count += 1
            want = found[0] + 1

    def _find(self, want, on_flash=False):
        # The first readable record with seq >= want. Files are closed before pending() yields,
        # so appends, acks and segment removal may happen between two records.
        segs = self._segs
        i = len(segs) - 1
        while i > 0 and segs[i][1] > want:
            i -= 1
        while i < len(segs):
            seg = segs[i]
            hint = self._hint
            pos = hint[1] if hint is not None and hint[0] == seg[0] and hint[2] <= want else 0
            with open(self._seg_path(seg), "rb") as f:
                r = frame.Reader(f, seg[2], pos)
                for off, end, kind, seq, key in r:
                    if kind == frame.BAD:
                        self._bad("torn" if end >= seg[2] else "corrupt", seg, f, off, end, None)
                    elif (kind == frame.REC or kind == frame.CREC) and seq >= want:
                        signed = self._record(seg, r, kind, on_flash)
                        if signed is not None:
                            self._hint = (seg[0], end, seq + 1)
                            return seq, signed
                        self._bad("corrupt", seg, f, off, end, seq)
            i += 1
        return None

    def _record(self, seg, r, kind, on_flash):
        # The record the Reader stands at, as sent (bytes, or on flash to read in pieces); None
        # when its CRC fails.
        if on_flash:
            if not r.verify_body():
                return None
            off, n = r.body_at()
            return OnFlash(self._seg_path(seg), (off, n)) if kind == frame.REC else crec.Reader(self._seg_path(seg), off, n)
        body = r.read_body()
        if body is None or kind == frame.REC:
            return body
        try:
            return crec.jws(body)
        except ValueError:
            return None

    def scrub(self):
        """Check every CRC of every segment (a technician's or idle-time check, not needed at boot).

        Damaged regions are reported once and quarantined; returns how many were found."""
        found = 0
        for seg in list(self._segs):
            with open(self._seg_path(seg), "rb") as f:
                r = frame.Reader(f, seg[2])
                for off, end, kind, seq, key in r:
                    if kind == frame.BAD or not r.verify_body():
                        found += 1
                        self._bad("corrupt", seg, f, off, end, seq if kind else None)
        return found

    # -- room --

    def bytes_used(self):
        n = 0
        for seg in self._segs:
            n += seg[2]
        return n

    def can_start_session(self):
        """Room for one more session's record besides the reserve of those already open."""
        return self.bytes_used() + (len(self._open) + 1) * self._reserve <= self._max

    def full(self):
        return not self.can_start_session()

    def usage(self):
        return self.bytes_used(), self._max, self._next - 1 - self._acked

    def reserve(self, block):
        """Flash bytes the journal may still need to reach max_bytes: what is left of it, a block of
        rounding for each segment still to come, and a few blocks for LittleFS's copy-on-write."""
        left = self._max - self.bytes_used()
        if left < 0:
            left = 0
        return left + (left // self._seg_bytes + 2) * block + 4 * block

    def room(self, path, need):
        """True when `need` more bytes (another owner's: lists, staged documents) fit on the flash
        holding path and leave the journal its reserve: nothing else may take the share the journal
        needs to commit its records (issue #18). LittleFS's statvfs counts open files too."""
        st = os.statvfs(path)
        block = st[0]
        return (st[4] - (need + block - 1) // block - 1) * block >= self.reserve(block)
