"""An operator's Brand from a TOML or JSON file (keys: docs/billing.md).

Top-level keys: logo (path, relative to the file), primary_colour, accent_colour (hex #rrggbb),
footer, bank, timezone (IANA name for session times on documents, default UTC); [seller]: name, address (list of lines), postcode, city, country (ISO alpha-2),
vat_id, email, legal_id (register entry: identifies a seller without VAT id); [extra]: free strings. Unknown keys are an error, so a typo is not silently ignored.
"""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from backend.billing.document import Brand, Party

_TOP = {"seller", "logo", "primary_colour", "accent_colour", "footer", "bank", "timezone", "extra"}
_SELLER = {"name", "address", "postcode", "city", "country", "vat_id", "email", "legal_id"}
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


class BrandError(ValueError):
    """The brand file is unreadable or has a bad key or value (the message names it)."""


def _text(v: object, where: str, limit: int = 200, required: bool = False) -> str:
    if v is None and not required:
        return ""
    if not isinstance(v, str) or (required and not v.strip()) or len(v) > limit or any(ord(c) < 32 for c in v):
        raise BrandError(f"{where} must be a {'non-empty ' if required else ''}single-line text of at most {limit} characters")
    return v


def parse_brand(data: object, base: Path | None = None) -> Brand:
    """A Brand from the decoded file contents; base: the folder a relative logo path starts from."""
    if not isinstance(data, dict):
        raise BrandError("brand file must hold a table/object")
    unknown = set(data) - _TOP
    if unknown:
        raise BrandError(f"unknown brand keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_TOP))})")
    s = data.get("seller")
    if not isinstance(s, dict):
        raise BrandError("brand file needs a [seller] table with at least name and country")
    unknown = set(s) - _SELLER
    if unknown:
        raise BrandError(f"unknown seller keys: {', '.join(sorted(unknown))} (known: {', '.join(sorted(_SELLER))})")
    address = s.get("address", [])
    if not isinstance(address, list) or len(address) > 5:
        raise BrandError("seller.address must be a list of at most 5 lines")
    country = _text(s.get("country"), "seller.country", 2, required=True)
    if not _COUNTRY.match(country):
        raise BrandError("seller.country must be an ISO 3166-1 alpha-2 code like DE")
    seller = Party(
        name=_text(s.get("name"), "seller.name", required=True),
        address=tuple(_text(a, f"seller.address[{i}]", required=True) for i, a in enumerate(address)),
        country=country,
        vat_id=_text(s.get("vat_id"), "seller.vat_id", 30) or None,
        email=_text(s.get("email"), "seller.email", 254) or None,
        postcode=_text(s.get("postcode"), "seller.postcode", 20),
        city=_text(s.get("city"), "seller.city", 100),
        legal_id=_text(s.get("legal_id"), "seller.legal_id", 100) or None,
    )
    colours = {}
    for key in ("primary_colour", "accent_colour"):
        if key in data:
            c = data[key]
            if not isinstance(c, str) or not _COLOUR.match(c):
                raise BrandError(f"{key} must be a hex colour like #0b6e4f")
            colours[key] = c
    logo = None
    if data.get("logo") is not None:
        p = Path(_text(data["logo"], "logo", 1000, required=True))
        if base is not None and not p.is_absolute():
            p = base / p
        if p.suffix.lower() not in (".png", ".svg", ".jpg", ".jpeg") or not p.is_file():
            raise BrandError(f"logo {str(p)!r} must be an existing PNG, SVG or JPEG file")
        logo = str(p)
    extra = data.get("extra", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise BrandError("[extra] must map names to strings")
    extra = dict(extra)
    if "timezone" in data:
        extra["timezone"] = _text(data["timezone"], "timezone", 64, required=True)
    if "timezone" in extra:
        try:
            ZoneInfo(extra["timezone"])
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise BrandError(f"timezone {extra['timezone']!r} is not an IANA zone name like Europe/Berlin") from e
    return Brand(seller=seller, logo=logo, footer=_text(data.get("footer"), "footer", 300),
                 bank=_text(data.get("bank"), "bank", 200), extra=extra, **colours)


def load_brand(path: str | Path) -> Brand:
    """Read a brand file: *.toml as TOML, anything else as JSON. BrandError names what is wrong."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise BrandError(f"cannot read brand file {str(p)!r}: {e.strerror}") from e
    try:
        data = tomllib.loads(raw.decode("utf-8")) if p.suffix.lower() == ".toml" else json.loads(raw)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise BrandError(f"brand file {str(p)!r} is not valid {'TOML' if p.suffix.lower() == '.toml' else 'JSON'}: {e}") from e
    return parse_brand(data, p.parent)
