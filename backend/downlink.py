"""Signed documents to devices: tariffs (retained), card lists (chunked), commands.

Every document is a JWS ES256 by the backend key (keys.sign_document) with a version that only moves
forward per device and type: max(last + 1, now in epoch seconds), so a backend whose database was
rebuilt still moves past what devices hold. A push is recorded in `downlinks` and, for card lists,
in `list_entries` (the base of the next differential push) in the same transaction that publishes:
if the broker does not take the documents, nothing is recorded. Publishing is not delivery: lists
go to devices that may be offline (QoS 1, not retained), so backend/converge.py compares what each
device reports holding with what was pushed and sends again what is missing (resync: a new full
list where a differential cannot apply).
"""
from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.cards import DELETE, CardRow
from backend import prepaid
from backend.keys import Keys, sign_document
from backend.models import Card, Device, Downlink, ListEntry, TariffSource

Message = tuple[str, str, bool]  # topic, payload, retain
Publish = Callable[[list[Message]], None]

LIST_CHUNK = 32  # entries per authlist part: ~6 kB as a JWS, under the device's 8 KiB bound (uplink.max_doc_bytes)
MAX_PARTS = 2048  # parts of one list version a device takes (firmware/uplink/downlink.py)
MAX_DIFF = 1000  # the device takes at most this many entries in one differential update
CMD_TTL_S = 300


class DownlinkError(ValueError):
    pass


