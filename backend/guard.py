"""Bounds on what the backend reads and what it writes (issue #18, docs/backend.md "Bad input").

Reading: a message is bounded in size before anything looks inside it, base64url and UTF-8 are
decoded strictly, and JSON nesting is measured without recursion before json.loads sees it.
Writing: raw messages kept with an anomaly are cut to KEEP_RAW_BYTES (with the original length and
the SHA-256 of the whole), text is made storable (no NUL, no lone surrogates: PostgreSQL refuses
both), and a row's values are checked against its table's column types before the database sees
them, so that no input can make a transaction fail.
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from sqlalchemy import BigInteger, Boolean, Integer, LargeBinary, String, Table

from evc.verify import MAX_JSON_DEPTH, json_too_deep

# The firmware journals a signed record as one frame body of at most 64 KiB
# (firmware/journal/frame.py MAX_BODY), so no record a device can send is larger. Records of the
# scripted day are about 2 KB; one with a line for each of a tariff's 64 elements in every
# dimension is about 45 KB.
MAX_MESSAGE_BYTES = 65536
MAX_DEPTH = MAX_JSON_DEPTH
KEEP_RAW_BYTES = 4096  # of a message that is not the device's own signed word
MAX_DETAIL_CHARS = 1024
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")


class Unreadable(ValueError):
    """Input refused before (or instead of) parsing it; str(exc) says why."""


def as_bytes(raw: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogatepass")  # a lone surrogate stays visible (and invalid UTF-8)
    return bytes(raw)


def b64url(part: bytes | str) -> bytes:
    """Strict base64url without padding: only the URL-safe alphabet, no impossible length."""
    data = as_bytes(part)
    if not _B64URL.fullmatch(data) or len(data) % 4 == 1:
        raise Unreadable("bad base64url")
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def loads(data: bytes | str, max_bytes: int = MAX_MESSAGE_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads behind the bounds: size, strict UTF-8, nesting depth. Raises ValueError."""
    raw = as_bytes(data)
    if len(raw) > max_bytes:
        raise Unreadable(f"{len(raw)} bytes, more than {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if json_too_deep(text, max_depth):
        raise Unreadable(f"JSON nested deeper than {max_depth}")
    return json.loads(text)


def storable(s: str, limit: int | None = None) -> str:
    """Text any database takes: NUL and lone surrogates written as escapes, at most limit chars."""
    if "\x00" in s:
        s = s.replace("\x00", "\\x00")
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    if limit is not None and len(s) > limit:
        s = s[: max(0, limit - 3)] + "..."
    return s


def detail(text: str) -> str:
    return storable(text, MAX_DETAIL_CHARS)


def clip(raw: bytes | str, whole: bool = False) -> tuple[str, int, str]:
    """(storable text, original length in bytes, SHA-256 hex of all of it) of a raw message. At most
    KEEP_RAW_BYTES characters of it are kept (bytes that are not UTF-8 written as escapes) unless
    whole: the device's own signed record, which the size bound already limits."""
    data = as_bytes(raw)
    if whole:
        return storable(data.decode("utf-8", "backslashreplace")), len(data), hashlib.sha256(data).hexdigest()
    text = storable(data[:KEEP_RAW_BYTES].decode("utf-8", "backslashreplace"))[:KEEP_RAW_BYTES]  # escapes count
    return text, len(data), hashlib.sha256(data).hexdigest()


def _text_ok(v: str) -> bool:
    if "\x00" in v:
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def misfit(table: Table, values: dict[str, Any]) -> str | None:
    """Why `values` would not go into `table` as they are (first problem found), or None when every
    value fits its column: type, length, 64/32-bit integer range, storable text, nullability."""
    for col in table.columns:
        if col.key not in values:
            continue
        v = values[col.key]
        t = col.type
        if v is None:
            if not col.nullable:
                return f"{col.key}: missing"
            continue
        if isinstance(t, Boolean):
            ok, why = isinstance(v, bool), "not a boolean"
        elif isinstance(t, Integer):  # BigInteger is an Integer
            lo, hi = (INT64_MIN, INT64_MAX) if isinstance(t, BigInteger) else (INT32_MIN, INT32_MAX)
            ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
            why = f"{v!r:.40} is not an integer in [{lo}, {hi}]"
        elif isinstance(t, String):  # Text is a String without a length
            if not isinstance(v, str):
                ok, why = False, f"{type(v).__name__}, not text"
            elif t.length is not None and len(v) > t.length:
                ok, why = False, f"{len(v)} characters, the column holds {t.length}"
            else:
                ok, why = _text_ok(v), "text with a NUL character or a lone surrogate"
        elif isinstance(t, LargeBinary):
            ok, why = isinstance(v, bytes), "not bytes"
        else:
            continue
        if not ok:
            return f"{col.key}: {why}"
    return None
