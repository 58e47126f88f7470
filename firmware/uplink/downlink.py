# Downlink documents from the backend: tariffs, authorization lists, commands.
#
# Each is a JWS (ES256) signed by the backend key pinned in the config. A document is applied
# only when, in this order: it fits the size bound, the signature verifies, the payload is a
# JSON object of the topic's type for this device, its version moves forward (commands: a new
# id that has not expired), and the apply callback accepts it. Otherwise it is reported as an
# event and nothing changes. Versions and recent command ids live on flash, written after a
# successful apply (a crash in between re-applies the same version: harmless).
#
# Authorization lists come in parts (part i of parts, same ver/full/base); verified parts are
# staged on flash and handed to the callback together once all have arrived, so a large list
# never has to sit in RAM. Docs: docs/protocol.md.
import json
import os

from micropython import const

from app import log
from hal import clock

_KEEP_CMD_IDS = const(32)
_MAX_PARTS = const(2048)  # 32 entries a part (backend/downlink.py): 65,536 cards
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
    on_authlist(meta, parts): meta = {"ver", "kind" ("full"/"diff"), "base"}; parts() yields
    each part's entries list in order; apply all or raise.
    """

    def __init__(self, dev, verify, state_path, on_tariff, on_authlist, on_command, report,
                 stage_dir=None, max_doc=8192, now=None):
        self.dev = dev
        self.verify = verify  # compact JWS bytes -> payload bytes, raises when not genuine
        self.state_path = state_path
        self.stage_dir = stage_dir
        self.max_doc = max_doc
        self.now = now or clock.now
        self._apply = {"tariff": on_tariff, "authlist": on_authlist, "cmd": on_command}
        self.report = report
        self.state = self._load()
        self._stage = None  # authlist parts being collected: {"ver", "kind", "base", "parts", "have"}
        self._ram_parts = {}
        self.applied = 0
        self.rejected = 0

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

    def versions(self):
        return {"tariff": self.state["tariff"], "authlist": self.state["authlist"]}

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
            raise Rejected("invalid", "%s" % (exc,))

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
        base = doc.get("base", 0 if full else self.state["authlist"])
        part = doc.get("part", 0)
        parts = doc.get("parts", 1)
        if not _int(ver, 1) or kind not in ("full", "diff") or not _int(base):
            raise Rejected("malformed", "authlist needs ver >= 1, full true|false, base >= 0")
        if not _int(parts, 1) or parts > _MAX_PARTS or not _int(part) or part >= parts:
            raise Rejected("malformed", "part must be 0..parts-1, parts 1..%d" % _MAX_PARTS)
        if not isinstance(doc.get("entries"), list):
            raise Rejected("malformed", "entries must be a list")
        current = self.state["authlist"]
        if ver == current:
            return False
        if ver < current:
            raise Rejected("stale", "ver %d < %d" % (ver, current))
        if kind == "diff" and base != current:
            raise Rejected("base", "diff on ver %d, device has %d" % (base, current))
        st = self._stage
        if st is None or ver > st["ver"]:
            self._drop_stage()
            st = self._stage = {"ver": ver, "kind": kind, "base": base, "parts": parts, "have": bytearray((parts + 7) // 8), "count": 0}
        elif ver < st["ver"]:
            raise Rejected("stale", "ver %d while collecting %d" % (ver, st["ver"]))
        elif (kind, base, parts) != (st["kind"], st["base"], st["parts"]):
            raise Rejected("malformed", "part %d disagrees with earlier parts of ver %d" % (part, ver))
        if st["have"][part >> 3] & (1 << (part & 7)):
            return False
        self._put_part(part, doc["entries"])
        st["have"][part >> 3] |= 1 << (part & 7)  # a bitmap: 256 B for 2,048 parts, where a set took 16 KB
        st["count"] += 1
        if st["count"] < parts:
            return False
        meta = {"ver": ver, "kind": kind, "base": base}
        try:
            return self._versioned("authlist", doc, meta, self._parts)
        finally:
            self._drop_stage()

    def _part_path(self, i):
        return "%s/al%d.json" % (self.stage_dir, i)

    def _put_part(self, i, entries):
        if self.stage_dir is None:
            self._ram_parts[i] = entries
            return
        with open(self._part_path(i), "w") as f:
            f.write(json.dumps(entries))

    def _parts(self):
        for i in range(self._stage["parts"]):
            if self.stage_dir is None:
                yield self._ram_parts[i]
            else:
                with open(self._part_path(i)) as f:
                    yield json.loads(f.read())

    def _drop_stage(self):
        st = self._stage
        self._stage = None
        self._ram_parts = {}
        if st is None or self.stage_dir is None:
            return
        have = st["have"]
        for i in range(st["parts"]):
            if not have[i >> 3] & (1 << (i & 7)):
                continue
            try:
                os.remove(self._part_path(i))
            except OSError:
                pass
