# NIST P-256 (secp256r1) group arithmetic on MicroPython's arbitrary-precision ints.
#
# Points inside a computation are Jacobian (X, Y, Z) meaning affine (X/Z^2, Y/Z^3); the identity has
# Z == 0. Affine points are (x, y) tuples; only results and tables are affine, so each scalar
# multiplication needs one field inversion (Fermat: pow(z, p-2, p); the unix port's pow(z, -1, p)
# returns 0, so it is never used).
#
# Fixed-base multiplication k*G uses a signed all-nonzero comb (see _comb below): the sequence of
# field operations is the same for every scalar. What is NOT constant-time: bignum ops whose running
# time depends on operand values, the table lookup (index = secret bits), and the zero-probability
# special cases of the addition formula. docs/records.md says more.
from micropython import const

P = const(0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF)
N = const(0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551)
B = const(0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B)
GX = const(0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296)
GY = const(0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)
G = (GX, GY)

# Comb shape: _TEETH teeth spaced _SPAN bits apart cover the 256-bit scalar; the table holds
# 2^(_TEETH-1) affine points packed as 64-byte big-endian x||y in one bytearray.
_TEETH = const(6)
_SPAN = const(43)  # ceil(256 / _TEETH)
_ENTRIES = const(32)  # 2 ** (_TEETH - 1)
_MASK = const(31)  # _ENTRIES - 1
_CHUNK = const(8)  # table entries normalised per inversion while building

_table = None  # built on first use by comb_table()


def inv(z, m=P):
    """Multiplicative inverse modulo the prime m (Fermat)."""
    if z % m == 0:
        raise ZeroDivisionError("no inverse of 0")
    return pow(z, m - 2, m)


def on_curve(pt):
    x, y = pt
    return 0 <= x < P and 0 <= y < P and (y * y - x * x * x + 3 * x - B) % P == 0


def double(X1, Y1, Z1):
    """2*(X1:Y1:Z1), a = -3 formula (dbl-2001-b); the identity doubles to itself."""
    p = P
    d = Z1 * Z1 % p
    g = Y1 * Y1 % p
    b = X1 * g % p
    a = 3 * (X1 - d) * (X1 + d) % p
    X3 = (a * a - 8 * b) % p
    Z3 = 2 * Y1 * Z1 % p  # = (Y1+Z1)^2 - g - d of the formula, in three big-int results instead of six
    Y3 = (a * (4 * b - X3) - 8 * g * g) % p
    return X3, Y3, Z3


