# Exact decoding of meter registers into integer Wh and W, with integer arithmetic only.
#
# A value is scaled by a rational num/den (kWh -> Wh is 1000/1, 0.1 W -> W is 1/10) and
# rounded once, half-up: round(x) = floor(x + 1/2), so 62.5 -> 63 and -0.5 -> 0. float32
# registers are taken apart into sign, exponent and mantissa and scaled exactly, so the
# result is the correctly rounded value of the number the meter meant, on every port
# (the ESP32's single-precision floats could not even hold 12345.678 kWh * 1000).
from binascii import hexlify

try:
    from micropython import const
except ImportError:  # CPython: imported by meter/models.py when tools/flash.py checks a config
    def const(x):
        return x

_SIGNED = const(1)
_SWAP = const(2)  # low word first (Carlo Gavazzi, Phoenix Contact); bytes within a word stay high first
_FLOAT = const(4)

# type name -> (registers, flags)
TYPES = {
    "u16": (1, 0),
    "i16": (1, _SIGNED),
    "u32": (2, 0),
    "i32": (2, _SIGNED),
    "u32_ws": (2, _SWAP),
    "i32_ws": (2, _SIGNED | _SWAP),
    "u64": (4, 0),
    "i64": (4, _SIGNED),
    "f32": (2, _FLOAT),
    "f32_ws": (2, _FLOAT | _SWAP),
}

# register unit -> (num, den) that turns it into Wh or W
ENERGY_UNITS = {"Wh": (1, 1), "kWh": (1000, 1), "0.1kWh": (100, 1), "0.01kWh": (10, 1), "MWh": (1000000, 1)}
POWER_UNITS = {"W": (1, 1), "0.1W": (1, 10), "0.01W": (1, 100), "kW": (1000, 1)}


class DecodeError(ValueError):
    """The register holds no number: NaN, infinity or the meter's 'not available' marker."""


def words(buf, off, nregs, swap=False):
    """The unsigned integer in nregs 16-bit registers at buf[off:], high word first unless swap."""
    v = 0
    for i in range(nregs):
        j = off + 2 * ((nregs - 1 - i) if swap else i)
        v = (v << 16) | (buf[j] << 8) | buf[j + 1]
    return v


def scale(n, num=1, den=1):
    """n * num / den rounded half-up, exactly."""
    return (2 * n * num + den) // (2 * den)


def f32(bits, num=1, den=1):
    """The IEEE-754 binary32 number with these bits, times num/den, rounded half-up."""
    exp = (bits >> 23) & 0xFF
    mant = bits & 0x7FFFFF
    if exp == 0xFF:
        raise DecodeError("NaN" if mant else "infinity")
    if exp:
        mant |= 0x800000
        shift = exp - 150  # value = mant * 2**(exp - 127 - 23)
    else:
        shift = -149  # subnormal
    n = mant * num
    d = den
    if shift >= 0:
        n <<= shift
    else:
        d <<= -shift
    if bits >> 31:
        n = -n
    return (2 * n + d) // (2 * d)


def value(buf, off, kind, num=1, den=1):
    """Decode register type kind at buf[off:] into an integer scaled by num/den."""
    nregs, flags = TYPES[kind]
    raw = words(buf, off, nregs, flags & _SWAP)
    if flags & _FLOAT:
        return f32(raw, num, den)
    nbits = 16 * nregs
    if nbits >= 32:
        # Meters fill 32/64-bit registers they cannot serve with all ones (unsigned) or the
        # largest positive value (signed); no charger meter ever counts that far.
        top = (1 << (nbits - 1)) - 1 if flags & _SIGNED else (1 << nbits) - 1
        if raw == top:
            raise DecodeError("register not available (0x%x)" % raw)
    if flags & _SIGNED and raw >> (nbits - 1):
        raw -= 1 << nbits
    return scale(raw, num, den)


def text(buf, off, nregs):
    """An ASCII string register block (serial numbers), trailing NULs and spaces removed."""
    raw = bytes(buf[off:off + 2 * nregs])
    for b in raw:
        if b and not 0x20 <= b < 0x7F:
            return hexlify(raw).decode()  # not text: keep it comparable, never guess
    return raw.replace(b"\x00", b"").decode().strip()
