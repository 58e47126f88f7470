"""Downlink convergence: what each device holds, from its retained status, and what it still needs.

Lists go out QoS 1 without retain, and a device may be offline, on a clean session, or refuse a
differential whose base it lacks: a push is not a delivery. Each device's status reports the
versions it holds (`versions`: tariff and authorization list; the list's is committed with the list)
and, while it matters, the list version it is collecting or last refused (`downlink`). From that,
for a device that is online and behind:

- tariff older than the last one pushed: the stored (retained) document is published again;
- list older than the last one pushed: when the stored versions after the device's one are all
  differentials that chain from it, they are published again in order; otherwise a differential
  cannot apply and a new full version of the device's list is pushed (Downlinks.resync);
- nothing is sent again within `retry_s` of the last push of that version (the device may still be
  taking it in), and a version the device refused for its content or for room (`no-room`,
  `invalid`, `malformed`) is not sent again: that needs the operator (a smaller or fixed list).

The state is kept in `device_states` (backend/models.py DeviceState); convergence runs on each
status message and on a periodic sweep (backend/worker.py).
"""
from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.downlink import Downlinks, Message, Publish
from backend.models import Device, DevicePresence, DeviceState, Downlink

log = logging.getLogger("backend.converge")

MAX_STATUS = 16 * 1024  # a device status is a few hundred bytes
RETRY_S = 120  # a version pushed this recently may still be arriving
HOLD_REASONS = frozenset({"no-room", "invalid", "malformed"})  # sending the same version again cannot help
_MAX_VER = (1 << 63) - 1


class StatusError(ValueError):
    pass


