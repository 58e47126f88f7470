# Local time from a POSIX TZ rule, integer only.
#
# The ESP32 has no zone database, so the config (and the tariff document) carry a POSIX TZ
# rule such as "CET-1CEST,M3.5.0,M10.5.0/3" (the footer of a TZif file). Tariff restrictions
# are judged in local time, so we need: the UTC offset at an instant, the local calendar
# fields, and the next instant at which the offset changes (pricing splits periods there).
#
# Rule grammar (POSIX.1-2017 section 8.3): std offset [dst [offset] [,start[/time],end[/time]]]
# names either alphabetic (>= 3 letters) or quoted <...>; offsets are hours WEST of UTC;
# dates Jn (1..365, no Feb 29), n (0..365) or Mm.w.d; times may be negative or >24 h (RFC 8536).

try:
    from micropython import const
except ImportError:  # CPython: the host compiler validates TZ rules with this same module
    def const(x):
        return x

_DAY = const(86400)


class TzError(ValueError):
    pass


def days_from_civil(y, m, d):
    # Days since 1970-01-01 of a proleptic Gregorian date (era-based, integer only).
    if m <= 2:
        y -= 1
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(z):
    # Inverse of days_from_civil: (year, month, day).
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if m <= 2 else 0), m, d


def _leap(y):
    return y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)


_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def fail(self, what):
        raise TzError("bad TZ rule %r at %d: %s" % (self.s, self.i, what))

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else ""

    def name(self):
        s = self.s
        if self.peek() == "<":
            j = s.find(">", self.i)
            if j < 0:
                self.fail("unclosed <")
            n = s[self.i + 1:j]
            self.i = j + 1
        else:
            j = self.i
            while j < len(s) and s[j].isalpha():
                j += 1
            n = s[self.i:j]
            self.i = j
        if len(n) < 3:
            self.fail("zone name needs 3+ characters")
        return n

    def number(self, lo, hi):
        s = self.s
        j = self.i
        while j < len(s) and s[j].isdigit():
            j += 1
        if j == self.i:
            self.fail("number expected")
        v = int(s[self.i:j])
        if not lo <= v <= hi:
            self.fail("number out of range")
        self.i = j
        return v

    def hms(self, max_hours):
        # [+-]hh[:mm[:ss]] -> seconds
        sign = 1
        if self.peek() in "+-":
            sign = -1 if self.peek() == "-" else 1
            self.i += 1
        secs = self.number(0, max_hours) * 3600
        for _ in range(2):
            if self.peek() != ":":
                break
            self.i += 1
            secs += self.number(0, 59) * (60 if _ == 0 else 1)
        return sign * secs

    def date(self):
        c = self.peek()
        if c == "J":
            self.i += 1
            return ("J", self.number(1, 365))
        if c == "M":
            self.i += 1
            m = self.number(1, 12)
            if self.peek() != ".":
                self.fail("'.' expected")
            self.i += 1
            w = self.number(1, 5)
            if self.peek() != ".":
                self.fail("'.' expected")
            self.i += 1
            return ("M", m, w, self.number(0, 6))
        return ("N", self.number(0, 365))

    def when(self):
        d = self.date()
        t = 7200  # POSIX default 02:00:00
        if self.peek() == "/":
            self.i += 1
            t = self.hms(167)
        return d, t


def _day_of_year(rule, y):
    # Days since 1970-01-01 of the transition date `rule` in year y.
    jan1 = days_from_civil(y, 1, 1)
    kind = rule[0]
    if kind == "J":
        n = rule[1]
        return jan1 + n - 1 + (1 if _leap(y) and n >= 60 else 0)
    if kind == "N":
        return jan1 + rule[1]
    _, m, w, wd = rule
    first = days_from_civil(y, m, 1)
    dow_first = (first + 4) % 7  # 0 = Sunday; 1970-01-01 was a Thursday
    day = first + (wd - dow_first) % 7 + (w - 1) * 7
    length = _MONTH_DAYS[m - 1] + (1 if m == 2 and _leap(y) else 0)
    while day >= first + length:
        day -= 7
    return day


class TzRule:
    """A parsed POSIX TZ rule: offset(utc), local(utc), next_change(utc)."""

    def __init__(self, text):
        if not isinstance(text, str) or not text or len(text) > 64:
            raise TzError("TZ rule must be a non-empty string of at most 64 characters")
        p = _Parser(text)
        self.rule = text
        self.std_name = p.name()
        self.std = -p.hms(24)  # seconds EAST of UTC
        self.dst = None
        self._start = self._end = None
        if p.peek():
            self.dst_name = p.name()
            self.dst = self.std + 3600
            if p.peek() and p.peek() != ",":
                self.dst = -p.hms(24)
            if p.peek() != ",":
                p.fail("DST needs ',start[/time],end[/time]'")  # no default rules on a device
            p.i += 1
            self._start = p.when()
            if p.peek() != ",":
                p.fail("',' expected before end rule")
            p.i += 1
            self._end = p.when()
        if p.peek():
            p.fail("trailing characters")
        self._year = None
        self._span = None

    def _transitions(self, y):
        # (dst_start_utc, dst_end_utc) of year y; start is given in standard time, end in DST.
        (d0, t0), (d1, t1) = self._start, self._end
        start = _day_of_year(d0, y) * _DAY + t0 - self.std
        end = _day_of_year(d1, y) * _DAY + t1 - self.dst
        return start, end

    def _is_dst(self, t):
        y = civil_from_days((t + self.std) // _DAY)[0]
        if self._year != y:
            self._year = y
            self._span = self._transitions(y)
        start, end = self._span
        if start < end:
            return start <= t < end
        return not (end <= t < start)  # southern hemisphere: DST spans the new year

    def offset(self, t):
        """Seconds east of UTC in effect at UTC epoch second t."""
        if self.dst is None:
            return self.std
        return self.dst if self._is_dst(t) else self.std

    def local(self, t):
        """(ymd as yyyymmdd int, seconds of day, weekday 0=Monday) at UTC epoch second t."""
        lt = t + self.offset(t)
        days = lt // _DAY
        y, m, d = civil_from_days(days)
        return y * 10000 + m * 100 + d, lt - days * _DAY, (days + 3) % 7

    def next_change(self, t):
        """First UTC second after t at which the offset changes, or None (no DST)."""
        if self.dst is None:
            return None
        y = civil_from_days((t + self.std) // _DAY)[0]
        best = None
        for yy in (y - 1, y, y + 1):
            for c in self._transitions(yy):
                if c > t and (best is None or c < best):
                    best = c
        return best


def rule(tz):
    """Accept a TzRule or its text."""
    return tz if isinstance(tz, TzRule) else TzRule(tz)
