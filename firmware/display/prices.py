# The default tariff's price components as the idle screen shows them (AFIR: the ad-hoc price
# before charging starts): per kWh, per hour, per session and parking per hour.
from billing.tariff import ENERGY, FLAT, PARKING_TIME, TIME

ORDER = (ENERGY, TIME, FLAT, PARKING_TIME)


def components(tset, epoch, timed_ok):
    """[(dimension, price_u, vat_bp)] of the default tariff at `epoch`: per dimension the first
    component whose restrictions hold for a session starting now (no energy, no time, power
    unknown), else the dimension's first component; dimensions without any are left out."""
    tariff = tset.tariffs[tset.default]
    ymd, sod, dow = tset.tz.local(epoch)
    out = []
    for dim in ORDER:
        cands = tariff.cands[dim]
        if not cands:
            continue
        c = tariff.choose(dim, ymd, sod, dow, 0, 0, None, None, None, None, timed_ok) or cands[0]
        out.append((dim, c[2], c[3]))
    return out
