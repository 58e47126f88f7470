# The pricing engine: OCPI 2.2.1 semantics (with errata), exact integer money.
#
# Quantities are carried in thousandths, mWh and ms: the meter gives whole Wh and seconds, but a
# CDR may carry fractions of them, and step_size applies to the exact session total. Prices are
# integers in millionths of the major unit. Money is summed exactly in 1/_DEN of the major unit
# (the least common multiple of "per kWh by mWh" and "per hour by ms"), VAT-inclusive sums
# additionally in 1/10000, and rounded once, half-up to minor units, when a cost is reported.
# docs/pricing.md explains the rules and the OCPI sentences they follow.
#
# Memory is bounded: quantities are aggregated per (dimension, element), never per sample.
from micropython import const

from billing.tariff import ENERGY, TIME, PARKING_TIME, FLAT, DIMS
from billing.tz import rule as tz_rule

_M = const(1000)  # Wh -> mWh, s -> ms
# Exact money unit: 1/_DEN of the major unit. price_u * quantity * _FACTOR[dim] is in that unit:
# ENERGY price per kWh x mWh (1e12), TIME/PARKING per hour x ms (3.6e12), FLAT per session (1e6).
_DEN = 18000000000000
_FACTOR = (18, 5, 5, 18000000)
_VAT_ONE = const(10000)  # VAT in hundredths of a percent
_UNITS = (("Wh", "s", "s", "session"), ("mWh", "ms", "ms", "session"))
_QUALITIES = ("S", "I", "U")


def half_up(num, den, minor):
    """num/den major units, rounded half-up to minor units (num >= 0)."""
    return (2 * num * 10 ** minor + den) // (2 * den)


def _check_int(v, what, lo=0):
    if type(v) is not int or v < lo:
        raise ValueError("%s must be an integer >= %d, got %r" % (what, lo, v))
    return v