def _ver(v: object, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _MAX_VER:
        raise StatusError(f"{what} must be an integer >= 0")
    return v


def parse_status(payload: bytes) -> dict:
    """The fields convergence reads from a status payload, checked; StatusError otherwise."""
    if len(payload) > MAX_STATUS:
        raise StatusError(f"status of {len(payload)} bytes (at most {MAX_STATUS})")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise StatusError("status is not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("online"), bool):
        raise StatusError("status must be an object with online true|false")
    out: dict = {"online": doc["online"], "tariff": None, "authlist": None, "collecting": None, "refused": None}
    if not doc["online"]:
        return out  # the last will: nothing else in it
    if doc.get("state") == "fault":
        out["online"] = False  # a charger in its fault state applies nothing (docs/protocol.md): no pushes
        return out
    versions = doc.get("versions")
    if not isinstance(versions, dict):
        return out  # a fault state's status may lack them: nothing to compare
    out["tariff"] = _ver(versions.get("tariff", 0), "versions.tariff")
    out["authlist"] = _ver(versions.get("authlist", 0), "versions.authlist")
    down = doc.get("downlink")
    if isinstance(down, dict):
        c, r = down.get("collecting"), down.get("refused")
        if isinstance(c, dict):
            out["collecting"] = _ver(c.get("ver"), "downlink.collecting.ver")
        if isinstance(r, dict):
            reason = r.get("reason")
            if not isinstance(reason, str) or not 0 < len(reason) <= 32:
                raise StatusError("downlink.refused.reason must be a string of 1..32 characters")
            out["refused"] = (_ver(r.get("ver"), "downlink.refused.ver"), reason)
    return out


def _body(jws: str) -> dict:
    p = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


class Converger:
    def __init__(self, sessions: sessionmaker, downlinks: Downlinks, retry_s: int = RETRY_S,
                 clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.downlinks = downlinks
        self.retry_s = retry_s
        self.clock = clock
        self.prefix = downlinks.prefix

    def dev_of(self, topic: str) -> str | None:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != self.prefix or parts[2] != "status" or not 0 < len(parts[1]) <= 32:
            return None
        return parts[1]

    def on_status(self, topic: str, payload: bytes, publish: Publish) -> list[Message]:
        """Record what the device reports and send what it lacks. Raises StatusError on a bad status."""
        dev = self.dev_of(topic)
        if dev is None:
            raise StatusError(f"not a status topic: {topic[:80]!r}")
        st = parse_status(payload)
        now = int(self.clock())
        with self.sessions.begin() as db:
            if db.get(Device, dev) is None:
                return []  # not ours (or not registered yet): nothing to converge
            row = db.get(DeviceState, dev, with_for_update=True)
            was = None if row is None else row.online
            if row is None:
                row = DeviceState(dev=dev, online=False, tariff_ver=0, list_ver=0, seen_at=now, pushed_tariff_ver=0,
                                  pushed_tariff_at=0, pushed_list_ver=0, pushed_list_at=0)
                db.add(row)
            row.online, row.seen_at = st["online"], now
            row.status = payload.decode("utf-8", "replace")  # the dashboard's live state (backend/web)
            if was is None or bool(was) != st["online"]:  # the dashboard's offline periods
                db.add(DevicePresence(dev=dev, at=now, online=st["online"]))
            if st["tariff"] is not None:
                row.tariff_ver, row.list_ver = st["tariff"], st["authlist"]
                row.collecting_ver = st["collecting"]
                if st["refused"] is not None:
                    row.refused_ver, row.refused_reason = st["refused"]
            db.flush()
        return self.converge(dev, publish)

    def sweep(self, publish: Publish) -> list[Message]:
        """converge() every device that is online: pushes whose retry time has come."""
        with self.sessions.begin() as db:
            devs = list(db.scalars(select(DeviceState.dev).where(DeviceState.online.is_(True))))
        out: list[Message] = []
        for dev in devs:
            out += self.converge(dev, publish)
        return out

    def converge(self, dev: str, publish: Publish) -> list[Message]:
        msgs: list[Message] = []
        resync = False
        now = int(self.clock())
        with self.sessions.begin() as db:
            row = db.get(DeviceState, dev, with_for_update=True)
            if row is None or not row.online:
                return []
            msgs += self._tariff(db, row, now)
            list_msgs, resync = self._list(db, row, now)
            msgs += list_msgs
            if msgs:
                publish(msgs)  # in the transaction: a broker that does not take them records no push
        if resync:
            msgs += self.downlinks.resync(dev, publish)
            with self.sessions.begin() as db:
                row = db.get(DeviceState, dev, with_for_update=True)
                if row is not None:
                    row.pushed_list_ver, row.pushed_list_at = self.downlinks._last(db, dev, "authlist"), now  # noqa: SLF001
        return msgs

    def _recent(self, db: DbSession, dev: str, kind: str, ver: int, pushed_ver: int, pushed_at: int, now: int) -> bool:
        first = db.scalar(select(func.max(Downlink.published_at)).where(
            Downlink.dev == dev, Downlink.type == kind, Downlink.ver == ver)) or 0
        last = max(first, pushed_at if pushed_ver == ver else 0)
        return now - last < self.retry_s

    def _tariff(self, db: DbSession, row: DeviceState, now: int) -> list[Message]:
        latest = self.downlinks._last(db, row.dev, "tariff")  # noqa: SLF001
        if latest <= row.tariff_ver or self._recent(db, row.dev, "tariff", latest, row.pushed_tariff_ver,
                                                    row.pushed_tariff_at, now):
            return []
        doc = db.scalar(select(Downlink.doc).where(Downlink.dev == row.dev, Downlink.type == "tariff",
                                                   Downlink.ver == latest).order_by(Downlink.id.desc()).limit(1))
        if doc is None:
            return []
        row.pushed_tariff_ver, row.pushed_tariff_at = latest, now
        log.info("%s holds tariff %d, pushed %d: sent again", row.dev, row.tariff_ver, latest)
        return [(f"{self.prefix}/{row.dev}/tariff", doc, True)]

    def _list(self, db: DbSession, row: DeviceState, now: int) -> tuple[list[Message], bool]:
        latest = self.downlinks._last(db, row.dev, "authlist")  # noqa: SLF001
        held = row.list_ver
        if latest <= held:
            return [], False
        if row.refused_ver is not None and held < row.refused_ver <= latest and row.refused_reason in HOLD_REASONS:
            return [], False  # the operator's turn: a version the device cannot take is not pushed again
        if self._recent(db, row.dev, "authlist", latest, row.pushed_list_ver, row.pushed_list_at, now):
            return [], False
        docs = db.execute(select(Downlink.ver, Downlink.part, Downlink.doc).where(
            Downlink.dev == row.dev, Downlink.type == "authlist", Downlink.ver > held)
            .order_by(Downlink.ver, Downlink.part, Downlink.id)).all()
        chain: list[Message] = []
        base = held
        seen: set[tuple[int, int]] = set()
        for ver, part, doc in docs:
            if (ver, part) in seen:
                continue
            seen.add((ver, part))
            if part == 0:
                b = _body(doc)
                if b.get("full") is not False or b.get("base") != base:
                    log.info("%s holds list %d: no differential chain to %d, a new full list goes", row.dev, held, latest)
                    return [], True
                base = ver
            chain.append((f"{self.prefix}/{row.dev}/authlist", doc, False))
        row.pushed_list_ver, row.pushed_list_at = latest, now
        log.info("%s holds list %d: differentials up to %d sent again (%d parts)", row.dev, held, latest, len(chain))
        return chain, False


class PinnedKey:
    """The worker's private key where Downlinks wants a Keys folder (private_key())."""

    def __init__(self, key):
        self.key = key

    def private_key(self):
        return self.key
