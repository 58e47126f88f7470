# The device tariff document: validation and the in-memory tariff the pricer reads.
#
# The backend compiles OCPI 2.2.1 tariffs (evc/tariff.py) into this compact, exact form; the
# device never sees a JSON number with a fraction. docs/pricing.md describes every field:
#
# {"v": 1, "ver": 7, "tz": "CET-1CEST,M3.5.0,M10.5.0/3", "default": "std",
#  "contracts": {"<contract id>": "<tariff key>"},
#  "tariffs": {"std": {"id": "14", "currency": "EUR", "minor": 2,
#                      "valid": [from_epoch|null, to_epoch|null],
#                      "min": [excl_u, incl_u] | null, "max": [excl_u, incl_u] | null,
#                      "elements": [{"c": [[dim, price_u, vat_bp|null, step], ...],
#                                    "r": {"time": [min, min], "date": [yyyymmdd, yyyymmdd],
#                                          "wh": [lo, hi], "ma": [lo, hi], "w": [lo, hi],
#                                          "s": [lo, hi], "dow": bitmask Monday=1}}]}}}
#
# Money: price_u in millionths of the major unit (per kWh, per hour, per session); vat_bp in
# hundredths of a percent, null = no VAT applies. Lower bounds inclusive, upper exclusive.
try:
    from micropython import const
except ImportError:  # CPython: tools/flash.py checks a config's fallback_tariff with this module
    def const(x):
        return x

from billing.tz import TzRule, TzError

ENERGY = 0
TIME = 1
PARKING_TIME = 2
FLAT = 3
DIMS = ("ENERGY", "TIME", "PARKING_TIME", "FLAT")

_MAX_ELEMENTS = const(64)
_MAX_TARIFFS = const(16)
_MAX_CONTRACTS = const(256)
_MAX_PRICE_U = 10 ** 12
_MAX_STEP = const(10000000)
_MAX_QTY = 10 ** 12
# (document key, tuple slot of lo, upper limit of a value)
_BANDS = (("wh", 4, _MAX_QTY), ("ma", 6, _MAX_QTY), ("w", 8, _MAX_QTY), ("s", 10, _MAX_QTY))
_RESTRICTION_KEYS = ("time", "date", "wh", "ma", "w", "s", "dow")


class TariffError(ValueError):
    pass


def _int(v, where, lo=0, hi=_MAX_QTY):
    # bool is an int subclass; a true/false where a number belongs is a malformed document.
    if type(v) is not int or not lo <= v <= hi:
        raise TariffError("%s: integer %d..%d expected, got %r" % (where, lo, hi, v))
    return v


def _opt_int(v, where, lo, hi):
    return None if v is None else _int(v, where, lo, hi)


def _pair(v, where):
    if not isinstance(v, list) or len(v) != 2:
        raise TariffError("%s: [lo, hi] expected" % where)
    return v


def _ymd(v, where):
    _int(v, where, 19700101, 99991231)
    y, md = divmod(v, 10000)
    m, d = divmod(md, 100)
    if not (1 <= m <= 12 and 1 <= d <= 31):
        raise TariffError("%s: not a date yyyymmdd: %r" % (where, v))
    return v


def _restriction(r, where):
    # -> (t0, t1, d0, d1, wh0, wh1, ma0, ma1, w0, w1, s0, s1, dow, timed); None = open
    if not isinstance(r, dict):
        raise TariffError("%s: object expected" % where)
    for k in r:
        if k not in _RESTRICTION_KEYS:
            raise TariffError("%s: unknown restriction %r" % (where, k))
    out = [None] * 13
    if "time" in r:
        t0, t1 = _pair(r["time"], where + ".time")
        out[0] = _opt_int(t0, where + ".time[0]", 0, 1439)
        out[1] = _opt_int(t1, where + ".time[1]", 1, 1440)  # 1440: "00:00" as end of day
        if t0 is None and t1 is None:
            raise TariffError("%s.time: both ends open" % where)
        if t0 is not None and t0 == t1:
            raise TariffError("%s.time: start equals end" % where)
    if "date" in r:
        d0, d1 = _pair(r["date"], where + ".date")
        out[2] = None if d0 is None else _ymd(d0, where + ".date[0]")
        out[3] = None if d1 is None else _ymd(d1, where + ".date[1]")
        if d0 is None and d1 is None or (d0 is not None and d1 is not None and d0 >= d1):
            raise TariffError("%s.date: empty range" % where)
    for key, slot, hi in _BANDS:
        if key in r:
            lo_v, hi_v = _pair(r[key], where + "." + key)
            out[slot] = _opt_int(lo_v, where + "." + key, 0, hi)
            out[slot + 1] = _opt_int(hi_v, where + "." + key, 1, hi)
            if lo_v is None and hi_v is None or (lo_v is not None and hi_v is not None and lo_v >= hi_v):
                raise TariffError("%s.%s: empty range" % (where, key))
    if "dow" in r:
        out[12] = _int(r["dow"], where + ".dow", 1, 127)
    timed = out[0] is not None or out[1] is not None or out[2] is not None or out[3] is not None
    out.append(timed or out[12] is not None)
    return tuple(out)