class _Ledger:
    """Exact running sums and the per (dimension, element) aggregate behind the breakdown.

    Quantities in mWh / ms; `out` is what a reported quantity is divided by (_M: Wh and s)."""

    def __init__(self, tariff, out=_M):
        self.tariff = tariff
        n = len(tariff.restrictions)
        self.n = n
        self.out = out
        self.qty = [0] * (3 * n)
        self.since = [0] * (3 * n)
        self.until = [0] * (3 * n)
        self.comp = [None] * (3 * n)
        self.excl = 0
        self.incl = 0
        self.priced = [0, 0, 0]  # priced mWh / ms per dimension (the totals step_size rounds)
        self.last = [None, None, None]  # component of the last period that priced each dimension
        self.flat = None
        self.flat_t = 0
        self.started = False  # a period has been judged: from then on the FLAT is settled or pending
        self.volume = [0, 0, 0]  # all measured mWh / ms, priced or free

    def add(self, dim, c, qty, t0, t1):
        self.volume[dim] += qty
        if c is None or qty <= 0:
            return  # no element matched (this dimension is free here), or nothing to price
        k = dim * self.n + c[0]
        if not self.qty[k]:
            self.since[k] = t0
            self.comp[k] = c
        self.qty[k] += qty
        self.until[k] = t1
        v = c[2] * qty * _FACTOR[dim]
        self.excl += v
        self.incl += v * (_VAT_ONE + (c[3] or 0))
        self.priced[dim] += qty
        self.last[dim] = c

    def period_flat(self, c, t):
        # A FLAT fee is charged once, in the first period where an element with a FLAT component
        # is active (restrictions say when an element is active during the session).
        self.started = True
        if self.flat is None and c is not None:
            self.flat = c
            self.flat_t = t

    def _steps(self):
        # step_size, once per session (OCPI 2.2.1 errata): ENERGY total to the step of the last
        # priced energy component; TIME and PARKING_TIME once together: the parking total when any
        # parking was priced ("only taken into account for the total parking duration"), else the
        # charging total, to the step of that dimension's last priced component. The extra volume
        # is billed at that component's price and VAT.
        out = []
        for dim in (ENERGY, PARKING_TIME if self.last[PARKING_TIME] is not None else TIME):
            c = self.last[dim]
            if c is not None:
                extra = -self.priced[dim] % (c[4] * _M)
                if extra:
                    out.append((dim, c, extra))
        return out

    def totals(self, flat0=None):
        """(excl, incl, bound, steps, flat): exact sums (1/_DEN, 1/(_DEN*10000)) after steps, flat,
        min/max. flat0 stands in for the FLAT while no period has been judged."""
        excl, incl = self.excl, self.incl
        steps = self._steps()
        for dim, c, extra in steps:
            v = c[2] * extra * _FACTOR[dim]
            excl += v
            incl += v * (_VAT_ONE + (c[3] or 0))
        flat = self.flat if self.started else flat0
        if flat is not None:
            v = flat[2] * _FACTOR[FLAT]
            excl += v
            incl += v * (_VAT_ONE + (flat[3] or 0))
        bound = None
        t = self.tariff
        # min_price / max_price bound the excl and the incl total separately.
        if t.min is not None:
            lo_e, lo_i = t.min[0] * _FACTOR[FLAT], t.min[1] * _FACTOR[FLAT] * _VAT_ONE
            if excl < lo_e or incl < lo_i:
                bound = "min"
            excl, incl = max(excl, lo_e), max(incl, lo_i)
        if t.max is not None:
            hi_e, hi_i = t.max[0] * _FACTOR[FLAT], t.max[1] * _FACTOR[FLAT] * _VAT_ONE
            if excl > hi_e or incl > hi_i:
                bound = "max"
            excl, incl = min(excl, hi_e), min(incl, hi_i)
        return excl, incl, bound, steps, flat

    def cost(self, flat0=None):
        excl, incl, _, _, _ = self.totals(flat0)
        m = self.tariff.minor
        return half_up(excl, _DEN, m), half_up(incl, _DEN * _VAT_ONE, m)

    def result(self, flags):
        excl, incl, bound, steps, flat = self.totals()
        m = self.tariff.minor
        d = self.out
        lines = []
        if flat is not None:
            lines.append(self._line(FLAT, flat, 1, 1, self.flat_t, self.flat_t))
        for dim in (ENERGY, TIME, PARKING_TIME):
            for e in range(self.n):
                k = dim * self.n + e
                q = self.qty[k]
                if not q:
                    continue
                c = self.comp[k]
                billed = q
                for sd, sc, extra in steps:
                    if sd == dim and sc is c:
                        billed += extra
                lines.append(self._line(dim, c, q, billed, self.since[k], self.until[k]))
        v = self.volume
        out = {
            "currency": self.tariff.currency,
            "excl": half_up(excl, _DEN, m),
            "incl": half_up(incl, _DEN * _VAT_ONE, m),
            "lines": lines,
            "flags": flags,
            "tariff": self.tariff.id,
        }
        if d == _M:
            out["energy_wh"], out["time_s"], out["parking_s"] = v[0] // d, v[1] // d, v[2] // d
        else:
            out["energy_mwh"], out["time_ms"], out["parking_ms"] = v[0], v[1], v[2]
        if bound:
            out["bound"] = bound
        return out

    def _line(self, dim, c, qty, billed, t0, t1):
        m = self.tariff.minor
        d = 1 if dim == FLAT else self.out
        v = c[2] * billed * _FACTOR[dim]
        return {
            "dim": DIMS[dim], "el": c[0], "qty": qty // d, "billed": billed // d,
            "unit": _UNITS[1 if self.out == 1 else 0][dim], "price": c[2], "vat": c[3], "from": t0, "to": t1,
            "excl": half_up(v, _DEN, m), "incl": half_up(v * (_VAT_ONE + (c[3] or 0)), _DEN * _VAT_ONE, m),
        }


def _band(bounds, v):
    # [lo, hi) between consecutive restriction bounds that contains v; (None, None) if v unknown.
    if v is None:
        return None, None
    lo, hi = -1, None
    for b in bounds:
        if b <= v:
            lo = b
        else:
            hi = b
            break
    return lo, hi


def _in_band(band, v):
    lo, hi = band
    if v is None or lo is None:
        return v is None and lo is None
    return lo <= v and (hi is None or v < hi)