class Downlinks:
    def __init__(self, sessions: sessionmaker, keys: Keys, prefix: str = "evc", clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.keys = keys
        self.prefix = prefix
        self.clock = clock

    def targets(self, db: DbSession, device: str | None) -> list[Device]:
        """One registered device, or every one (device None: --all)."""
        if device is None:
            devs = list(db.scalars(select(Device).order_by(Device.id)))
            if not devs:
                raise DownlinkError("no devices registered (device add ID --pubkey FILE)")
            return devs
        dev = db.get(Device, device)
        if dev is None:
            raise DownlinkError(f"device {device!r} is not registered")
        return [dev]

    @staticmethod
    def _last(db: DbSession, dev: str, kind: str) -> int:
        return db.scalar(select(func.max(Downlink.ver)).where(Downlink.dev == dev, Downlink.type == kind)) or 0

    def _version(self, db: DbSession, dev: str, kind: str) -> int:
        return max(self._last(db, dev, kind) + 1, int(self.clock()))

    def _sign(self, db: DbSession, dev: str, kind: str, ver: int, payloads: list[dict], retain: bool, sub: str) -> list[Message]:
        key = self.keys.private_key()
        out = []
        for i, body in enumerate(payloads):
            doc = sign_document(key, body)
            db.add(Downlink(dev=dev, type=kind, ver=ver, part=i, parts=len(payloads), doc=doc, published_at=int(self.clock())))
            out.append((f"{self.prefix}/{dev}/{sub}", doc, retain))
        return out

    # -- commands -------------------------------------------------------------------------------

    def command(self, device: str, cmd: str, publish: Publish, ttl_s: int = CMD_TTL_S, **args: Any) -> list[Message]:
        with self.sessions.begin() as db:
            dev = self.targets(db, device)[0]
            body = {"type": "cmd", "dev": dev.id, "id": uuid.uuid4().hex, "exp": int(self.clock()) + ttl_s, "cmd": cmd, **args}
            body["ver"] = self._version(db, dev.id, "cmd")
            msgs = self._sign(db, dev.id, "cmd", body["ver"], [body], False, "cmd")
            publish(msgs)
        return msgs

    # -- card lists -----------------------------------------------------------------------------

    def _learn(self, db: DbSession, rows: list[CardRow]) -> None:
        """Cards table from a CSV: status/exp/contract follow the CSV; balance only opens an account."""
        now = int(self.clock())
        for r in rows:
            if r.status == DELETE:
                continue
            card = db.get(Card, r.token, with_for_update=True)
            if card is None:
                db.add(Card(token=r.token, status=r.status, exp=r.exp, contract=r.contract, balance=r.balance, updated_at=now))
                continue
            card.status, card.exp, card.contract, card.updated_at = r.status, r.exp, r.contract, now
            if card.balance is None and r.balance is not None:
                card.balance = r.balance
        db.flush()

    def _entry(self, card: Card, dev: Device) -> dict:
        # a prepaid card's balance field is this device's allowance, its share (backend/prepaid.py)
        return {"token": card.token, "status": card.status, "exp": card.exp or 0, "contract": card.contract,
                "balance": prepaid.entry_balance(card, dev, int(self.clock())),
                "bal_seq": dev.head_seq if card.balance is not None else 0}

    @staticmethod
    def _same(a: dict, b: dict) -> bool:
        strip = lambda e: {k: v for k, v in e.items() if k != "bal_seq"}  # noqa: E731
        return strip(a) == strip(b)

    def authlist(self, device: str | None, rows: list[CardRow] | None, diff: bool, publish: Publish) -> list[Message]:
        """Full list (rows = the whole list) or differential (rows = changes, plus every card whose
        balance moved since the last push). Entries carry the balance and bal_seq = the device's
        acknowledged seq: the balance includes every record of this device up to it."""
        if rows is None and not diff:
            raise DownlinkError("a full list needs a CSV")
        rows = rows or []
        msgs: list[Message] = []
        with self.sessions.begin() as db:
            self._learn(db, rows)
            for dev in self.targets(db, device):
                db.refresh(dev, with_for_update=True)  # no record moves bal_seq while we read balances
                sent = {e.token: e for e in db.scalars(select(ListEntry).where(ListEntry.dev == dev.id))}
                entries: list[dict] = []
                if not diff:
                    for r in sorted(rows, key=lambda r: r.token):
                        if r.status == DELETE:
                            raise DownlinkError("status `delete` only makes sense with --diff")
                        entries.append(self._entry(db.get(Card, r.token), dev))  # type: ignore[arg-type]
                    db.execute(delete(ListEntry).where(ListEntry.dev == dev.id))
                    for e in entries:
                        db.add(ListEntry(dev=dev.id, token=e["token"], entry=json.dumps(e)))
                else:
                    named = {r.token for r in rows}
                    for r in rows:
                        if r.status == DELETE:
                            entries.append({"token": r.token})
                            if r.token in sent:
                                db.delete(sent[r.token])
                        else:
                            entries.append(self._entry(db.get(Card, r.token), dev))  # type: ignore[arg-type]
                    for token, row in sent.items():
                        card = db.get(Card, token)
                        if token not in named and card is not None:
                            e = self._entry(card, dev)
                            if not self._same(e, json.loads(row.entry)):
                                entries.append(e)
                    if not entries:
                        continue
                    if len(entries) > MAX_DIFF:
                        raise DownlinkError(f"{len(entries)} changes for {dev.id}: more than {MAX_DIFF}, push the full list")
                    for e in entries:
                        if "status" in e:
                            db.merge(ListEntry(dev=dev.id, token=e["token"], entry=json.dumps(e)))
                msgs += self._list_messages(db, dev.id, entries, diff)
            publish(msgs)
        return msgs

    def _list_messages(self, db: DbSession, dev: str, entries: list[dict], diff: bool) -> list[Message]:
        """One list version for dev, signed in parts and recorded. A full list says its `total`
        entries, so that a device can refuse it for room before writing any of it."""
        base = self._last(db, dev, "authlist")  # a diff applies only on top of this version
        ver = self._version(db, dev, "authlist")
        chunks = [entries[i:i + LIST_CHUNK] for i in range(0, len(entries), LIST_CHUNK)] or [[]]
        if len(chunks) > MAX_PARTS:
            raise DownlinkError(f"{len(entries)} cards need {len(chunks)} parts; a device takes at most "
                                f"{MAX_PARTS} ({MAX_PARTS * LIST_CHUNK} cards)")
        size = {} if diff else {"total": len(entries)}
        bodies = [{"type": "authlist", "dev": dev, "ver": ver, "full": not diff, "base": 0 if not diff else base,
                   "part": i, "parts": len(chunks), **size, "entries": c} for i, c in enumerate(chunks)]
        return self._sign(db, dev, "authlist", ver, bodies, False, "authlist")

    def resync(self, device: str, publish: Publish) -> list[Message]:
        """A new full version of the list the device should hold (every card last sent to it, with
        today's status and balance): for a device a differential cannot reach (backend/converge.py)."""
        with self.sessions.begin() as db:
            dev = self.targets(db, device)[0]
            db.refresh(dev, with_for_update=True)  # no record moves bal_seq while we read balances
            entries: list[dict] = []
            rows = db.scalars(select(ListEntry).where(ListEntry.dev == dev.id))
            for row in sorted(rows, key=lambda r: r.token):  # the device's byte order, whatever the collation
                card = db.get(Card, row.token)
                e = self._entry(card, dev) if card is not None else json.loads(row.entry)
                row.entry = json.dumps(e)
                entries.append(e)
            msgs = self._list_messages(db, dev.id, entries, False)
            publish(msgs)
        return msgs

    def credit(self, token: str, amount: int) -> int:
        """Top up (or correct) a prepaid balance; returns the new balance."""
        with self.sessions.begin() as db:
            card = db.get(Card, token, with_for_update=True)
            if card is None:
                raise DownlinkError(f"card {token} is unknown (push a list that names it first)")
            card.balance = (card.balance or 0) + amount
            card.updated_at = int(self.clock())
            return card.balance

    # -- tariffs --------------------------------------------------------------------------------

    def tariff(self, device: str | None, ocpi: dict, contract: str | None, compile_doc: Callable[..., dict],
               publish: Publish) -> list[Message]:
        """Remember the OCPI tariff for (device, contract), recompile the device's whole document
        (default + contracts) and publish it retained."""
        msgs: list[Message] = []
        with self.sessions.begin() as db:
            for dev in self.targets(db, device):
                db.merge(TariffSource(dev=dev.id, contract=contract or "", ocpi=json.dumps(ocpi)))
                db.flush()
                sources = {t.contract: json.loads(t.ocpi) for t in db.scalars(select(TariffSource).where(TariffSource.dev == dev.id))}
                if "" not in sources:
                    raise DownlinkError(f"{dev.id} has no default tariff yet: push one without --contract first")
                ver = self._version(db, dev.id, "tariff")
                body = {"type": "tariff", "dev": dev.id, **compile_doc(sources.pop(""), sources, ver)}
                body["ver"] = ver
                msgs += self._sign(db, dev.id, "tariff", ver, [body], True, "tariff")
            publish(msgs)
        return msgs
