# The local authorization list on flash (OCPP's local list semantics).
#
# list.bin: a 16-byte header (magic, version, count) and fixed 32-byte entries sorted by token,
# so a lookup is a binary search of about 16 reads of 32 bytes whatever the list size, and RAM
# use does not grow with the list (50,000 cards = 1.6 MB of flash, one 32-byte buffer of RAM).
# Entry: token(16) status(1) flags(1) contract(2) expiry(4) balance(4) bal_seq(4) = 32 bytes.
# contracts.bin: fixed 32-byte slots of contract ids, append-only, addressed by index.
#
# Updates are versioned and only move forward. A full list replaces; a differential entry without
# status deletes its token. A full list is streamed into list.new part by part; a differential's
# parts go to diff.new as sorted 33-byte runs (one per part) and are merged with list.bin into
# list.new at commit, so neither ever sits whole in RAM. list.new is then renamed over list.bin. The version
# is in list.bin's header: the one rename commits the list and its version together, so a power cut
# leaves either the old list and version or the new ones, never a list the version does not name
# (issue #18). A list.new left by a power cut is removed when the list is opened (at boot).
#
# Room: with room(need) given (app/charger.py: the journal's flash reserve, journal.room), every
# write first asks whether `need` more bytes leave the journal its share of the flash; when not,
# NoRoom is raised and the old list stays, so a large list can never take what the journal needs.
import binascii
import os
import struct

from micropython import const

_MAGIC = b"EVAL"
_HEADER = const(16)
_ENTRY = const(32)
_SLOT = const(32)
_NO_CONTRACT = const(0xFFFF)
_FLAG_PREPAID = const(1)
_MAX_DIFF = const(1000)  # entries in one differential version
_MAX_RUNS = const(64)  # parts of one differential version (one sorted run each on flash)
_DREC = const(33)  # a differential record on flash: the 32-byte entry, then 1 = delete / 0 = set
_MAX_CONTRACTS = const(0xFFFE)
_FORMAT = "<16sBBHIiI"

STATUSES = ("accepted", "blocked", "expired", "invalid")
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


class AuthListError(ValueError):
    pass


class NoRoom(AuthListError):
    reason = "no-room"  # the downlink reports it under this name (uplink/downlink.py)


def token_bytes(token):
    """32 lower-case hex digits -> 16 bytes, or AuthListError."""
    if not isinstance(token, str) or len(token) != 32:
        raise AuthListError("token must be 32 hex digits")
    try:
        raw = binascii.unhexlify(token)
    except ValueError:
        raise AuthListError("token must be 32 hex digits")
    if binascii.hexlify(raw).decode() != token:
        raise AuthListError("token must be lower-case hex")
    return raw


