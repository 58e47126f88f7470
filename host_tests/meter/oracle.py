"""Exact reference values for the meter tests, computed with fractions (independent of the firmware)."""
from __future__ import annotations

import math
import struct
from fractions import Fraction


def half_up(x: Fraction) -> int:
    """floor(x + 1/2): the rounding rule documented in docs/meter.md."""
    return math.floor(x + Fraction(1, 2))


def f32_value(bits: int) -> Fraction:
    """The exact value of a float32 bit pattern (struct does the IEEE decoding)."""
    return Fraction(struct.unpack(">f", struct.pack(">I", bits))[0])


def f32_scaled(bits: int, num: int = 1, den: int = 1) -> int:
    return half_up(f32_value(bits) * num / den)


def f32_bits(x: float) -> int:
    return struct.unpack(">I", struct.pack(">f", x))[0]


def naive_double(bits: int, num: int = 1, den: int = 1) -> int:
    """What `round(value * scale)` gives on a port with double floats (banker's rounding)."""
    return round(struct.unpack(">f", struct.pack(">I", bits))[0] * num / den)


def naive_single(bits: int, num: int = 1, den: int = 1) -> int:
    """The same on the ESP32, whose floats are single precision: every step rounds to float32."""
    v = struct.unpack(">f", struct.pack(">I", bits))[0]
    prod = struct.unpack(">f", struct.pack(">f", v * num / den))[0]
    return int(struct.unpack(">f", struct.pack(">f", prod + 0.5))[0] // 1)
