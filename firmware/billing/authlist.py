# The local authorization list on flash (OCPP's local list semantics).
#
# list.bin: a 16-byte header (magic, version, count) and fixed 32-byte entries sorted by token,
# so a lookup is a binary search of about 16 reads of 32 bytes whatever the list size, and RAM
# use does not grow with the list (50,000 cards = 1.6 MB of flash, one 32-byte buffer of RAM).
# Entry: token(16) status(1) flags(1) contract(2) expiry(4) balance(4) bal_seq(4) = 32 bytes.
# contracts.bin: fixed 32-byte slots of contract ids, append-only, addressed by index.
#
# Updates (install) are versioned and only move forward. A full list replaces; a differential entry
# without status deletes its token. Both are streamed into list.new and renamed over list.bin,
# so a power cut during an update leaves the old list intact.
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
_MAX_DIFF = const(1000)  # entries in one differential document (they are sorted in RAM)
_MAX_CONTRACTS = const(0xFFFE)
_FORMAT = "<16sBBHIiI"

STATUSES = ("accepted", "blocked", "expired", "invalid")
_STATUS_CODE = {s: i for i, s in enumerate(STATUSES)}


class AuthListError(ValueError):
    pass


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
    __slots__ = ("token", "status", "expiry", "contract", "balance", "bal_seq")

    def __init__(self, token, status, expiry, contract, balance, bal_seq):
        self.token = token
        self.status = status
        self.expiry = expiry  # epoch s, 0 = none
        self.contract = contract
        self.balance = balance  # minor units, None = postpaid
        self.bal_seq = bal_seq  # the device record seq the balance already includes

    def to_dict(self):
        return {"token": self.token, "status": self.status, "exp": self.expiry, "contract": self.contract,
                "balance": self.balance, "bal_seq": self.bal_seq}


class AuthList:
    def __init__(self, directory):
        self.dir = directory
        try:
            os.mkdir(directory)
        except OSError:
            pass
        self._buf = bytearray(_ENTRY)
        self._contracts = None  # contract id -> index, loaded only while updating
        self._update = None
        self.version, self.count = self._read_header(self._path("list.bin"))

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

    def begin(self, version, full):
        """Start an update to version; raises AuthListError when the version does not move forward."""
        if not isinstance(version, int) or isinstance(version, bool) or version <= self.version:
            raise AuthListError("list version %r does not move forward from %d" % (version, self.version))
        self._contracts = self._load_contracts()
        new = open(self._path("list.new"), "wb")
        new.write(bytes(_HEADER))
        self._update = {"ver": version, "full": full, "file": new, "count": 0, "last": None, "diff": []}

    def add(self, entries):
        """Add entries to the update begun with begin(). Full lists come sorted by token."""
        u = self._update
        if u is None:
            raise AuthListError("no update in progress")
        if not isinstance(entries, list):
            raise AuthListError("entries must be a list")
        if not u["full"]:
            if len(u["diff"]) + len(entries) > _MAX_DIFF:
                raise AuthListError("differential update larger than %d entries" % _MAX_DIFF)
            for e in entries:
                if not isinstance(e, dict):
                    raise AuthListError("entry must be an object")
                token_bytes(e.get("token"))
                if e.get("status") is not None:
                    self._encode(e, self._buf)  # validate now, write at commit
                u["diff"].append(e)
            return
        out = self._buf
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

    def abort(self):
        u = self._update
        self._update = None
        self._contracts = None
        if u is not None:
            u["file"].close()
            try:
                os.remove(self._path("list.new"))
            except OSError:
                pass

    def commit(self):
        u = self._update
        if u is None:
            raise AuthListError("no update in progress")
        try:
            if not u["full"]:
                self._merge_diff(u)
            f = u["file"]
            f.seek(0)
            f.write(struct.pack("<4sIII", _MAGIC, u["ver"], u["count"], 0))
            f.close()
            os.rename(self._path("list.new"), self._path("list.bin"))
        except Exception:
            self.abort()
            raise
        self._update = None
        self._contracts = None
        self.version, self.count = u["ver"], u["count"]

    def _merge_diff(self, u):
        # Last word per token wins; then one streaming merge of two sorted sequences.
        changes = {}
        for e in u["diff"]:
            changes[token_bytes(e["token"])] = e
        keys = sorted(changes)
        out, buf, enc = u["file"], bytearray(_ENTRY), bytearray(_ENTRY)
        i = 0
        src = None
        if self.count:
            src = open(self._path("list.bin"), "rb")
            src.seek(_HEADER)
        remaining = self.count
        try:
            while remaining:
                if src.readinto(buf) != _ENTRY:
                    raise AuthListError("list.bin is truncated")
                remaining -= 1
                key = bytes(buf[:16])
                while i < len(keys) and keys[i] < key:
                    self._write_change(out, changes[keys[i]], enc, u)
                    i += 1
                if i < len(keys) and keys[i] == key:
                    self._write_change(out, changes[keys[i]], enc, u)
                    i += 1
                else:
                    out.write(buf)
                    u["count"] += 1
            while i < len(keys):
                self._write_change(out, changes[keys[i]], enc, u)
                i += 1
        finally:
            if src:
                src.close()

    def _write_change(self, out, entry, enc, u):
        if entry.get("status") is None:
            return  # differential entry without info: delete
        self._encode(entry, enc)
        out.write(enc)
        u["count"] += 1


def downlink_handler(authlist, ledger):
    """The uplink's on_authlist(meta, parts) for this list (uplink/downlink.py calls it once every
    part of a version is verified and staged; meta = {"ver", "kind": "full"|"diff", "base"}, parts()
    yields each part's entries in order): install them all or nothing, then let the prepaid ledger
    drop the spending the new balances already include. The charger and the tests wire it alike."""

    def on_authlist(meta, parts):
        authlist.install(meta["ver"], meta["kind"] == "full", parts())
        ledger.compact(authlist)

    return on_authlist
