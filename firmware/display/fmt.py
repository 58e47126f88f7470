# Numbers as the screens show them: integers in, text out (no floats anywhere).


def amount(units, minor):
    """Minor units as major.minor text: 1234, 2 -> "12.34"."""
    sign = "-" if units < 0 else ""
    units = abs(units)
    if not minor:
        return sign + str(units)
    scale = 10 ** minor
    return "%s%d.%0*d" % (sign, units // scale, minor, units % scale)


def unit_price(price_u, vat_bp, minor):
    """A tariff price (millionths of the major unit, excl. VAT; vat_bp in 1/100 %) as the driver
    pays it, VAT included: `minor` decimals, up to 4 when the price has more (0.345, not 0.35)."""
    incl = price_u * (10000 + (vat_bp or 0))  # 1e-10 of the major unit
    q = (incl + 500000) // 1000000  # 1e-4, half up
    whole, frac = divmod(q, 10000)
    digits = "%04d" % frac
    keep = 4
    while keep > minor and digits[keep - 1] == "0":
        keep -= 1
    return "%d.%s" % (whole, digits[:keep]) if keep else str(whole)


def kwh(wh):
    return "%d.%03d" % (wh // 1000, wh % 1000)


def duration(s):
    return "%d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60)