class Pricer:
    """Live pricing of one session from meter samples.

    Each add_sample() closes the interval since the previous sample (or the session start);
    its power and current describe that interval. Intervals with power above parking_w are
    charging (TIME), the others PARKING_TIME; energy counts as ENERGY in both. Intervals are
    split wherever a restriction can change its verdict; energy inside an interval is taken as
    linear in time. Each piece is a charging period: every dimension, FLAT included, is judged
    at its start.
    """

    def __init__(self, tariff, tz, start_epoch, start_wh, time_quality="S", parking_w=0):
        self.tariff = tariff
        self.tz = tz_rule(tz)
        if time_quality not in _QUALITIES:
            raise ValueError("time quality must be S, I or U, got %r" % (time_quality,))
        self.start = _check_int(start_epoch, "start_epoch")
        self.start_wh = _check_int(start_wh, "start_wh")
        self.parking_w = _check_int(parking_w, "parking_w")
        self.timed_ok = time_quality != "U"
        self.flags = [] if self.timed_ok else ["time-unsynced"]
        if self.timed_ok and not tariff.valid_at(start_epoch):
            self.flags.append("tariff-not-valid")
        self.t = start_epoch
        self.wh = start_wh
        self.power_w = None
        self.current_ma = None
        self.done = False
        self.ledger = _Ledger(tariff)
        self._sel = None
        # The FLAT of a session stopped before any metered interval: one zero-length period at
        # the start, power and current unknown (what a CDR with one empty period gets).
        self._flat0 = self._choose_at(FLAT, start_epoch, 0, None, None)

    # -- selection -------------------------------------------------------------------------

    def _local(self, t):
        if self.timed_ok and self.tariff.timed:
            return self.tz.local(t)
        return 0, 0, 0

    def _choose_at(self, dim, t, wh, p, ma):
        ymd, sod, dow = self._local(t)
        return self.tariff.choose(dim, ymd, sod, dow, wh, t - self.start, p, p, ma, ma, self.timed_ok)

    def _select(self, t, wh, p, ma):
        # Components for ENERGY, TIME, PARKING_TIME (and FLAT while none is charged) at (t, wh),
        # cached until a restriction bound.
        s = self._sel
        if s is not None and t < s[3] and wh < s[4] and _in_band(s[5], p) and _in_band(s[6], ma):
            return s
        tf = self.tariff
        e = wh - self.start_wh
        dur = t - self.start
        ymd, sod, dow = self._local(t)
        ok = self.timed_ok
        ce = tf.choose(ENERGY, ymd, sod, dow, e, dur, p, p, ma, ma, ok)
        ct = tf.choose(TIME, ymd, sod, dow, e, dur, p, p, ma, ma, ok)
        cp = tf.choose(PARKING_TIME, ymd, sod, dow, e, dur, p, p, ma, ma, ok)
        cf = tf.choose(FLAT, ymd, sod, dow, e, dur, p, p, ma, ma, ok) if self.ledger.flat is None else None
        t_lim = 1 << 62
        if ok and tf.timed:
            nb = 86400
            for b in tf.sod_bounds:
                if b > sod:
                    nb = b
                    break
            t_lim = t + nb - sod
            ch = self.tz.next_change(t)
            if ch is not None and ch < t_lim:
                t_lim = ch
        for b in tf.s_bounds:
            if b > dur:
                t_lim = min(t_lim, self.start + b)
                break
        wh_lim = 1 << 62
        for b in tf.wh_bounds:
            if b > e:
                wh_lim = self.start_wh + b
                break
        s = (ce, ct, cp, t_lim, wh_lim, _band(tf.w_bounds, p), _band(tf.ma_bounds, ma), cf)
        self._sel = s
        return s

    # -- samples ---------------------------------------------------------------------------

    def add_sample(self, epoch_s, energy_wh, power_w, current_ma=None):
        """A meter reading: UTC epoch s, register Wh, power W, optional current mA."""
        if self.done:
            raise ValueError("session already finished")
        _check_int(epoch_s, "epoch_s")
        _check_int(energy_wh, "energy_wh")
        if type(power_w) is not int:
            raise ValueError("power_w must be an integer, got %r" % (power_w,))
        if current_ma is not None and type(current_ma) is not int:
            raise ValueError("current_ma must be an integer or None, got %r" % (current_ma,))
        if epoch_s < self.t:
            raise ValueError("sample time %d before previous %d" % (epoch_s, self.t))
        if energy_wh < self.wh:
            raise ValueError("meter register went back: %d Wh < %d Wh" % (energy_wh, self.wh))
        # Export or meter noise reads as a small negative value: the EV is not drawing power.
        power_w = max(power_w, 0)
        if current_ma is not None:
            current_ma = max(current_ma, 0)
        self._interval(epoch_s, energy_wh, power_w, current_ma)
        self.power_w = power_w
        self.current_ma = current_ma

    def _interval(self, t_b, wh_b, p, ma):
        t_a, wh_a = self.t, self.wh
        span_t = t_b - t_a
        span_wh = wh_b - wh_a
        tdim = TIME if p > self.parking_w else PARKING_TIME
        led = self.ledger
        t, wh = t_a, wh_a
        while t < t_b or wh < wh_b:
            s = self._select(t, wh, p, ma)
            t_end = t_b if s[3] >= t_b else s[3]
            wh_end = wh_a + span_wh * (t_end - t_a) // span_t if span_t else wh_b
            if wh_end > s[4]:
                # the energy bound is crossed first: end this piece exactly there
                wh_end = s[4]
                t_end = t_a - (-(wh_end - wh_a) * span_t // span_wh)
            led.period_flat(s[7], t)
            led.add(ENERGY, s[0], (wh_end - wh) * _M, t, t_end)
            led.add(tdim, s[tdim], (t_end - t) * _M, t, t_end)
            t, wh = t_end, wh_end
        self.t, self.wh = t_b, wh_b

    def running_cost(self):
        """(excl, incl) in minor units if the session stopped at the last sample."""
        return self.ledger.cost(self._flat0)

    def finish(self, stop_epoch, stop_wh, power_w=None, current_ma=None):
        """Close the session at the stop reading; returns the cost breakdown."""
        if power_w is None:
            power_w = self.power_w
            if power_w is None:
                power_w = self.parking_w + 1 if type(stop_wh) is int and stop_wh > self.wh else 0
            if current_ma is None:
                current_ma = self.current_ma
        self.add_sample(stop_epoch, stop_wh, power_w, current_ma)
        self.done = True
        led = self.ledger
        if not led.started:  # no metered interval at all: one empty period at the start
            led.period_flat(self._flat0, self.start)
        return led.result(self.flags)


def price_periods(tariff, tz, start_epoch, periods, time_quality="S", milli=False):
    """Price CDR-style charging periods directly (tools/price.py, backend re-pricing).

    periods: [[start_epoch, energy, time, parking, w_lo, w_hi, ma_lo, ma_hi], ...] in order, energy
    in Wh and time in s, or with milli=True in mWh and ms (a CDR's volumes to the mWh / ms: step_size
    applies to their exact sum, so they must not be rounded per period). Restrictions are judged at
    each period's start with the energy of the earlier periods. With milli=True the result reports
    energy_mwh / time_ms / parking_ms and lines in mWh and ms.
    """
    pr = Pricer(tariff, tz, start_epoch, 0, time_quality)
    m = 1 if milli else _M
    led = pr.ledger = _Ledger(tariff, 1 if milli else _M)
    energy = 0  # mWh of the earlier periods
    prev = start_epoch
    for i, p in enumerate(periods):
        if not isinstance(p, list) or len(p) != 8:
            raise ValueError("period %d: [start, energy, time, parking, w_lo, w_hi, ma_lo, ma_hi] expected" % i)
        t = _check_int(p[0], "period %d start" % i)
        if t < prev:
            raise ValueError("period %d starts before the previous one" % i)
        e = _check_int(p[1], "period %d energy" % i) * m
        ts = _check_int(p[2], "period %d time" % i) * m
        ps = _check_int(p[3], "period %d parking" % i) * m
        for j in range(4, 8):
            if p[j] is not None:
                _check_int(p[j], "period %d power/current" % i)
        ymd, sod, dow = pr._local(t)
        # kWh restrictions are whole Wh: floor(mWh / 1000) >= lo and < hi exactly when mWh is.
        args = (ymd, sod, dow, energy // _M, t - start_epoch, p[4], p[5], p[6], p[7], pr.timed_ok)
        t_end = t + (ts + ps) // _M
        led.period_flat(tariff.choose(FLAT, *args) if led.flat is None else None, t)
        led.add(ENERGY, tariff.choose(ENERGY, *args), e, t, t_end)
        led.add(TIME, tariff.choose(TIME, *args), ts, t, t_end)
        led.add(PARKING_TIME, tariff.choose(PARKING_TIME, *args), ps, t, t_end)
        energy += e
        prev = t
    pr.done = True
    if not led.started:
        led.period_flat(pr._flat0, start_epoch)
    return led.result(pr.flags)
