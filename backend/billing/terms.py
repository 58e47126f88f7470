"""What an operator may enter about customers and contracts, checked before anything is stored.

Discounts (a contract version's `discounts`, JSON): a list of at most 16 rules, each
  {"type": "percent" | "fixed", "value": int, "per": "session" | "invoice", "above_wh": int}
- percent: value in basis points of the net (10 % = 1000), 1..10000;
- fixed: value in minor units of the net (excl. VAT), at most the net it is taken from;
- per session: on each session; per invoice: once, on the invoice's sessions;
- above_wh (optional, a volume tier): per session, only on sessions started once the contract's
  energy in that calendar month (UTC) has reached above_wh; per invoice, only when the invoice's
  sessions reach above_wh together.
On the command line a rule is TYPE:VALUE:PER[:above=WH], e.g. percent:1000:invoice.
"""
from __future__ import annotations

import datetime as dt
import json
import re

from backend.billing.document import Party


class BillingError(ValueError):
    """Bad input or a refused operation: the message says which and why; nothing was changed."""


CYCLES = ("per_session", "weekly", "monthly")
KINDS = ("driver", "company")
LANGUAGES = ("en", "de")
MAX_DISCOUNTS = 16
_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_TOKEN = re.compile(r"[0-9a-f]{32}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_VAT_ID = re.compile(r"[A-Z]{2}[0-9A-Za-z+*.]{2,13}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
MAX_T = 253_402_300_799  # 9999-12-31T23:59:59Z


def ident(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise BillingError(f"{what} {value!r}: 1..64 letters, digits and . _ : - expected")
    return value


def token(value: str) -> str:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise BillingError(f"card token {value!r}: 32 lower-case hex digits expected")
    return value


def text(value: str | None, what: str, limit: int, required: bool = True, lines: bool = False) -> str:
    value = (value or "").strip()
    if required and not value:
        raise BillingError(f"{what} is required")
    if len(value) > limit:
        raise BillingError(f"{what}: at most {limit} characters")
    if _CTRL.search(value.replace("\n", "") if lines else value):
        raise BillingError(f"{what}: control characters are not allowed")
    return value


def customer_fields(*, kind: str, name: str, address: str | None, postcode: str | None, city: str | None,
                    country: str, vat_id: str | None, email: str | None, language: str, currency: str) -> dict:
    """The checked columns of a customer."""
    if kind not in KINDS:
        raise BillingError(f"customer kind {kind!r}: one of {', '.join(KINDS)}")
    if not isinstance(country, str) or not _COUNTRY.fullmatch(country):
        raise BillingError(f"country {country!r}: ISO 3166-1 alpha-2 code expected (e.g. DE)")
    if language not in LANGUAGES:
        raise BillingError(f"language {language!r}: one of {', '.join(LANGUAGES)}")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise BillingError(f"currency {currency!r}: ISO 4217 code expected (e.g. EUR)")
    if vat_id and not _VAT_ID.fullmatch(vat_id):
        raise BillingError(f"VAT id {vat_id!r}: country prefix and 2..13 characters expected (e.g. DE123456789)")
    if email and not _EMAIL.fullmatch(email):
        raise BillingError(f"e-mail {email!r} is not an address")
    address = text(address, "address", 400, required=False, lines=True).replace("\\n", "\n")
    if len(address.splitlines()) > 4:
        raise BillingError("address: at most 4 lines")
    return dict(kind=kind, name=text(name, "name", 200), address=address,
                postcode=text(postcode, "postcode", 16, required=False), city=text(city, "city", 100, required=False),
                country=country, vat_id=vat_id or None, email=email or None, language=language, currency=currency)


def party(fields: dict) -> Party:
    return Party(name=fields["name"], address=tuple(x for x in fields.get("address", "").splitlines() if x),
                 country=fields.get("country", ""), vat_id=fields.get("vat_id"), email=fields.get("email"),
                 postcode=fields.get("postcode", ""), city=fields.get("city", ""))


def party_json(p: Party) -> str:
    return json.dumps({"name": p.name, "address": list(p.address), "country": p.country, "vat_id": p.vat_id,
                       "email": p.email, "postcode": p.postcode, "city": p.city}, sort_keys=True)


def party_from_json(raw: str) -> Party:
    d = json.loads(raw)
    return Party(name=d["name"], address=tuple(d.get("address", ())), country=d.get("country", ""),
                 vat_id=d.get("vat_id"), email=d.get("email"), postcode=d.get("postcode", ""), city=d.get("city", ""))


def when(value: str | int, what: str) -> int:
    """Epoch seconds from an integer or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if isinstance(value, int) and not isinstance(value, bool):
        t = value
    elif isinstance(value, str) and value.isdigit():
        t = int(value)
    else:
        try:
            d = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise BillingError(f"{what} {value!r}: epoch seconds or an ISO 8601 date expected") from None
        t = int((d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc)).timestamp())
    if not 0 <= t <= MAX_T:
        raise BillingError(f"{what} {value!r} is out of range")
    return t


def discount(rule: object) -> dict:
    """One discount rule, checked (a dict, or TYPE:VALUE:PER[:above=WH])."""
    if isinstance(rule, str):
        parts = rule.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and not parts[3].startswith("above=")):
            raise BillingError(f"discount {rule!r}: TYPE:VALUE:PER[:above=WH] expected, e.g. percent:1000:invoice")
        d: dict = {"type": parts[0], "value": parts[1], "per": parts[2]}
        if len(parts) == 4:
            d["above_wh"] = parts[3][len("above="):]
        for k in ("value", "above_wh"):
            if k in d:
                if not re.fullmatch(r"[0-9]{1,15}", d[k]):
                    raise BillingError(f"discount {rule!r}: {k} must be a whole number")
                d[k] = int(d[k])
        rule = d
    if not isinstance(rule, dict) or set(rule) - {"type", "value", "per", "above_wh"}:
        raise BillingError(f"discount {rule!r}: type, value, per and optional above_wh expected")
    kind, value, per, above = rule.get("type"), rule.get("value"), rule.get("per"), rule.get("above_wh", 0)
    if kind not in ("percent", "fixed"):
        raise BillingError(f"discount type {kind!r}: percent or fixed")
    if per not in ("session", "invoice"):
        raise BillingError(f"discount per {per!r}: session or invoice")
    top = 10_000 if kind == "percent" else 10**12
    if type(value) is not int or not 1 <= value <= top:
        raise BillingError(f"discount value {value!r}: 1..{top} ({'basis points' if kind == 'percent' else 'minor units'})")
    if type(above) is not int or not 0 <= above <= 10**12:
        raise BillingError(f"discount above_wh {above!r}: 0..10^12 Wh")
    return {"type": kind, "value": value, "per": per, "above_wh": above}


def discounts(rules: list) -> list[dict]:
    if len(rules) > MAX_DISCOUNTS:
        raise BillingError(f"at most {MAX_DISCOUNTS} discount rules")
    return [discount(r) for r in rules]


def version_terms(*, cycle: str, payment_days: int, late_fee: int, tariff_id: str | None, valid_from: int,
                  valid_to: int | None, rules: list) -> dict:
    """The checked columns of a contract version."""
    if cycle not in CYCLES:
        raise BillingError(f"billing cycle {cycle!r}: one of {', '.join(CYCLES)}")
    if type(payment_days) is not int or not 0 <= payment_days <= 365:
        raise BillingError(f"payment terms {payment_days!r}: 0..365 days")
    if type(late_fee) is not int or not 0 <= late_fee <= 10**12:
        raise BillingError(f"late fee {late_fee!r}: 0..10^12 minor units")
    if tariff_id is not None:
        tariff_id = text(tariff_id, "tariff id", 64) or None
    if valid_to is not None and valid_to <= valid_from:
        raise BillingError("the validity must end after it starts (valid_to > valid_from)")
    return dict(cycle=cycle, payment_days=payment_days, late_fee=late_fee, tariff_id=tariff_id,
                valid_from=valid_from, valid_to=valid_to, discounts=json.dumps(discounts(rules), sort_keys=True))
