# An energy meter on a Modbus master: readings in integer Wh and W that are either exact and
# fresh, or an error. Never a wrong number on a bill.
#
# Plausibility, checked on every poll against the last accepted reading:
# - NaN, infinity, "not available" markers and negative values are rejected;
# - energy never decreases, and never rises faster than max_power_w allows for the time
#   elapsed (+ margin_wh for register resolution);
# - a reading older than max_age_ms is stale: fresh() returns None for it, so a silent meter
#   is never billed from an old value, and a frozen value never gets a new timestamp;
# - a changed serial number (meter swapped) raises the baseline counter, reports the event,
#   and drops the old reading, so no energy difference spans two meters.
# Device time (hal.clock) stamps readings: durations are what billing uses.
from micropython import const

from app import log
from hal import clock
from meter import decode
from meter.modbus import ExceptionResponse, ModbusError

_MS_PER_HOUR = const(3600000)
_ILLEGAL_FUNCTION = const(1)
_ILLEGAL_ADDRESS = const(2)


class MeterError(Exception):
    """No usable reading from this poll."""


class MeterCommError(MeterError):
    """The Modbus transaction failed; .cause is the ModbusError."""

    def __init__(self, msg, cause):
        super().__init__(msg)
        self.cause = cause


class ImplausibleReading(MeterError):
    """The meter answered, but with a value that must not reach a bill."""


class Reading:
    __slots__ = ("t_ms", "energy_wh", "power_w", "serial", "model", "baseline", "serial_changed")

    def __init__(self, t_ms, energy_wh, power_w, serial, model, baseline, serial_changed=False):
        self.t_ms = t_ms  # hal.clock.monotonic_ms() when the reply arrived
        self.energy_wh = energy_wh  # total import register, Wh
        self.power_w = power_w  # total active power, W
        self.serial = serial  # str, or None when the model exposes none
        self.model = model
        self.baseline = baseline  # +1 whenever the meter was swapped: differences only within one
        self.serial_changed = serial_changed

    def as_dict(self):
        return {"t_ms": self.t_ms, "energy_wh": self.energy_wh, "power_w": self.power_w, "serial": self.serial,
                "model": self.model, "baseline": self.baseline, "serial_changed": self.serial_changed}

    def __repr__(self):
        return "<Reading %d Wh %d W serial=%s t=%d>" % (self.energy_wh, self.power_w, self.serial, self.t_ms)


class Meter:
    def __init__(self, master, model, unit=1, max_power_w=25000, max_age_ms=5000, margin_wh=10, serial_every=10,
                 on_event=None):
        for name, v, lo, hi in (("unit", unit, 1, 247), ("max_power_w", max_power_w, 1, 10000000),
                                ("max_age_ms", max_age_ms, 1, 86400000), ("margin_wh", margin_wh, 0, 1000000),
                                ("serial_every", serial_every, 1, 1000000)):
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError("meter %s must be an integer %d..%d" % (name, lo, hi))
        self.master = master
        self.model = model
        self.unit = unit
        self.max_power_w = max_power_w
        self.max_age_ms = max_age_ms
        self.margin_wh = margin_wh
        self.serial_every = serial_every
        self.on_event = on_event
        self.serial = None
        self.baseline = 0
        self.last = None  # last accepted Reading (within the current baseline)
        self._has_serial = model.serial is not None  # False once the meter refused the register
        self._serial_due = self._has_serial
        self._polls = 0

    async def poll(self):
        """Read energy and power (and the serial when due); returns a Reading or raises MeterError."""
        m = self.model
        try:
            serial = await self._read_serial() if self._serial_due else self.serial
            data = []
            for fn, addr, count in m.blocks:
                data.append(await self.master.read(self.unit, fn, addr, count))
        except ModbusError as exc:
            # A swap means the bus went quiet or wrong for a while: check the serial next time.
            self._serial_due = self._has_serial
            raise MeterCommError("meter %s: %s: %s" % (m.name, type(exc).__name__, exc), exc)
        t = clock.monotonic_ms()
        self._polls += 1
        self._serial_due = self._has_serial and self._polls % self.serial_every == 0
        changed = False
        if serial != self.serial:
            if self.serial is not None and serial is not None:
                changed = True
                self.baseline += 1
                self.last = None
                log.warn("meter", "serial changed %s -> %s: new baseline %d" % (self.serial, serial, self.baseline))
                self._event("serial-changed", {"old": self.serial, "new": serial, "baseline": self.baseline})
            self.serial = serial
        energy = self._decode("energy", m.energy, data)
        power = self._decode("power", m.power, data)
        last = self.last
        if last is not None:
            if energy < last.energy_wh:
                raise ImplausibleReading("energy went back from %d to %d Wh" % (last.energy_wh, energy))
            dt = t - last.t_ms
            allowed = (self.max_power_w * dt + _MS_PER_HOUR - 1) // _MS_PER_HOUR + self.margin_wh
            if energy - last.energy_wh > allowed:
                raise ImplausibleReading("energy jumped %d Wh in %d ms (at most %d Wh plausible)"
                                         % (energy - last.energy_wh, dt, allowed))
        if power > self.max_power_w:
            raise ImplausibleReading("power %d W above the %d W maximum" % (power, self.max_power_w))
        reading = Reading(t, energy, power, self.serial, m.name, self.baseline, changed)
        self.last = reading
        return reading

    def fresh(self, max_age_ms=None):
        """The last accepted reading if it is at most max_age_ms old (default: the meter's), else None."""
        r = self.last
        if r is None:
            return None
        age = clock.monotonic_ms() - r.t_ms
        return r if age <= (self.max_age_ms if max_age_ms is None else max_age_ms) else None

    def reset_baseline(self):
        """Forget the last reading (after a technician replaced or reset the meter)."""
        self.last = None
        self.baseline += 1

    async def _read_serial(self):
        q = self.model.serial
        try:
            raw = await self.master.read(self.unit, q.fn, q.addr, q.nregs)
        except ExceptionResponse as exc:
            if exc.code not in (_ILLEGAL_FUNCTION, _ILLEGAL_ADDRESS):
                raise
            # This meter variant has no such register: carry on without a serial.
            self._has_serial = False
            self._event("serial-unsupported", {"model": self.model.name, "code": exc.code})
            return None
        if q.kind.startswith("str"):
            return decode.text(raw, 0, q.nregs)
        return str(decode.value(raw, 0, q.kind))

    def _decode(self, what, q, data):
        try:
            v = decode.value(data[q.block], q.offset, q.kind, q.num, q.den)
        except decode.DecodeError as exc:
            raise ImplausibleReading("%s: %s" % (what, exc))
        if v < 0:
            raise ImplausibleReading("%s is negative (%d)" % (what, v))
        return v

    def _event(self, name, info):
        if self.on_event is not None:
            try:
                self.on_event(name, info)
            except Exception as exc:  # a broken listener must not lose the reading
                log.exception("meter", exc)
