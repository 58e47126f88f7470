"""Card lists from CSV and the prepaid ledger.

CSV (header row required; one card per row):
  uid | token   the card: UID as hex (turned into a token with the site secret) or the token itself
  status        accepted (default), blocked, expired, invalid; with --diff also `delete`
  exp           expiry, epoch seconds (empty: none)
  contract      contract or group id (empty: none)
  balance       prepaid opening balance in minor units, taken when the backend first learns the card
                (empty: postpaid). Later balances come from the ledger: records charge it, `card
                credit` tops it up; a CSV never overwrites a balance the ledger already keeps.
"""
from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.keys import card_token

STATUSES = ("accepted", "blocked", "expired", "invalid")
DELETE = "delete"
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_UID = re.compile(r"^(?:[0-9a-fA-F]{2}){4,10}$")  # 4, 7 or 10 byte UIDs; a little slack


class CardListError(ValueError):
    pass


@dataclass(frozen=True)
class CardRow:
    token: str
    status: str
    exp: int
    contract: str | None
    balance: int | None


def _int(value: str, what: str, line: int) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise CardListError(f"line {line}: {what} {value!r} is not an integer") from None


def read_csv(path: Path, secret: bytes | None, allow_delete: bool = False) -> Iterator[CardRow]:
    """Rows of a card list CSV, checked; raises CardListError naming the line."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = set(reader.fieldnames or ())
        if not fields & {"uid", "token"}:
            raise CardListError(f"{path}: the header needs a `uid` or a `token` column")
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            uid, token = (row.get("uid") or "").strip(), (row.get("token") or "").strip()
            if uid:
                if not _UID.match(uid):
                    raise CardListError(f"line {line}: uid {uid!r} is not 4..10 bytes of hex")
                if secret is None:
                    raise CardListError("UIDs need the site secret (keys init)")
                token = card_token(secret, bytes.fromhex(uid))
            elif not _TOKEN.match(token):
                raise CardListError(f"line {line}: token must be 32 lower-case hex digits")
            if token in seen:
                raise CardListError(f"line {line}: the card appears twice")
            seen.add(token)
            status = (row.get("status") or "accepted").strip()
            if status not in STATUSES and not (allow_delete and status == DELETE):
                raise CardListError(f"line {line}: status {status!r} is not one of {STATUSES}")
            exp = _int(row.get("exp") or "", "exp", line) or 0
            if not 0 <= exp <= 0xFFFFFFFF:
                raise CardListError(f"line {line}: exp out of range")
            contract = (row.get("contract") or "").strip() or None
            if contract is not None and not 0 < len(contract.encode()) <= 32:
                raise CardListError(f"line {line}: contract id must be 1..32 bytes")
            balance = _int(row.get("balance") or "", "balance", line)
            if balance is not None and not -(1 << 31) <= balance < (1 << 31):
                raise CardListError(f"line {line}: balance out of range")
            yield CardRow(token, status, exp, contract, balance)
