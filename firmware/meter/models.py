# Meter register maps as data. Each quantity is (function, address, type, unit):
#   function  3 holding or 4 input registers
#   address   0-based register number (30073 in the manuals is 72 = 0x0048)
#   type      a firmware/meter/decode.py TYPES name; serial numbers also "strN" (N registers of ASCII)
#   unit      what one count of the register means (decode.py ENERGY_UNITS / POWER_UNITS)
# Sources: docs/meter.md and ../shared/reference/meters.md. Serial registers are optional:
# where a vendor fact is not confirmed, the entry says so and a meter that refuses the read
# (exception 1 or 2) simply reports no serial.
try:
    from micropython import const
except ImportError:  # CPython: tools/flash.py checks meter.model and meter.generic with this module
    def const(x):
        return x

from meter.decode import ENERGY_UNITS, POWER_UNITS, TYPES

_MAX_REGS = const(125)
# Reading spare registers between two quantities is cheaper than a second transaction while
# the spare bytes (2 per register) cost less than the second request and reply overhead:
# 8 request + 5 reply bytes, two 3.5-character gaps and the meter's turnaround.
_MERGE_GAP_REGS = const(12)

_SDM_SERIAL = (3, 0xFC00, "u32", None)  # Eastron "serial number" holding register, uint32

def catalog():
    """Every known model's register map, built on each call: a module-level dict kept ~1 KB of
    RAM for the life of the charger, which needs one entry once at boot (get())."""
    return {
        "sdm120": {"energy": (4, 0x0048, "f32", "kWh"), "power": (4, 0x000C, "f32", "W"), "serial": _SDM_SERIAL},
        "sdm230": {"energy": (4, 0x0048, "f32", "kWh"), "power": (4, 0x000C, "f32", "W"), "serial": _SDM_SERIAL},
        "sdm630": {"energy": (4, 0x0048, "f32", "kWh"), "power": (4, 0x0034, "f32", "W"), "serial": _SDM_SERIAL},
        "sdm72": {"energy": (4, 0x0048, "f32", "kWh"), "power": (4, 0x0034, "f32", "W"), "serial": _SDM_SERIAL},
        # ABB: the 64-bit energy register is read whole; its low 32 bits alone wrap at 2**32 centi-kWh.
        "abb-b23": {"energy": (3, 0x5000, "u64", "0.01kWh"), "power": (3, 0x5B14, "i32", "0.01W"),
                    "serial": (3, 0x8900, "u32", None)},
        "abb-b24": {"energy": (3, 0x5000, "u64", "0.01kWh"), "power": (3, 0x5B14, "i32", "0.01W"),
                    "serial": (3, 0x8900, "u32", None)},
        # Serial at 0x5000 as 7 ASCII registers is the Carlo Gavazzi EM24 layout; unconfirmed for the EM340.
        "em340": {"energy": (4, 0x0034, "i32_ws", "0.1kWh"), "power": (4, 0x0028, "i32_ws", "0.1W"),
                  "serial": (3, 0x5000, "str7", None)},
        "eem-350": {"energy": (4, 0x003E, "i32_ws", "0.1kWh"), "power": (4, 0x0028, "i32_ws", "0.1W"), "serial": None},
        "finder-7e": {"energy": (4, 0x1106, "f32", "Wh"), "power": (4, 0x1026, "f32", "W"), "serial": None},
    }


class ModelError(ValueError):
    pass


class Quantity:
    """One register value: where it is, how it is coded, how it scales to Wh or W."""

    __slots__ = ("fn", "addr", "kind", "nregs", "num", "den", "block", "offset")

    def __init__(self, what, spec, units):
        # A serial has no unit: [function, address, type] will do.
        if not isinstance(spec, (tuple, list)) or len(spec) != 4 and (units is not None or len(spec) != 3):
            raise ModelError("%s: want [function, address, type, unit]" % what)
        fn, addr, kind = spec[:3]
        unit = spec[3] if len(spec) > 3 else None
        if fn not in (3, 4):
            raise ModelError("%s: function must be 3 or 4" % what)
        if not isinstance(addr, int) or not 0 <= addr <= 0xFFFF:
            raise ModelError("%s: address must be 0..65535" % what)
        if isinstance(kind, str) and kind.startswith("str") and kind[3:].isdigit() and units is None:
            nregs = int(kind[3:])
        elif kind in TYPES:
            nregs = TYPES[kind][0]
        else:
            raise ModelError("%s: unknown type %r" % (what, kind))
        if not 1 <= nregs <= 32 or addr + nregs > 0x10000:
            raise ModelError("%s: bad register count" % what)
        if units is not None:
            if unit not in units:
                raise ModelError("%s: unit must be one of %s" % (what, ", ".join(sorted(units))))
            self.num, self.den = units[unit]
        else:
            self.num = self.den = 1
        self.fn = fn
        self.addr = addr
        self.kind = kind
        self.nregs = nregs
        self.block = 0
        self.offset = 0


class Model:
    """A compiled register map: the quantities and the reads (blocks) that fetch them."""

    def __init__(self, name, spec):
        if not isinstance(spec, dict):
            raise ModelError("model %s: want a dict" % name)
        self.name = name
        self.energy = Quantity("energy", spec.get("energy"), ENERGY_UNITS)
        self.power = Quantity("power", spec.get("power"), POWER_UNITS)
        serial = spec.get("serial")
        self.serial = Quantity("serial", serial, None) if serial else None
        self.blocks = _plan((self.energy, self.power))

    def __repr__(self):
        return "<meter model %s: %d reads>" % (self.name, len(self.blocks))


def _plan(quantities):
    """Group quantities into as few reads as pay off; sets q.block and q.offset (bytes)."""
    blocks = []  # [fn, first, end]
    for q in sorted(quantities, key=lambda q: (q.fn, q.addr)):
        last = blocks[-1] if blocks else None
        end = q.addr + q.nregs
        if (last and last[0] == q.fn and q.addr - last[2] <= _MERGE_GAP_REGS
                and max(end, last[2]) - last[1] <= _MAX_REGS):
            last[2] = max(end, last[2])
        else:
            blocks.append([q.fn, q.addr, end])
        q.block = len(blocks) - 1
        q.offset = 2 * (q.addr - blocks[-1][1])
    return tuple((fn, first, end - first) for fn, first, end in blocks)


def names():
    return sorted(catalog()) + ["generic"]


def get(name, generic=None):
    """The model called name; "generic" builds one from the dict generic (same layout as catalog())."""
    if not isinstance(name, str):
        raise ModelError("meter model must be a string")
    key = name.lower()
    if key == "generic":
        if generic is None:
            raise ModelError("model generic needs a register map (meter.generic in the config)")
        return Model("generic", generic)
    spec = catalog().get(key)
    if spec is None:
        raise ModelError("unknown meter model %r (known: %s)" % (name, ", ".join(names())))
    return Model(key, spec)