def add_affine(X1, Y1, Z1, x2, y2):
    """(X1:Y1:Z1) + (x2, y2) with an affine second operand (mixed addition)."""
    p = P
    if Z1 == 0:
        return x2, y2, 1
    zz = Z1 * Z1 % p
    h = (x2 * zz - X1) % p
    r = (y2 * zz * Z1 - Y1) % p
    if h == 0:  # same x: P == Q or P == -Q; never happens for a comb column (see _comb)
        return double(x2, y2, 1) if r == 0 else (1, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = X1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    Y3 = (r * (v - X3) - Y1 * hhh) % p
    return X3, Y3, Z1 * h % p


def add(X1, Y1, Z1, X2, Y2, Z2):
    """Sum of two Jacobian points (add-1998-cmo-2), all cases handled."""
    p = P
    if Z1 == 0:
        return X2, Y2, Z2
    if Z2 == 0:
        return X1, Y1, Z1
    z1z1 = Z1 * Z1 % p
    z2z2 = Z2 * Z2 % p
    u1 = X1 * z2z2 % p
    s1 = Y1 * Z2 * z2z2 % p
    h = (X2 * z1z1 - u1) % p
    r = (Y2 * Z1 * z1z1 - s1) % p
    if h == 0:
        return double(X1, Y1, Z1) if r == 0 else (1, 1, 0)
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    X3 = (r * r - hhh - 2 * v) % p
    Y3 = (r * (v - X3) - s1 * hhh) % p
    return X3, Y3, Z1 * Z2 % p * h % p


def to_affine(X, Y, Z):
    if Z % P == 0:
        raise ValueError("point at infinity")
    zi = inv(Z)
    zi2 = zi * zi % P
    return X * zi2 % P, Y * zi2 * zi % P


def _normalize_all(points):
    """Jacobian list -> affine list with one inversion (Montgomery's trick)."""
    p = P
    acc = []
    z = 1
    for pt in points:
        acc.append(z)
        z = z * pt[2] % p
    zi = inv(z)
    out = [None] * len(points)
    for i in range(len(points) - 1, -1, -1):
        X, Y, Z = points[i]
        zinv = zi * acc[i] % p
        zi = zi * Z % p
        z2 = zinv * zinv % p
        out[i] = (X * z2 % p, Y * z2 * zinv % p)
    return out


def comb_table():
    """The fixed-base table for G, built once and cached (a 2 KB bytearray).

    Entry u (bit t of u = sign of tooth t, 1 for +) is
    2^((TEETH-1)*SPAN) G + sum_{t < TEETH-1} (+/-) 2^(t*SPAN) G.
    Built in chunks of _CHUNK entries, each normalised with one inversion and written straight
    into the bytearray, so at most _CHUNK Jacobian points are alive while building.
    """
    global _table
    if _table is not None:
        return _table
    p = P
    teeth = []  # 2^(t*SPAN) G, affine
    X, Y, Z = GX, GY, 1
    for t in range(_TEETH):
        if t:
            for _ in range(_SPAN):
                X, Y, Z = double(X, Y, Z)
        teeth.append((X, Y, Z))
    teeth = _normalize_all(teeth)
    # Entry 0: the top tooth minus every lower tooth; flipping tooth t's sign adds 2 * tooth t.
    X, Y, Z = teeth[_TEETH - 1][0], teeth[_TEETH - 1][1], 1
    for t in range(_TEETH - 1):
        X, Y, Z = add_affine(X, Y, Z, teeth[t][0], p - teeth[t][1])
    twice = _normalize_all([double(x, y, 1) for x, y in teeth[: _TEETH - 1]])
    teeth = None
    table = bytearray(64 * _ENTRIES)
    chunk = [(X, Y, Z)]
    for u in range(1, _ENTRIES + 1):
        if u % _CHUNK == 0:
            for i, (x, y) in enumerate(_normalize_all(chunk)):
                off = 64 * (u - _CHUNK + i)
                table[off : off + 32] = x.to_bytes(32, "big")
                table[off + 32 : off + 64] = y.to_bytes(32, "big")
            chunk = []
        if u == _ENTRIES:
            break
        t = 0
        while not (u >> t) & 1:
            t += 1
        v = u - (1 << t)  # bit t of v is clear, so v's entry exists: in this chunk or the table
        if v >= u - len(chunk):
            X, Y, Z = chunk[v - (u - len(chunk))]
        else:
            X = int.from_bytes(table[64 * v : 64 * v + 32], "big")
            Y = int.from_bytes(table[64 * v + 32 : 64 * v + 64], "big")
            Z = 1
        chunk.append(add_affine(X, Y, Z, twice[t][0], twice[t][1]))
    _table = table
    return table


def _comb(k):
    """k*G as Jacobian for 0 < k < 2^256, k odd, with one column add per doubling.

    An odd k < 2^L (L = TEETH*SPAN >= 256) has the all-nonzero signed binary form
    k = sum s_i 2^i with s_(L-1) = +1 and s_i = +1 iff bit i+1 of k is set (i < L-1):
    the bits of m below. Each column sums
    +/- 2^(t*SPAN) G over all teeth, never zero, so every step is one doubling and one
    addition whatever k is.
    """
    table = memoryview(comb_table())  # entries read through views: no 32-byte copies
    p = P
    # m as 33 big-endian bytes: bit i of m is bit i % 8 of mb[32 - i // 8]. Reading a bit is then
    # small-int arithmetic, where m >> i would make a new 258-bit integer for each of 258 bits.
    mb = ((k >> 1) | (1 << (_TEETH * _SPAN - 1))).to_bytes(33, "big")
    frombytes = int.from_bytes
    X = Y = Z = 0
    for j in range(_SPAN - 1, -1, -1):
        u = 0
        for t in range(_TEETH):
            i = j + t * _SPAN
            u |= ((mb[32 - (i >> 3)] >> (i & 7)) & 1) << t
        top = u >> (_TEETH - 1)
        neg = 1 - top
        idx = (u ^ (neg * _MASK)) & _MASK
        off = 64 * idx
        x = frombytes(table[off : off + 32], "big")
        y = frombytes(table[off + 32 : off + 64], "big")
        y = y + neg * (p - y - y)  # negate the column when its top tooth is -1
        if j == _SPAN - 1:
            X, Y, Z = x, y, 1
        else:
            X, Y, Z = double(X, Y, Z)
            X, Y, Z = add_affine(X, Y, Z, x, y)
    return X, Y, Z


def mul_base(k):
    """k*G as Jacobian, 0 < k < N, via the comb. An even k is handled as -(N-k)*G."""
    if not 0 < k < N:
        raise ValueError("scalar out of range")
    even = 1 - (k & 1)
    k = k + even * (N - k - k)  # N - k when k is even (N is odd)
    X, Y, Z = _comb(k)
    return X, Y + even * (P - Y - Y), Z


def _odd_multiples(pt, count):
    """[1, 3, 5, ... (2*count-1)] * pt in affine."""
    x, y = pt
    two = to_affine(*double(x, y, 1))
    out = [(x, y, 1)]
    for _ in range(count - 1):
        X, Y, Z = out[-1]
        out.append(add_affine(X, Y, Z, two[0], two[1]))
    return _normalize_all(out)


def _wnaf(k, w):
    """Width-w NAF of k (public scalars only): bytearray, least significant first, digit + 2^(w-1)."""
    full = 1 << w
    half = full >> 1
    digits = bytearray(257)  # one allocation: a growing list would need ever larger blocks
    i = 0
    while k:
        d = 0
        if k & 1:
            d = k & (full - 1)
            if d >= half:
                d -= full
            k -= d
        digits[i] = d + half
        k >>= 1
        i += 1
    return digits, i


def mul(k, pt):
    """k*pt as Jacobian for any point (public scalars: branches on k's digits), width-5 NAF."""
    if not 0 <= k < N:
        raise ValueError("scalar out of range")
    digits, count = _wnaf(k, 5)
    odd = _odd_multiples(pt, 8)
    p = P
    X, Y, Z = 1, 1, 0
    for i in range(count - 1, -1, -1):
        X, Y, Z = double(X, Y, Z)
        d = digits[i] - 16
        if d > 0:
            x, y = odd[d >> 1]
            X, Y, Z = add_affine(X, Y, Z, x, y)
        elif d < 0:
            x, y = odd[(-d) >> 1]
            X, Y, Z = add_affine(X, Y, Z, x, p - y)
    return X, Y, Z


def mul_double_add(k, pt):
    """Baseline: plain MSB-first double-and-add (Jacobian), for the benchmark comparison."""
    X, Y, Z = 1, 1, 0
    x, y = pt
    for i in range(255, -1, -1):
        X, Y, Z = double(X, Y, Z)
        if (k >> i) & 1:
            X, Y, Z = add_affine(X, Y, Z, x, y)
    return X, Y, Z


def encode(pt):
    """Uncompressed SEC1 encoding 04 || x || y."""
    return b"\x04" + pt[0].to_bytes(32, "big") + pt[1].to_bytes(32, "big")


def decode(data):
    """SEC1 uncompressed point -> (x, y), checked to be on the curve."""
    if len(data) != 65 or data[0] != 4:
        raise ValueError("not an uncompressed P-256 point")
    pt = (int.from_bytes(data[1:33], "big"), int.from_bytes(data[33:65], "big"))
    if not on_curve(pt):
        raise ValueError("point not on P-256")
    return pt
