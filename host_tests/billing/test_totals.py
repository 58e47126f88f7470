"""A generated month: 2,000 real signed sessions over 50 customers with mixed contracts (cycles,
discounts, volume tiers, late fees, a version change) and ad-hoc cards. Every document's totals,
per VAT rate, equal the signed records' totals minus discounts plus fees, to the cent; the
discounts and fees are recomputed here independently of backend/billing."""
from __future__ import annotations

import random
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select

from backend.billing import registry
from backend.billing.issued import document_for
from backend.billing.runs import Runner
from backend.db import open_db
from backend.models import BilledSession, Invoice, Session
from host_tests.billing.conftest import DEC, SELLER, T0, Charger, Clock, cost_lines, fields, ingest, token
from host_tests.billing.test_runs import customer

N_CUSTOMERS = 50
N_SESSIONS = 2000
DEVICES = 4
OCT = T0 - 31 * 86400
DAY = 86400
# one rule per contract (the oracle below does not compound rules); None: no discount
RULES = [None, "percent:1000:invoice", "fixed:50:session", "percent:2000:session:above=40000",
         "fixed:700:invoice", "percent:500:invoice:above=100000"]
CYCLES = ["monthly", "weekly", "per_session"]


def half_up(x: Decimal) -> int:
    return int(x.to_integral_value(rounding=ROUND_HALF_UP))


