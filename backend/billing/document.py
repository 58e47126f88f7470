"""What an invoice, credit note or receipt says, independent of how it is stored or rendered.

The billing run (backend/billing/runs.py) and refunds build these from the database; the renderers
(PDF, EN 16931 / Factur-X XML, S.A.F.E. export) read only these. Money in minor units of `currency`
(integers, never floats); VAT rates in basis points (hundredths of a percent: 19 % = 1900), as in the
signed records' cost lines; times in epoch seconds (UTC), dates as datetime.date.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["invoice", "credit_note", "receipt"]
LineKind = Literal["session", "discount", "fee", "refund"]


@dataclass(frozen=True)
class Party:
    """Seller (the operator) or buyer (the customer)."""

    name: str
    address: tuple[str, ...] = ()  # street, postcode and city, ... as printed
    country: str = ""  # ISO 3166-1 alpha-2, e.g. "DE"
    vat_id: str | None = None
    email: str | None = None
    postcode: str = ""
    city: str = ""
    legal_id: str | None = None  # legal registration id (e.g. "HRB 1234"): EN 16931 BT-30, needed without a VAT id


@dataclass(frozen=True)
class SessionRef:
    """The signed record a line bills: enough for a driver to check the reading independently."""

    dev: str
    seq: int
    record_hash: str  # SHA-256 hex of the signed payload bytes
    start_t: int
    stop_t: int
    energy_wh: int
    token: str
    tariff_id: str
    ocmf: str  # the OCMF string exactly as signed
    pubkey_hex: str  # the device's public key, SubjectPublicKeyInfo DER as hex (what transparency software takes)


@dataclass(frozen=True)
class Line:
    kind: LineKind
    description: str
    net: int  # minor units excluding VAT; negative for discounts, credits
    vat_bp: int | None  # VAT rate in basis points; None: no VAT applies (exempt / not subject)
    tax: int  # VAT of this line in minor units (as the record signed it, for session lines)
    session: SessionRef | None = None

    @property
    def gross(self) -> int:
        return self.net + self.tax


@dataclass(frozen=True)
class VatTotal:
    vat_bp: int | None
    base: int  # sum of the lines' net at this rate
    tax: int  # sum of the lines' tax at this rate


@dataclass(frozen=True)
class Document:
    kind: Kind
    number: str  # gapless within its series, e.g. "INV-2026-000017", "CN-2026-000003", "RC-2026-000412"
    issue_date: dt.date
    currency: str  # ISO 4217
    seller: Party
    buyer: Party
    lines: tuple[Line, ...]
    period_start: dt.date | None = None
    period_end: dt.date | None = None  # inclusive
    due_date: dt.date | None = None
    language: str = "en"  # "en" or "de"
    references: tuple[str, ...] = ()  # a credit note: the invoice number(s) it corrects
    customer_ref: str = ""  # the customer id
    contract_ref: str = ""
    note: str = ""
    payment_terms: str = ""

    @property
    def vat_totals(self) -> tuple[VatTotal, ...]:
        """Per rate, in rate order (None, i.e. no VAT, first)."""
        sums: dict[int | None, list[int]] = {}
        for line in self.lines:
            s = sums.setdefault(line.vat_bp, [0, 0])
            s[0] += line.net
            s[1] += line.tax
        order = sorted(sums, key=lambda r: -1 if r is None else r)
        return tuple(VatTotal(r, sums[r][0], sums[r][1]) for r in order)

    @property
    def total_net(self) -> int:
        return sum(line.net for line in self.lines)

    @property
    def total_tax(self) -> int:
        return sum(line.tax for line in self.lines)

    @property
    def total_gross(self) -> int:
        return self.total_net + self.total_tax

    @property
    def sessions(self) -> tuple[SessionRef, ...]:
        return tuple(line.session for line in self.lines if line.session is not None)


@dataclass(frozen=True)
class Brand:
    """What an operator changes about how documents look (a TOML/JSON file, see docs/billing.md)."""

    seller: Party
    logo: str | None = None  # path to a PNG/SVG
    primary_colour: str = "#0b6e4f"
    accent_colour: str = "#222222"
    footer: str = ""
    bank: str = ""  # IBAN / BIC line for transfers
    extra: dict[str, str] = field(default_factory=dict)