def _bound(v, where):
    if v is None:
        return None
    excl, incl = _pair(v, where)
    return _int(excl, where + "[0]", 0, _MAX_PRICE_U), _int(incl, where + "[1]", 0, _MAX_PRICE_U)


class Tariff:
    """One validated tariff: elements in order, each a restriction and components per dimension."""

    @classmethod
    def from_doc(cls, d, where="tariff"):
        if not isinstance(d, dict):
            raise TariffError("%s: object expected" % where)
        t = cls()
        t.id = d.get("id")
        if not isinstance(t.id, str) or not 0 < len(t.id) <= 36:
            raise TariffError("%s.id: string of 1..36 characters expected" % where)
        cur = d.get("currency")
        if not isinstance(cur, str) or len(cur) != 3 or not cur.isalpha() or not cur.isupper():
            raise TariffError("%s.currency: ISO 4217 code expected" % where)
        t.currency = cur
        t.minor = _int(d.get("minor", 2), where + ".minor", 0, 4)
        valid = _pair(d.get("valid", [None, None]), where + ".valid")
        t.valid_from = _opt_int(valid[0], where + ".valid[0]", 0, 1 << 40)
        t.valid_to = _opt_int(valid[1], where + ".valid[1]", 0, 1 << 40)
        t.min = _bound(d.get("min"), where + ".min")
        t.max = _bound(d.get("max"), where + ".max")
        if t.min and t.max and (t.min[0] > t.max[0] or t.min[1] > t.max[1]):
            raise TariffError("%s: min price above max price" % where)
        els = d.get("elements")
        if not isinstance(els, list) or not 0 < len(els) <= _MAX_ELEMENTS:
            raise TariffError("%s.elements: list of 1..%d expected" % (where, _MAX_ELEMENTS))
        # candidates per dimension, in element order: (element index, restriction, price_u, vat_bp|None, step)
        cands = ([], [], [], [])
        restrictions = []
        for i, e in enumerate(els):
            w = "%s.elements[%d]" % (where, i)
            if not isinstance(e, dict) or "c" not in e:
                raise TariffError("%s: object with 'c' expected" % w)
            for k in e:
                if k not in ("c", "r"):
                    raise TariffError("%s: unknown key %r" % (w, k))
            r = _restriction(e.get("r", {}), w + ".r")
            restrictions.append(r)
            comps = e["c"]
            if not isinstance(comps, list) or not 0 < len(comps) <= 4:
                raise TariffError("%s.c: list of 1..4 components expected" % w)
            seen = 0
            for j, c in enumerate(comps):
                cw = "%s.c[%d]" % (w, j)
                if not isinstance(c, list) or len(c) != 4 or c[0] not in DIMS:
                    raise TariffError("%s: [dimension, price_u, vat_bp|null, step] expected" % cw)
                dim = DIMS.index(c[0])
                if seen & (1 << dim):
                    raise TariffError("%s: dimension %s twice in one element" % (cw, c[0]))
                seen |= 1 << dim
                price = _int(c[1], cw + " price", 0, _MAX_PRICE_U)
                vat = _opt_int(c[2], cw + " vat", 0, 10000)
                step = _int(c[3], cw + " step", 1, _MAX_STEP)
                cands[dim].append((i, r, price, vat, step))
        t.cands = tuple(tuple(c) for c in cands)
        t.restrictions = restrictions
        t.timed = any(r[13] for r in restrictions)
        # Where a restriction can change its verdict: the pricer splits periods there.
        sod = set()
        for r in restrictions:
            for v in (r[0], r[1]):
                if v is not None:
                    sod.add(v * 60 % 86400)
        if t.timed:
            sod.add(0)  # midnight: date and day_of_week change
        t.sod_bounds = sorted(sod)
        t.wh_bounds = _bounds(restrictions, 4)
        t.ma_bounds = _bounds(restrictions, 6)
        t.w_bounds = _bounds(restrictions, 8)
        t.s_bounds = _bounds(restrictions, 10)
        return t

    def valid_at(self, t):
        return (self.valid_from is None or t >= self.valid_from) and (self.valid_to is None or t < self.valid_to)

    def choose(self, dim, ymd, sod, dow, wh, dur, w_lo, w_hi, ma_lo, ma_hi, timed_ok):
        """The first candidate component of `dim` whose restrictions all hold, or None (free)."""
        for c in self.cands[dim]:
            if _matches(c[1], ymd, sod, dow, wh, dur, w_lo, w_hi, ma_lo, ma_hi, timed_ok):
                return c
        return None


