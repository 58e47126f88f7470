"""backend/billing/amounts.py: the exact integer splits documents are built from."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from backend.billing.amounts import Part, gross_off, net_of_gross, tax_of

_rate = st.sampled_from([None, 0, 700, 1900, 2000, 2100])
_part = st.builds(lambda r, net: Part(r, net, tax_of(net, r)), _rate, st.integers(0, 10**7))


@settings(max_examples=300, deadline=None)
@given(st.lists(_part, min_size=1, max_size=4), st.integers(0, 2 * 10**7))
def test_gross_off_takes_exactly_the_amount_never_more_than_there_is(parts, gross):
    off = gross_off(parts, gross)
    have = sum(p.gross for p in parts)
    assert -sum(d.gross for d in off) == min(gross, have)  # to the minor unit
    for p, d in zip(parts, off):
        assert d.vat_bp == p.vat_bp and 0 <= -d.gross <= p.gross
        assert -d.net == net_of_gross(-d.gross, p.vat_bp)  # each share's net and VAT from the share itself


def test_gross_off_on_a_receipt_above_the_card_hold():
    # 20.77 EUR signed at 19 %, the card held and was charged 20.00: 0.77 off, 0.65 net + 0.12 VAT
    (d,) = gross_off([Part(1900, 1745, 332)], 77)
    assert (d.net, d.tax) == (-65, -12)
