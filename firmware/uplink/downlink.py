# Downlink documents from the backend: tariffs, authorization lists, commands.
#
# Each is a JWS (ES256) signed by the backend key pinned in the config. A document is applied
# only when, in this order: it fits the size bound, the signature verifies, the payload is a
# JSON object of the topic's type for this device, its version moves forward (commands: a new
# id that has not expired), and the apply callback accepts it. Otherwise it is reported as an
# event and nothing changes. Versions and recent command ids live on flash, written after a
# successful apply (a crash in between re-applies the same version: harmless).
#
# Authorization lists come in parts (part i of parts, same ver/full/base). The list's owner is a
# sink (billing/authlist.py ListSink): parts in order go straight into its on-flash index as they
# are verified; a part that arrives ahead of its turn waits in a small staging folder (at most
# _MAX_STAGED files, each checked against the flash reserve) until the parts before it are in.
# The list version the device holds is the sink's own (committed with the list in one rename), so
# no power cut can separate a list from its version. Staging left by a reboot is removed at start;
# a failed or abandoned version leaves nothing behind. The status reports what is held, what is
# being collected and why the last version was refused: the backend republishes from that
# (backend/converge.py). Docs: docs/protocol.md.
import json
import os

from micropython import const

from app import log
from hal import clock

_KEEP_CMD_IDS = const(32)
_MAX_PARTS = const(2048)  # 32 entries a part (backend/downlink.py): 65,536 cards
_MAX_STAGED = const(16)  # parts held on flash while an earlier part is missing
_ID_MAX = const(64)

KINDS = ("tariff", "authlist", "cmd")


class Rejected(ValueError):
    def __init__(self, reason, detail=""):
        super().__init__("%s: %s" % (reason, detail) if detail else reason)
        self.reason = reason
        self.detail = detail