def _bounds(restrictions, slot):
    s = set()
    for r in restrictions:
        for v in (r[slot], r[slot + 1]):
            if v is not None:
                s.add(v)
    return sorted(s)


def _matches(r, ymd, sod, dow, wh, dur, w_lo, w_hi, ma_lo, ma_hi, timed_ok):
    if r[13]:
        if not timed_ok:
            return False  # time unknown: time/date/weekday restrictions cannot be judged
        t0, t1 = r[0], r[1]
        if t0 is not None or t1 is not None:
            a = 0 if t0 is None else t0 * 60
            b = 86400 if t1 is None else t1 * 60
            if a < b:
                if not a <= sod < b:
                    return False
            elif not (sod >= a or sod < b):  # wraps past midnight
                return False
        if r[2] is not None and ymd < r[2] or r[3] is not None and ymd >= r[3]:
            return False
        if r[12] is not None and not (r[12] >> dow) & 1:
            return False
    if r[4] is not None and wh < r[4] or r[5] is not None and wh >= r[5]:
        return False
    if r[10] is not None and dur < r[10] or r[11] is not None and dur >= r[11]:
        return False
    # Power and current: min_* judged on the period's lowest value, max_* on its highest; an
    # unknown value (None) never satisfies a restriction on it.
    if r[8] is not None and (w_lo is None or w_lo < r[8]) or r[9] is not None and (w_hi is None or w_hi >= r[9]):
        return False
    if r[6] is not None and (ma_lo is None or ma_lo < r[6]) or r[7] is not None and (ma_hi is None or ma_hi >= r[7]):
        return False
    return True


class TariffSet:
    """A device tariff document: several tariffs, one default, a tariff per contract."""

    @classmethod
    def from_doc(cls, doc):
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise TariffError("tariff document: object with v=1 expected")
        s = cls()
        s.ver = _int(doc.get("ver"), "ver", 0, 1 << 40)
        try:
            s.tz = TzRule(doc.get("tz"))
        except TzError as e:
            raise TariffError("tz: %s" % e)
        tariffs = doc.get("tariffs")
        if not isinstance(tariffs, dict) or not 0 < len(tariffs) <= _MAX_TARIFFS:
            raise TariffError("tariffs: object with 1..%d tariffs expected" % _MAX_TARIFFS)
        s.tariffs = {}
        for key, d in tariffs.items():
            if not isinstance(key, str) or not 0 < len(key) <= 36:
                raise TariffError("tariffs: key %r is not a string of 1..36 characters" % (key,))
            s.tariffs[key] = Tariff.from_doc(d, "tariffs.%s" % key)
        s.default = doc.get("default")
        if s.default not in s.tariffs:
            raise TariffError("default: %r names no tariff" % (s.default,))
        contracts = doc.get("contracts", {})
        if not isinstance(contracts, dict) or len(contracts) > _MAX_CONTRACTS:
            raise TariffError("contracts: object of at most %d entries expected" % _MAX_CONTRACTS)
        for cid, key in contracts.items():
            if not isinstance(cid, str) or not 0 < len(cid) <= 64 or key not in s.tariffs:
                raise TariffError("contracts: %r -> %r names no tariff" % (cid, key))
        s.contracts = contracts
        return s

    def select(self, contract=None):
        """The tariff for a card's contract (from the authorization list); others get the default."""
        return self.tariffs[self.contracts.get(contract, self.default) if contract else self.default]