def largest_remainder(amount: int, weights: list[int]) -> list[int]:
    """amount split in proportion to weights, whole units, the leftovers to the largest remainders."""
    total = sum(weights)
    shares = [amount * w // total for w in weights]
    order = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for i in order[:amount - sum(shares)]:
        shares[i] += 1
    return shares


def _session(rng: random.Random, dev: str, seq: int, tok: str, start: int, contract: str | None) -> tuple[dict, dict]:
    """Fields of one record and its parts per VAT rate {rate: (net, tax)} as generated."""
    wh = rng.randrange(500, 60_000)
    kind = rng.random()
    ee = wh * rng.choice((30, 35, 42)) // 100  # energy net in cents
    if kind < 0.7:  # 19 %
        incl = half_up(Decimal(ee) * Decimal("1.19"))
        return fields(dev, seq, tok, start, wh, ee, incl, 1900, contract), {1900: (ee, incl - ee)}
    if kind < 0.8:  # 7 %
        incl = half_up(Decimal(ee) * Decimal("1.07"))
        return fields(dev, seq, tok, start, wh, ee, incl, 700, contract), {700: (ee, incl - ee)}
    if kind < 0.9:  # no VAT applies
        return fields(dev, seq, tok, start, wh, ee, ee, None, contract), {None: (ee, 0)}
    # a FLAT fee at 19 % and energy without VAT: two rates in one record
    fe, fi = 150, 179
    lines = cost_lines(fe + ee, fi + ee, None, flat=(fe, fi, 1900))
    return fields(dev, seq, tok, start, wh, fe + ee, fi + ee, None, contract, lines=lines), {1900: (fe, fi - fe), None: (ee, 0)}


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    """The records (made once for both databases) and what each session was generated as."""
    rng = random.Random(20)
    root = tmp_path_factory.mktemp("month-keys")
    chargers = [Charger(f"evc-m{i}", root) for i in range(DEVICES)]
    batches: dict[str, list[dict]] = defaultdict(list)
    parts: dict[tuple[str, int], dict] = {}
    n_tokens = 2 * N_CUSTOMERS + 10  # two cards per customer, ten ad-hoc cards
    october = {token(2 * c) for c in range(0, N_CUSTOMERS, 5)}  # some customers also charged in October
    starts = [OCT + 20 * DAY + i * 3600 for i in range(len(october))] + \
        sorted(rng.randrange(T0, DEC - 3600) for _ in range(N_SESSIONS - len(october)))
    oct_tokens = sorted(october)
    for i, start in enumerate(starts):
        ch = chargers[i % DEVICES]
        seq = len(batches[ch.dev]) + 1
        tok = oct_tokens[i] if i < len(oct_tokens) else token(rng.randrange(n_tokens))
        c = int(tok, 16) - 0xB111_0000
        signed_contract = f"K{c // 2:02d}" if c < 2 * N_CUSTOMERS and c % 4 == 1 else None  # some records name it
        f, p = _session(rng, ch.dev, seq, tok, start, signed_contract)
        batches[ch.dev].append(f)
        parts[(ch.dev, seq)] = p
    for ch in chargers:
        ch.make(batches[ch.dev])
    return chargers, parts


def _setup(sessions, chargers: list[Charger]):
    registry.set_seller(sessions, **SELLER)
    for c in range(N_CUSTOMERS):
        cid, k = f"C{c:02d}", f"K{c:02d}"
        customer(sessions, cid, "company" if c % 2 else "driver")
        rule = RULES[c % len(RULES)]
        registry.add_contract(sessions, k, cid, cycle=CYCLES[c % len(CYCLES)], payment_days=14,
                              late_fee=250 if c % 5 == 0 else 0, tariff_id="std", valid_from=0, valid_to=None,
                              rules=[rule] if rule else [])
        registry.assign_card(sessions, token(2 * c), cid, k)
        registry.assign_card(sessions, token(2 * c + 1), cid, k)
    # one contract changes its terms mid-month: a new discount from Nov 16
    registry.set_contract(sessions, "K01", T0 + 15 * DAY, rules=["percent:3000:invoice"])
    for ch in chargers:
        ingest(sessions, ch, ch.records)


class Oracle:
    """Discounts recomputed from the contract terms (one rule each), straight from their definition."""

    def __init__(self, sessions):
        with sessions() as db:
            from backend.models import ContractVersion

            self.versions = defaultdict(list)
            for v in db.scalars(select(ContractVersion).order_by(ContractVersion.version)):
                self.versions[v.contract_id].append(v)

    def rule(self, contract: str, t: int):
        import json

        v = [v for v in self.versions[contract] if v.valid_from <= t][-1]
        rules = json.loads(v.discounts)
        return rules[0] if rules else None

    @staticmethod
    def off(rate, net, tax, rule) -> tuple[int, int]:
        if rule["type"] == "percent":
            d = min(net, half_up(Decimal(net) * rule["value"] / 10000))
        else:
            d = min(net, rule["value"])
        t = 0 if rate is None else min(tax, half_up(Decimal(d) * rate / 10000))
        return -d, -t


def test_month_totals_equal_signed_totals_minus_discounts_plus_fees(db_target, month, exhaustive):
    chargers, parts = month
    if db_target.startswith("postgresql") and not exhaustive:
        chargers = chargers[:1]  # a quarter of the month on PostgreSQL by default; all of it with --exhaustive
    n_sessions = sum(len(ch.records) for ch in chargers)
    sessions = open_db(db_target)
    _setup(sessions, chargers)
    oct_run = Runner(sessions, Clock(T0 + 3600)).run("2026-10")
    assert len(oct_run.issued) > 0
    res = Runner(sessions, Clock(DEC + 20 * DAY)).run("2026-11")  # October's invoices are overdue by then
    oracle = Oracle(sessions)
    grand_signed = 0
    grand_gross = 0
    with sessions() as db:
        starts = {(s.dev, s.seq): (s.start_t, s.energy_wh, s.cost_excl, s.cost_incl) for s in db.scalars(select(Session))}
        assert len(starts) == n_sessions
        billed = {(b.dev, b.seq): b.invoice for b in db.scalars(select(BilledSession))}
        assert len(billed) == n_sessions  # every session on exactly one document (primary key)
        overdue_fees = {i.number: 250 for i in db.scalars(select(Invoice).where(Invoice.billing_period == "2026-10"))
                        if i.contract_id and int(i.contract_id[1:]) % 5 == 0}
        charged_fees: dict[str, int] = {}
        for number in oct_run.issued + res.issued:
            doc = document_for(db, number)
            mine = sorted((k for k, n in billed.items() if n == number), key=lambda k: (starts[k][0], k))
            assert sorted((s.dev, s.seq) for s in doc.sessions) == sorted(mine)
            expect: dict = defaultdict(lambda: [0, 0])
            for k in mine:  # the signed totals, per rate, exactly as generated
                assert sum(n for n, _ in parts[k].values()) == starts[k][2]
                assert sum(n + t for n, t in parts[k].values()) == starts[k][3]
                grand_signed += starts[k][3]
                for rate, (n, t) in parts[k].items():
                    expect[rate][0] += n
                    expect[rate][1] += t
            got = defaultdict(lambda: [0, 0])
            for x in doc.lines:
                if x.kind == "session":
                    got[x.vat_bp][0] += x.net
                    got[x.vat_bp][1] += x.tax
            assert {r: tuple(v) for r, v in got.items()} == {r: tuple(v) for r, v in expect.items()}, number
            # discounts, per rate
            want_disc: dict = defaultdict(lambda: [0, 0])
            if doc.contract_ref:
                used = 0
                after_session: dict = defaultdict(lambda: [0, 0])
                for k in mine:
                    rule = oracle.rule(doc.contract_ref, starts[k][0])
                    applies = rule and rule["per"] == "session" and used >= rule["above_wh"]
                    fixed = {}
                    if applies and rule["type"] == "fixed":  # split over the rates by net
                        rates = sorted(parts[k], key=lambda r: (-parts[k][r][0], -1 if r is None else r))
                        nets = [parts[k][r][0] for r in rates]
                        fixed = dict(zip(rates, largest_remainder(min(rule["value"], sum(nets)), nets)))
                    for rate, (n, t) in parts[k].items():
                        dn = dt_ = 0
                        if applies and rule["type"] == "fixed":
                            dn = -fixed[rate]
                            dt_ = 0 if rate is None else -min(t, half_up(Decimal(fixed[rate]) * rate / 10000))
                        elif applies:
                            dn, dt_ = oracle.off(rate, n, t, rule)
                        want_disc[rate][0] += dn
                        want_disc[rate][1] += dt_
                        after_session[rate][0] += n + dn
                        after_session[rate][1] += t + dt_
                    used += starts[k][1]
                inv_rule = oracle.rule(doc.contract_ref, starts[mine[-1]][0]) if mine else None
                if inv_rule and inv_rule["per"] == "invoice" and used >= inv_rule["above_wh"]:
                    if inv_rule["type"] == "percent":
                        for rate, (n, t) in after_session.items():
                            dn, dt_ = oracle.off(rate, n, t, inv_rule)
                            want_disc[rate][0] += dn
                            want_disc[rate][1] += dt_
                    else:  # fixed net, split over the rates by net, largest remainder
                        rates = sorted(after_session, key=lambda r: -1 if r is None else r)
                        nets = [after_session[r][0] for r in rates]
                        shares = largest_remainder(min(inv_rule["value"], sum(nets)), nets)
                        for r, d in zip(rates, shares):
                            want_disc[r][0] -= d
                            want_disc[r][1] -= 0 if r is None else min(after_session[r][1], half_up(Decimal(d) * r / 10000))
            got_disc: dict = defaultdict(lambda: [0, 0])
            for x in doc.lines:
                if x.kind == "discount":
                    got_disc[x.vat_bp][0] += x.net
                    got_disc[x.vat_bp][1] += x.tax
            assert {r: tuple(v) for r, v in got_disc.items() if v != [0, 0]} == \
                {r: tuple(v) for r, v in want_disc.items() if v != [0, 0]}, number
            fees = [x for x in doc.lines if x.kind == "fee"]
            for f in fees:
                assert (f.vat_bp, f.tax) == (None, 0)
                charged_fees[f.description.split(":")[1].split(",")[0].strip()] = f.net
            disc_total = sum(v[0] + v[1] for v in got_disc.values())
            # the document total: signed totals - discounts + fees, exactly
            assert doc.total_gross == sum(starts[k][3] for k in mine) + disc_total + sum(f.net for f in fees)
            for vt in doc.vat_totals:
                assert vt.base == expect.get(vt.vat_bp, [0, 0])[0] + got_disc.get(vt.vat_bp, [0, 0])[0] + \
                    sum(f.net for f in fees if f.vat_bp == vt.vat_bp)
            grand_gross += doc.total_gross
        assert charged_fees == overdue_fees and overdue_fees  # each overdue October invoice: one late fee
        kinds = {d.kind for d in db.scalars(select(Invoice))}
        assert kinds == {"invoice", "receipt"}
    assert grand_signed == sum(v[3] for v in starts.values())
    assert Runner(sessions, Clock(DEC + 21 * DAY)).run("2026-11").issued == []  # idempotent
