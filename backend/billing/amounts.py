"""Money arithmetic of billing: integers in minor units, the device's one rounding rule (half-up,
docs/pricing.md), exact splits, and the VAT parts of a signed record.

A signed record carries its totals (cost.excl, cost.incl: each rounded once from the exact sum on
the device) and display lines, each with its VAT rate (`vat`, basis points, or null). The record's
totals are what is billed; the lines only say which rate each part of it carries.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

MAX_VAT_BP = 100_000  # 1000 %: anything above is not a VAT rate


def half_up(num: int, den: int) -> int:
    """num/den rounded half-up (half away from zero for negative num), exactly."""
    if den <= 0:
        raise ValueError("denominator must be positive")
    if num < 0:
        return -half_up(-num, den)
    return (2 * num + den) // (2 * den)


def tax_of(net: int, vat_bp: int | None) -> int:
    """VAT of a net amount the backend computes itself (discounts): rate x net, rounded half-up once."""
    return 0 if vat_bp is None else half_up(net * vat_bp, 10_000)


def net_of_gross(gross: int, vat_bp: int | None) -> int:
    """The net part of a gross amount (refunds are given gross): rounded half-up once; tax = gross - net."""
    return gross if vat_bp is None else half_up(gross * 10_000, 10_000 + vat_bp)


def split(total: int, weights: list[int]) -> list[int]:
    """total split in proportion to weights (>= 0), exactly (largest remainder, ties to the first).
    All weights 0: everything to the first."""
    if not weights:
        raise ValueError("nothing to split over")
    if total < 0:
        return [-x for x in split(-total, weights)]
    whole = sum(weights)
    if whole <= 0:
        return [total] + [0] * (len(weights) - 1)
    shares = [total * w // whole for w in weights]
    rest = total - sum(shares)
    order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in order[:rest]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class Part:
    """The share of a session (or of a discount on it) at one VAT rate."""

    vat_bp: int | None
    net: int
    tax: int

    @property
    def gross(self) -> int:
        return self.net + self.tax


def _rate(value: object) -> int | None:
    if type(value) is int and 0 <= value <= MAX_VAT_BP:
        return value
    return None


def _int(value: object) -> int:
    return value if type(value) is int else 0


def session_parts(payload: str, excl: int, incl: int) -> list[Part]:
    """The signed totals of a record split by the VAT rates of its cost lines; the parts sum to
    (excl, incl - excl) exactly; the largest part first. One rate (the usual case): one part,
    net = excl and tax = incl - excl as signed."""
    try:
        lines = json.loads(payload)["cost"]["lines"]
    except (ValueError, KeyError, TypeError):
        lines = []
    nets: dict[int | None, int] = {}
    taxes: dict[int | None, int] = {}
    for line in lines if isinstance(lines, list) else []:
        if not isinstance(line, dict):
            continue
        rate = _rate(line.get("vat"))
        nets[rate] = nets.get(rate, 0) + max(0, _int(line.get("excl")))
        taxes[rate] = taxes.get(rate, 0) + max(0, _int(line.get("incl")) - _int(line.get("excl")))
    if len(nets) <= 1:
        return [Part(next(iter(nets), None), excl, incl - excl)]
    rates = sorted(nets, key=lambda r: (-nets[r], -1 if r is None else r))
    net_parts = split(excl, [nets[r] for r in rates])
    taxed = [r is not None and r > 0 for r in rates]
    weights = [taxes[r] if t else 0 for r, t in zip(rates, taxed)]
    if not any(weights):
        weights = [n if t else 0 for n, t in zip(net_parts, taxed)]
    if not any(weights):  # VAT signed, but no line names a rate: keep it on the largest part
        weights = [1] + [0] * (len(rates) - 1)
    tax_parts = split(incl - excl, weights)
    return [Part(r, n, t) for r, n, t in zip(rates, net_parts, tax_parts)]


def percent_off(parts: list[Part], bp: int) -> list[Part]:
    """A percentage discount on parts: per rate, net rounded half-up from the exact percentage and
    its VAT computed on that net (never more than the part holds). Negative parts."""
    out = []
    for p in parts:
        net = min(p.net, half_up(p.net * bp, 10_000))
        tax = min(p.tax, tax_of(net, p.vat_bp)) if p.tax >= 0 else 0
        out.append(Part(p.vat_bp, -net, -tax))
    return out


def fixed_off(parts: list[Part], amount: int) -> list[Part]:
    """A fixed net amount off, split over the rates in proportion to their net, at most their net."""
    total = sum(max(0, p.net) for p in parts)
    nets = split(min(amount, total), [max(0, p.net) for p in parts])
    return [Part(p.vat_bp, -n, -min(p.tax, tax_of(n, p.vat_bp)) if p.tax >= 0 else 0) for p, n in zip(parts, nets)]


def gross_off(parts: list[Part], gross: int) -> list[Part]:
    """A gross amount off (what a card was not charged), split over the rates in proportion to
    their gross, at most their gross; each share's net from the share (net_of_gross) and its VAT
    the rest, so the parts' gross falls by exactly that amount. Negative parts."""
    weights = [max(0, p.gross) for p in parts]
    out = []
    for p, g in zip(parts, split(min(gross, sum(weights)), weights)):
        n = net_of_gross(g, p.vat_bp)
        out.append(Part(p.vat_bp, -n, -(g - n)))
    return out


def by_rate(parts: list[Part]) -> dict[int | None, Part]:
    out: dict[int | None, Part] = {}
    for p in parts:
        q = out.get(p.vat_bp, Part(p.vat_bp, 0, 0))
        out[p.vat_bp] = Part(p.vat_bp, q.net + p.net, q.tax + p.tax)
    return out