def _int(v, lo=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


class Downlink:
    """handle(kind, msg) verifies and applies one document; report(evt) gets every rejection.

    on_tariff(doc), on_command(doc): validate and apply, or raise (ValueError) to refuse.
    on_authlist: a list sink with begin(meta), add(entries), commit(), abort(), version()
    (billing/authlist.py ListSink; meta = {"ver", "kind" ("full"/"diff"), "base", "total"}), fed
    each part in order; or a plain on_authlist(meta, parts) called once all parts are in (parts()
    yields each part's entries in order; they wait in RAM: small lists, test rigs).
    room(need bytes) -> bool: whether staging may write that much and leave the journal's reserve.
    """

    def __init__(self, dev, verify, state_path, on_tariff, on_authlist, on_command, report,
                 stage_dir=None, max_doc=8192, now=None, room=None):
        self.dev = dev
        self.verify = verify  # compact JWS bytes -> payload bytes, raises when not genuine
        self.state_path = state_path
        self.stage_dir = stage_dir
        self.max_doc = max_doc
        self.now = now or clock.now
        self.room = room
        if not hasattr(on_authlist, "begin"):
            on_authlist = _Collect(on_authlist)
        self.sink = on_authlist
        self._apply = {"tariff": on_tariff, "cmd": on_command}
        self.report = report
        self.state = self._load()
        self._stage = None  # authlist version being collected: {"ver", "kind", "base", "parts", "have", "next", ...}
        self.refused = None  # {"ver", "reason"}: the last list version given up on (status)
        self.applied = 0
        self.rejected = 0
        self._clean_stage()  # parts staged before a reboot: their version starts over

    # -- persisted versions ------------------------------------------------------------
    def _load(self):
        state = {"tariff": 0, "authlist": 0, "cmds": []}
        try:
            with open(self.state_path) as f:
                saved = json.loads(f.read())
            for k in ("tariff", "authlist"):
                if _int(saved.get(k)):
                    state[k] = saved[k]
            if isinstance(saved.get("cmds"), list):
                state["cmds"] = [c for c in saved["cmds"] if isinstance(c, str)][-_KEEP_CMD_IDS:]
        except OSError:
            pass  # first boot
        except (ValueError, AttributeError) as exc:
            log.error("down", "state file unreadable (%s); versions start over" % exc)
        return state

    def _save(self):
        tmp = self.state_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(self.state))
        os.rename(tmp, self.state_path)

    def list_version(self):
        held = self.sink.version()
        return self.state["authlist"] if held is None else held

    def versions(self):
        return {"tariff": self.state["tariff"], "authlist": self.list_version()}

    def progress(self):
        """For the status: the list version being collected and the last one refused (or None)."""
        out = {}
        st = self._stage
        if st is not None:
            out["collecting"] = {"ver": st["ver"], "got": st["count"], "parts": st["parts"]}
        if self.refused is not None:
            out["refused"] = self.refused
        return out or None

    # -- entry point ---------------------------------------------------------------------
    def handle(self, kind, msg, oversize=0):
        """Process one message from topic kind; returns True when something was applied."""
        try:
            if kind not in KINDS:
                raise Rejected("topic", kind)
            if oversize or len(msg) > self.max_doc:
                raise Rejected("oversized", "%d bytes > %d" % (oversize or len(msg), self.max_doc))
            if not msg:
                return False  # a cleared retained topic: nothing to apply
            if getattr(msg, "error", None) is not None:  # spooled, but flash did not keep it
                raise Rejected("flash", str(msg.error))
            doc = self._document(msg)
            if not isinstance(doc, dict) or doc.get("type") != kind:
                raise Rejected("malformed", "want an object with type %r" % kind)
            target = doc.get("dev", "*")
            if target != self.dev and not (target == "*" and kind != "cmd"):
                raise Rejected("wrong-device", str(target))
            if kind == "cmd":
                return self._command(doc)
            if kind == "tariff":
                return self._versioned("tariff", doc, doc)
            return self._authlist(doc)
        except Rejected as rej:
            self.rejected += 1
            log.warn("down", "%s rejected: %s" % (kind, rej))
            evt = {"evt": "downlink-rejected", "doc": kind, "reason": rej.reason}
            if rej.detail:
                evt["detail"] = rej.detail[:120]
            self.report(evt)
            return False

    def _document(self, msg):
        # msg: the compact JWS, or a spool on flash (uplink/spool.py) whose verified payload
        # comes back as an open file, parsed from flash without holding its text
        try:
            payload = self.verify(msg)
        except MemoryError:  # not the document's fault: the backend sends it again (backend/converge.py)
            raise Rejected("memory", "no heap to verify it now")
        except Exception as exc:
            raise Rejected("signature", str(exc))
        try:
            if isinstance(payload, (bytes, bytearray, str)):
                return json.loads(payload)
            try:
                return json.load(payload)
            finally:
                payload.close()
        except (ValueError, UnicodeError):
            raise Rejected("malformed", "payload is not JSON")

    def _call(self, kind, *args):
        try:
            self._apply[kind](*args)
        except Exception as exc:  # the owner refused it: nothing may have changed
            raise _refusal(exc)

    def _versioned(self, kind, doc, *args):
        ver = doc.get("ver")
        if not _int(ver, 1):
            raise Rejected("malformed", "ver must be a positive integer")
        if ver == self.state[kind]:
            return False  # the same version again (a retained redelivery): already applied
        if ver < self.state[kind]:
            raise Rejected("stale", "ver %d < %d" % (ver, self.state[kind]))
        self._call(kind, *args)
        self.state[kind] = ver
        self._save()
        self.applied += 1
        log.info("down", "%s ver %d applied" % (kind, ver))
        return True

    def forget(self, kind):
        """The local copy of kind ("tariff") is lost or broken: the next delivery of any version,
        including the retained one already applied, is applied again."""
        if self.state.get(kind):
            self.state[kind] = 0
            self._save()

    # -- commands ------------------------------------------------------------------------
    def _command(self, doc):
        cid = doc.get("id")
        exp = doc.get("exp")
        if not isinstance(cid, str) or not 0 < len(cid) <= _ID_MAX:
            raise Rejected("malformed", "id must be a string of 1..%d characters" % _ID_MAX)
        if not _int(exp, 1) or not isinstance(doc.get("cmd"), str):
            raise Rejected("malformed", "exp (epoch s) and cmd are required")
        if cid in self.state["cmds"]:
            raise Rejected("replay", cid)
        t, quality = self.now()
        if quality == "U" and doc["cmd"] != "time":
            raise Rejected("time-unknown", "cannot judge expiry of %s" % cid)
        if quality != "U" and t >= exp:
            raise Rejected("expired", "%s expired at %d (now %d)" % (cid, exp, t))
        self._call("cmd", doc)
        cmds = self.state["cmds"]
        cmds.append(cid)
        if len(cmds) > _KEEP_CMD_IDS:
            cmds.pop(0)
        self._save()
        self.applied += 1
        log.info("down", "command %s (%s) applied" % (cid, doc["cmd"]))
        return True

    # -- authorization lists in parts -------------------------------------------------------
    def _authlist(self, doc):
        ver = doc.get("ver")
        full = doc.get("full")
        kind = "full" if full is True else "diff" if full is False else None
        current = self.list_version()
        base = doc.get("base", 0 if full else current)
        part = doc.get("part", 0)
        parts = doc.get("parts", 1)
        total = doc.get("total")
        if not _int(ver, 1) or kind not in ("full", "diff") or not _int(base):
            raise Rejected("malformed", "authlist needs ver >= 1, full true|false, base >= 0")
        if not _int(parts, 1) or parts > _MAX_PARTS or not _int(part) or part >= parts:
            raise Rejected("malformed", "part must be 0..parts-1, parts 1..%d" % _MAX_PARTS)
        if total is not None and not _int(total):
            raise Rejected("malformed", "total must be an integer >= 0")
        entries = doc.get("entries")
        if not isinstance(entries, list):
            raise Rejected("malformed", "entries must be a list")
        if ver == current:
            return False
        if ver < current:
            raise Rejected("stale", "ver %d < %d" % (ver, current))
        if kind == "diff" and base != current:
            raise Rejected("base", "diff on ver %d, device has %d" % (base, current))
        st = self._stage
        ref = self.refused
        if ref is not None and ref["ver"] == ver and part and (st is None or st["ver"] != ver):
            return False  # the rest of a version given up on; a resend starts again at part 0
        if st is None or ver > st["ver"]:
            self._drop_stage()
            st = self._stage = {"ver": ver, "kind": kind, "base": base, "parts": parts, "total": total,
                                "have": bytearray((parts + 7) // 8), "count": 0, "next": 0, "staged": 0}
            # a bitmap: 256 B for 2,048 parts, where a set took 16 KB
        elif ver < st["ver"]:
            raise Rejected("stale", "ver %d while collecting %d" % (ver, st["ver"]))
        elif (kind, base, parts, total) != (st["kind"], st["base"], st["parts"], st["total"]):
            self._drop_stage()  # the version cannot be put together: given up, nothing of it left
            self.refused = {"ver": ver, "reason": "malformed"}
            raise Rejected("malformed", "part %d disagrees with earlier parts of ver %d" % (part, ver))
        have = st["have"]
        if have[part >> 3] & (1 << (part & 7)):
            return False  # a repeated part (QoS 1 redelivery)
        if part != st["next"]:
            return self._stage_part(st, part, entries)
        try:
            self._feed(st, part, entries)
            while st["next"] < parts and have[st["next"] >> 3] & (1 << (st["next"] & 7)):
                i = st["next"]  # staged earlier, its turn now
                entries = self._staged(i)
                st["staged"] -= 1
                self._feed(st, i, entries, True)
            if st["next"] < parts:
                return False
            self._commit(st)
        except Rejected as rej:
            self.refused = {"ver": ver, "reason": rej.reason}
            self._drop_stage()
            raise
        self._drop_stage()
        self.refused = None
        self.applied += 1
        log.info("down", "authlist ver %d applied" % ver)
        return True

    def _feed(self, st, i, entries, staged=False):
        # the part's turn: straight into the owner's index (begun with part 0)
        try:
            if i == 0:
                self.sink.begin({"ver": st["ver"], "kind": st["kind"], "base": st["base"], "total": st["total"]})
            self.sink.add(entries)
        except Exception as exc:
            raise _refusal(exc)
        st["have"][i >> 3] |= 1 << (i & 7)
        if not staged:
            st["count"] += 1
        st["next"] = i + 1

    def _commit(self, st):
        try:
            self.sink.commit()
        except Exception as exc:
            raise _refusal(exc)
        if self.sink.version() is None:  # a plain callback's list: its version kept here, as before
            self.state["authlist"] = st["ver"]
            self._save()

    def _part_path(self, i):
        return "%s/al%d.json" % (self.stage_dir, i)

    def _stage_part(self, st, i, entries):
        # ahead of its turn: kept on flash (bounded), or dropped (the backend sends the version again)
        if self.stage_dir is None or st["staged"] >= _MAX_STAGED:
            log.warn("down", "authlist ver %d part %d dropped: ahead of part %d" % (st["ver"], i, st["next"]))
            return False
        text = json.dumps(entries)
        if self.room is not None and not self.room(len(text)):
            log.warn("down", "authlist ver %d part %d dropped: no room to stage it" % (st["ver"], i))
            return False
        try:
            with open(self._part_path(i), "w") as f:
                f.write(text)
        except OSError as exc:
            self._remove(i)
            log.warn("down", "authlist part %d not staged: %s" % (i, exc))
            return False
        st["have"][i >> 3] |= 1 << (i & 7)
        st["staged"] += 1
        st["count"] += 1
        return False

    def _staged(self, i):
        try:
            with open(self._part_path(i)) as f:
                entries = json.load(f)
        except (OSError, ValueError) as exc:
            raise Rejected("flash", "staged part %d unreadable: %s" % (i, exc))
        self._remove(i)
        return entries

    def _remove(self, i):
        try:
            os.remove(self._part_path(i))
        except OSError:
            pass

    def _drop_stage(self):
        st = self._stage
        self._stage = None
        if st is None:
            return
        self.sink.abort()  # begun or not (a first part refused half-way): list.new goes
        if self.stage_dir is None or not st["staged"]:
            return
        have = st["have"]
        for i in range(st["next"], st["parts"]):
            if have[i >> 3] & (1 << (i & 7)):
                self._remove(i)

    def _clean_stage(self):
        if self.stage_dir is None:
            return
        try:
            names = [e[0] for e in os.ilistdir(self.stage_dir)]
        except OSError:
            return
        for name in names:
            try:
                os.remove(self.stage_dir + "/" + name)
            except OSError:
                pass


def _refusal(exc):
    # the owner's exception as a rejection: its own reason when it names one (NoRoom: "no-room")
    if isinstance(exc, Rejected):
        return exc
    return Rejected(getattr(exc, "reason", "invalid"), "%s" % (exc,))


class _Collect:
    """A plain on_authlist(meta, parts) as a sink: the parts wait in RAM until the last is in."""

    def __init__(self, fn):
        self.fn = fn
        self.meta = None
        self.parts = []

    def version(self):
        return None  # the Downlink keeps this list's version in its state file

    def begin(self, meta):
        self.meta = meta
        self.parts = []

    def add(self, entries):
        self.parts.append(entries)

    def commit(self):
        parts, self.parts = self.parts, []
        self.fn({"ver": self.meta["ver"], "kind": self.meta["kind"], "base": self.meta["base"]}, lambda: iter(parts))

    def abort(self):
        self.parts = []