def _int_field(entry, name, lo, hi, default):
    v = entry.get(name, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise AuthListError("entry %s: %s out of range" % (entry.get("token"), name))
    return v


class Entry:
    __slots__ = ("token", "status", "expiry", "contract", "balance", "bal_seq", "rsv")

    def __init__(self, token, status, expiry, contract, balance, bal_seq, rsv=None):
        self.token = token
        self.status = status
        self.expiry = expiry  # epoch s, 0 = none
        self.contract = contract
        self.balance = balance  # minor units, None = postpaid
        self.bal_seq = bal_seq  # the device record seq the balance already includes
        self.rsv = rsv  # an online answer's backend reservation (its exp: docs/prepaid.md); list entries: None

    def to_dict(self):
        return {"token": self.token, "status": self.status, "exp": self.expiry, "contract": self.contract,
                "balance": self.balance, "bal_seq": self.bal_seq}


class AuthList:
    def __init__(self, directory, room=None):
        self.dir = directory
        self.room = room  # room(need bytes) -> bool; None: no reserve to keep
        try:
            os.mkdir(directory)
        except OSError:
            pass
        for name in ("list.new", "diff.new"):  # an update a power cut interrupted: never to be finished
            try:
                os.remove(self._path(name))
            except OSError:
                pass
        self._buf = bytearray(_ENTRY)
        self._contracts = None  # contract id -> index, loaded only while updating
        self._update = None
        self.version, self.count = self._read_header(self._path("list.bin"))

    def _need(self, n):
        if self.room is not None and not self.room(n):
            raise NoRoom("no room on flash for %d more bytes of list (the journal's reserve is kept)" % n)

    def _path(self, name):
        return self.dir + "/" + name

    def _read_header(self, path):
        try:
            with open(path, "rb") as f:
                head = f.read(_HEADER)
        except OSError:
            return 0, 0
        if len(head) != _HEADER or head[:4] != _MAGIC:
            return 0, 0  # a missing or broken list is an empty list: unknown cards follow policy
        _, version, count = struct.unpack("<4sII", head[:12])
        return version, count

    # ---- lookup -------------------------------------------------------------------------
    def lookup(self, token):
        """The Entry for token (32 hex digits), or None. Cost: O(log n) reads of 32 bytes."""
        key = token_bytes(token)
        if not self.count:
            return None
        buf = self._buf
        try:
            f = open(self._path("list.bin"), "rb")
        except OSError:
            return None
        with f:
            lo, hi = 0, self.count - 1
            while lo <= hi:
                mid = (lo + hi) >> 1
                f.seek(_HEADER + mid * _ENTRY)
                if f.readinto(buf) != _ENTRY:
                    return None
                probe = bytes(buf[:16])
                if probe == key:
                    return self._decode(buf, token)
                if probe < key:
                    lo = mid + 1
                else:
                    hi = mid - 1
        return None

    def _decode(self, buf, token):
        _, status, flags, contract, expiry, balance, bal_seq = struct.unpack(_FORMAT, buf)
        return Entry(
            token,
            STATUSES[status] if status < len(STATUSES) else "invalid",
            expiry,
            self._contract_name(contract),
            balance if flags & _FLAG_PREPAID else None,
            bal_seq,
        )

    def _contract_name(self, index):
        if index == _NO_CONTRACT:
            return None
        try:
            with open(self._path("contracts.bin"), "rb") as f:
                f.seek(index * _SLOT)
                slot = f.read(_SLOT)
        except OSError:
            return None
        return slot.rstrip(b"\x00").decode() if slot else None

    # ---- updates ------------------------------------------------------------------------
    def _load_contracts(self):
        names = {}
        try:
            with open(self._path("contracts.bin"), "rb") as f:
                i = 0
                while True:
                    slot = f.read(_SLOT)
                    if len(slot) < _SLOT:
                        break
                    names[slot.rstrip(b"\x00").decode()] = i
                    i += 1
        except OSError:
            pass
        return names

    def _contract_index(self, name):
        if name is None:
            return _NO_CONTRACT
        if not isinstance(name, str) or not 0 < len(name.encode()) <= _SLOT:
            raise AuthListError("contract id must be 1..32 bytes")
        index = self._contracts.get(name)
        if index is None:
            if len(self._contracts) >= _MAX_CONTRACTS:
                raise AuthListError("too many contract ids")
            index = len(self._contracts)
            self._need(_SLOT)
            # Appended before the list that uses it is renamed in: never points to nothing.
            with open(self._path("contracts.bin"), "ab") as f:
                f.write(name.encode() + bytes(_SLOT - len(name.encode())))
            self._contracts[name] = index
        return index

    def _encode(self, entry, out):
        status = entry.get("status")
        if status not in _STATUS_CODE:
            raise AuthListError("entry %s: status must be one of %s" % (entry.get("token"), STATUSES))
        balance = entry.get("balance")
        flags = 0
        if balance is not None:
            balance = _int_field(entry, "balance", -(1 << 31), (1 << 31) - 1, 0)
            flags |= _FLAG_PREPAID
        struct.pack_into(
            _FORMAT, out, 0,
            token_bytes(entry.get("token")),
            _STATUS_CODE[status],
            flags,
            self._contract_index(entry.get("contract")),
            _int_field(entry, "exp", 0, 0xFFFFFFFF, 0),
            balance or 0,
            _int_field(entry, "bal_seq", 0, 0xFFFFFFFF, 0),
        )

    def install(self, version, full, parts):
        """Install one list version, all or nothing: a full list (replaces) or a differential one
        (changes), parts an iterable of entry lists, in part order (a full list's entries sorted by
        token across its parts). Raises AuthListError, and the list stays as it was, when the
        version does not move forward or any entry is bad; a power cut leaves the old list."""
        self.abort()  # nothing half-done from before can mix in
        self.begin(version, full)
        try:
            for entries in parts:
                self.add(entries)
            self.commit()
        except Exception:
            self.abort()
            raise

    def begin(self, version, full, total=None):
        """Start an update to version; raises AuthListError when the version does not move forward,
        NoRoom when the flash cannot take `total` entries (a full list's size, when the sender says)
        besides the journal's reserve."""
        self.abort()  # nothing half-done from before can mix in
        if not isinstance(version, int) or isinstance(version, bool) or version <= self.version:
            raise AuthListError("list version %r does not move forward from %d" % (version, self.version))
        if full and isinstance(total, int) and total > 0:
            self._need(_HEADER + total * _ENTRY)
        self._contracts = self._load_contracts()
        self._need(_HEADER)
        new = open(self._path("list.new"), "wb")
        self._update = {"ver": version, "full": full, "file": new, "count": 0, "last": None, "runs": [],
                        "changes": 0, "dfile": None}
        new.write(bytes(_HEADER))

    def add(self, entries):
        """Add entries to the update begun with begin(). Full lists come sorted by token."""
        u = self._update
        if u is None:
            raise AuthListError("no update in progress")
        if not isinstance(entries, list):
            raise AuthListError("entries must be a list")
        if not u["full"]:
            return self._add_diff(u, entries)
        out = self._buf
        self._need(len(entries) * _ENTRY)
        for e in entries:
            if not isinstance(e, dict):
                raise AuthListError("entry must be an object")
            self._encode(e, out)
            key = bytes(out[:16])
            if u["last"] is not None and key <= u["last"]:
                raise AuthListError("full list entries must be sorted by token without repeats")
            u["last"] = key
            u["file"].write(out)
            u["count"] += 1

    def _add_diff(self, u, entries):
        # One part of a differential: validated, sorted by token in RAM (a part is small), and
        # appended to diff.new as one sorted run of 33-byte records; commit() merges the runs with
        # the list, so a differential never sits whole in RAM.
        if len(u["runs"]) >= _MAX_RUNS:
            raise AuthListError("differential update in more than %d parts" % _MAX_RUNS)
        if u["changes"] + len(entries) > _MAX_DIFF:
            raise AuthListError("differential update larger than %d entries" % _MAX_DIFF)
        part = {}
        for e in entries:
            if not isinstance(e, dict):
                raise AuthListError("entry must be an object")
            part[token_bytes(e.get("token"))] = e  # within a part, the last word per token wins
        self._need(len(part) * _DREC)
        if u["dfile"] is None:
            u["dfile"] = open(self._path("diff.new"), "w+b")
        f = u["dfile"]
        f.seek(0, 2)
        start = f.tell() // _DREC
        rec = bytearray(_DREC)
        for key in sorted(part):
            e = part[key]
            if e.get("status") is None:
                rec[:] = bytes(_DREC)
                rec[:16] = key
                rec[_ENTRY] = 1  # delete
            else:
                self._encode(e, rec)
                rec[_ENTRY] = 0
            f.write(rec)
        u["runs"].append([start, start + len(part)])
        u["changes"] += len(part)

    def abort(self):
        u = self._update
        self._update = None
        self._contracts = None
        if u is not None:
            for f in (u["file"], u["dfile"]):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass
            for name in ("list.new", "diff.new"):
                try:
                    os.remove(self._path(name))
                except OSError:
                    pass

    def commit(self):
        u = self._update
        if u is None:
            raise AuthListError("no update in progress")
        try:
            if not u["full"]:
                self._need((self.count + u["changes"]) * _ENTRY)  # the merged list, at most
                self._merge_diff(u)
            f = u["file"]
            f.seek(0)
            f.write(struct.pack("<4sIII", _MAGIC, u["ver"], u["count"], 0))
            f.close()
            os.rename(self._path("list.new"), self._path("list.bin"))
        except Exception:
            self.abort()
            raise
        if u["dfile"] is not None:
            try:
                u["dfile"].close()
                os.remove(self._path("diff.new"))
            except OSError:
                pass  # removed at the next update or boot
        self._update = None
        self._contracts = None
        self.version, self.count = u["ver"], u["count"]

    def _merge_diff(self, u):
        # One streaming merge of the list with the differential's sorted runs (a k-way merge over
        # diff.new: one 16-byte head per run in RAM). For a token in several runs the latest part wins.
        runs = u["runs"]
        df = u["dfile"]
        heads = [None] * len(runs)
        rec = bytearray(_DREC)
        for r in range(len(runs)):
            heads[r] = self._head(df, runs[r])
        out, buf = u["file"], bytearray(_ENTRY)
        src = None
        if self.count:
            src = open(self._path("list.bin"), "rb")
            src.seek(_HEADER)
        remaining = self.count
        old = None
        try:
            while True:
                if old is None and remaining:
                    if src.readinto(buf) != _ENTRY:
                        raise AuthListError("list.bin is truncated")
                    remaining -= 1
                    old = bytes(buf[:16])
                best = None
                for r in range(len(heads)):
                    h = heads[r]
                    if h is not None and (best is None or h <= heads[best]):
                        best = r  # on a tie the later run (part) wins
                if best is None and old is None:
                    return
                if best is None or (old is not None and old < heads[best]):
                    out.write(buf)  # unchanged
                    u["count"] += 1
                    old = None
                    continue
                key = heads[best]
                df.seek(runs[best][0] * _DREC)
                df.readinto(rec)
                if not rec[_ENTRY]:
                    out.write(memoryview(rec)[:_ENTRY])
                    u["count"] += 1
                for r in range(len(heads)):  # every run's record for this token is used up
                    if heads[r] == key:
                        runs[r][0] += 1
                        heads[r] = self._head(df, runs[r])
                if old == key:
                    old = None  # replaced or deleted
        finally:
            if src:
                src.close()

    @staticmethod
    def _head(df, run):
        # the key of a run's next record, or None when the run is used up
        if run[0] >= run[1]:
            return None
        df.seek(run[0] * _DREC)
        return df.read(16)


class ListSink:
    """What the uplink's Downlink (uplink/downlink.py) streams a list version into, part by part in
    order, straight into list.new: begin(meta), add(entries) per part, commit() or abort(); version()
    is the list's own (list.bin's header), the one the device reports and builds on. commit() then
    lets the prepaid ledger drop the spending the new balances already include."""

    def __init__(self, authlist, ledger):
        self.list = authlist
        self.ledger = ledger

    def version(self):
        return self.list.version

    def begin(self, meta):
        self.list.begin(meta["ver"], meta["kind"] == "full", meta.get("total"))

    def add(self, entries):
        self.list.add(entries)

    def commit(self):
        self.list.commit()
        try:
            self.ledger.compact(self.list)
        except OSError:
            pass  # the list is in; the ledger keeps what it had and compacts at the next update

    def abort(self):
        self.list.abort()


def downlink_handler(authlist, ledger):
    """The uplink's list sink for this list and ledger: the charger and the tests wire it alike."""
    return ListSink(authlist, ledger)
