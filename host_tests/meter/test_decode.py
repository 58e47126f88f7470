"""Exact decoding (firmware/meter/decode.py) under MicroPython against a fractions oracle."""
from __future__ import annotations

import random
import struct

import pytest

from host_tests.meter import oracle

# float32 energies (kWh) and powers (W) where naive float conversion gets the integer wrong.
TRICKY_KWH = [
    0.0625,  # 62.5 Wh exactly: round() gives 62, half-up 63
    1234.5625,  # 1234562.5 Wh exactly: round() gives the even 1234562
    16777.2158203125,  # 16777215.8 Wh -> 16777216 exactly; single precision steps over it
    51285.249,  # float32 51285.25 kWh = 51285250 Wh exactly; single precision gives 51285248
    88140.745,  # 88140742.19 Wh; single precision gives 88140744
    79494.814,  # 79494812.5 Wh, a tie: half-up 79494813; single precision gives 79494816
]
TRICKY_W = [2.5, 7000.5, 0.5, 16777217.0]


def test_tricky_values_really_trip_naive_conversion():
    wrong = 0
    for kwh in TRICKY_KWH:
        bits = oracle.f32_bits(kwh)
        exact = oracle.f32_scaled(bits, 1000)
        wrong += oracle.naive_double(bits, 1000) != exact or oracle.naive_single(bits, 1000) != exact
    assert wrong == len(TRICKY_KWH)
    for w in TRICKY_W[:3]:
        bits = oracle.f32_bits(w)
        assert oracle.naive_double(bits) != oracle.f32_scaled(bits)


def _sample(n: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    special = [0, 0x80000000, 1, 0x007FFFFF, 0x00800000, 0x3F000000, 0x3F800000, 0xBF000000, 0x7F7FFFFF,
               0x4B000000, 0x4B7FFFFF, 0x4B800001, 0x3DCCCCCD]
    special += [oracle.f32_bits(x) for x in TRICKY_KWH + TRICKY_W]
    randoms = [rng.getrandbits(32) for _ in range(n)]
    # Values a meter really shows: 0..1e6 with a few decimals.
    plausible = [oracle.f32_bits(rng.randrange(0, 10**9) / 1000) for _ in range(n)]
    halves = [oracle.f32_bits(rng.randrange(0, 2**22) + 0.5) for _ in range(n // 4)]
    return [b for b in special + randoms + plausible + halves if (b >> 23) & 0xFF != 0xFF]


SCALES = [(1, 1), (1000, 1), (1, 10), (1, 100), (100, 1), (10, 1), (1000000, 1)]


def _check(mpy, bits: list[int]) -> None:
    for i in range(0, len(bits), 500):  # keep each command line and heap small
        _check_batch(mpy, bits[i:i + 500])


def _check_batch(mpy, bits: list[int]) -> None:
    got = mpy.run(
        f"""
from meter.decode import f32
bits = {bits!r}
emit([[f32(b, n, d) for b in bits] for n, d in {SCALES!r}])
"""
    ).value
    for (num, den), row in zip(SCALES, got):
        for b, v in zip(bits, row):
            assert v == oracle.f32_scaled(b, num, den), f"f32 0x{b:08x} * {num}/{den}"


def test_f32_matches_exact_rounding(mpy):
    _check(mpy, _sample(400, seed=3))


@pytest.mark.exhaustive
def test_f32_matches_exact_rounding_sweep(mpy):
    for seed in range(20):
        _check(mpy, _sample(5000, seed=100 + seed))


def test_nan_and_infinity_are_errors(mpy):
    out = mpy.run(
        """
from meter.decode import f32, value, DecodeError
res = []
for bits in (0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF):
    try:
        f32(bits); res.append("value")
    except DecodeError as e:
        res.append(str(e))
for kind, raw in (("u64", b"\\xff" * 8), ("i32", b"\\x7f\\xff\\xff\\xff"), ("u32_ws", b"\\xff" * 4)):
    try:
        value(raw, 0, kind); res.append("value")
    except DecodeError as e:
        res.append("na")
emit(res)
"""
    ).value
    assert out == ["infinity", "infinity", "NaN", "NaN", "NaN", "na", "na", "na"]


INT_CASES = [
    ("u64", (1 << 32) + 12345, 10, 1),  # ABB centi-kWh above 2**32 -> Wh
    ("u64", (1 << 40) + 7, 10, 1),
    ("i32", 1234550, 1, 100),  # 12345.5 W -> 12346 (half-up)
    ("i32", -1234550, 1, 100),  # -12345.5 -> -12345 (half-up is towards +infinity)
    ("i32_ws", 25, 1, 10),  # 2.5 W -> 3
    ("i32_ws", 1234567, 100, 1),  # 0.1 kWh -> Wh
    ("u32_ws", 0x12345678, 1, 1),
    ("i32_ws", -15, 1, 10),
    ("u32", 4000000000, 1, 1),
    ("i16", -2, 1, 1),
    ("u16", 65535, 1, 10),
]


def _words(kind: str, v: int) -> bytes:
    fmt = {"u64": ">Q", "i32": ">i", "i32_ws": ">i", "u32_ws": ">I", "u32": ">I", "i16": ">h", "u16": ">H"}[kind]
    raw = struct.pack(fmt, v)
    if kind.endswith("_ws"):
        raw = raw[2:] + raw[:2]
    return raw


def test_scaled_integers(mpy):
    cases = [[k, list(_words(k, v)), n, d] for k, v, n, d in INT_CASES]
    got = mpy.run(
        f"""
from meter.decode import value
emit([value(bytes(raw), 0, k, n, d) for k, raw, n, d in {cases!r}])
"""
    ).value
    from fractions import Fraction

    assert got == [oracle.half_up(Fraction(v * n, d)) for _, v, n, d in INT_CASES]


def test_text_serials(mpy):
    got = mpy.run(
        """
from meter.decode import text
emit([text(b"235411W\\x00\\x00\\x00\\x00\\x00\\x00\\x00", 0, 7), text(b" AB1 ", 0, 2), text(b"\\x01\\x02", 0, 1)])
"""
    ).value
    assert got == ["235411W", "AB1", "0102"]
