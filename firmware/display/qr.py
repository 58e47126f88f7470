# QR Code encoder (ISO/IEC 18004:2015), small enough for the charger: byte mode, error
# correction level M, versions 1..9 (the largest whose 53x53 modules and 4-module quiet zone,
# 61 pixels, fit a 64-pixel-high screen at one pixel per module; up to 180 bytes).
#
# Memory: the symbol is two bit-packed n x n bitmaps (modules, and which modules are function
# patterns), rows of (n + 7) // 8 bytes, most significant bit first: the framebuf MONO_HLSB
# layout, 371 bytes each at version 9. The GF(256) tables (512 bytes) and the codewords live only
# while encode() runs. The block table below is bytes: frozen, it stays in flash.
# docs/display.md lists the facts from the standard this file is written from.
try:
    from micropython import const
except ImportError:  # CPython: the encoder is plain Python
    def const(x):
        return x

MAX_VERSION = const(9)
_POLY = const(0x11D)  # GF(256) field polynomial x^8 + x^4 + x^3 + x^2 + 1 (7.5.2)
_FORMAT_GEN = const(0x537)  # BCH(15,5) generator (Annex C)
_FORMAT_XOR = const(0x5412)
_VERSION_GEN = const(0x1F25)  # BCH(18,6) generator (Annex D)
_LEVEL_M = const(0)  # error correction level indicator bits: L 01, M 00, Q 11, H 10 (Table 12)

# Level M, versions 1..9 (Table 9): EC codewords per block, blocks of group 1, data codewords
# in each group-1 block, blocks of group 2 (each one data codeword more than group 1's)
_EC = b"\x0a\x10\x1a\x12\x18\x10\x12\x16\x16"
_G1 = b"\x01\x01\x01\x02\x02\x04\x04\x02\x03"
_D1 = b"\x10\x1c\x2c\x20\x2b\x1b\x1f\x26\x24"
_G2 = b"\x00\x00\x00\x00\x00\x00\x00\x02\x02"
# Alignment pattern centre coordinates per version (Annex E, Table E.1)
_ALIGN = (b"", b"\x06\x12", b"\x06\x16", b"\x06\x1a", b"\x06\x1e", b"\x06\x22",
          b"\x06\x16\x26", b"\x06\x18\x2a", b"\x06\x1a\x2e")
_FINDER_LIKE = b"\x01\x00\x01\x01\x01\x00\x01"  # 1:1:3:1:1 dark:light:dark:light:dark


class QrError(ValueError):
    pass


def data_codewords(version):
    i = version - 1
    return _G1[i] * _D1[i] + _G2[i] * (_D1[i] + 1)


def capacity(version):
    """Bytes a version holds at level M in byte mode: 4 bits mode, 8 bits count (versions 1..9)."""
    return data_codewords(version) - 2


def version_for(n):
    for v in range(1, MAX_VERSION + 1):
        if n <= capacity(v):
            return v
    raise QrError("%d bytes do not fit a version %d-M symbol (at most %d)" % (n, MAX_VERSION, capacity(MAX_VERSION)))


class QrCode:
    """A finished symbol: size x size modules, dark(x, y) -> 1 for a dark module."""

    def __init__(self, version, size, modules):
        self.version = version
        self.size = size
        self.stride = (size + 7) >> 3
        self.modules = modules
        self.mask = None
        self.penalties = None  # penalty score per mask, as evaluated

    def dark(self, x, y):
        return self.modules[y * self.stride + (x >> 3)] >> (7 - (x & 7)) & 1


# ---- Reed-Solomon over GF(256) (7.5.2) --------------------------------------------------
def _gf_tables():
    exp = bytearray(256)
    log = bytearray(256)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= _POLY
    return exp, log


def _generator(ec, exp, log):
    # (x - a^0)(x - a^1)...(x - a^(ec-1)), coefficients from the highest degree, monic
    g = bytearray(ec + 1)
    g[0] = 1
    for i in range(ec):
        for j in range(i + 1, 0, -1):
            c = g[j - 1]
            if c:
                g[j] ^= exp[(log[c] + i) % 255]
    return g


def _ecc(data, start, n, gen, ec, out, at, exp, log):
    # remainder of data(x) * x^ec divided by gen(x), written to out[at:at + ec]
    for j in range(ec):
        out[at + j] = 0
    for k in range(start, start + n):
        f = data[k] ^ out[at]
        for j in range(ec - 1):
            g = gen[j + 1]
            out[at + j] = out[at + j + 1] ^ (exp[(log[g] + log[f]) % 255] if f and g else 0)
        g = gen[ec]
        out[at + ec - 1] = exp[(log[g] + log[f]) % 255] if f and g else 0


# ---- codewords (7.4, 7.6) -----------------------------------------------------------------
def _data_codewords(text, version):
    nd = data_codewords(version)
    buf = bytearray(nd)
    buf[0] = 0x40 | len(text) >> 4  # mode 0100 (byte), then the 8-bit count
    prev = len(text) & 0x0F
    for i, b in enumerate(text):
        buf[i + 1] = (prev << 4 | b >> 4) & 0xFF
        prev = b & 0x0F
    buf[len(text) + 1] = prev << 4  # the last 4 bits, then the 4-bit terminator (zeros)
    pad = 0xEC
    for i in range(len(text) + 2, nd):  # pad codewords 11101100 00010001 alternately
        buf[i] = pad
        pad ^= 0xEC ^ 0x11
    return buf


def _final_message(data, version):
    i = version - 1
    ec, g1, d1, g2 = _EC[i], _G1[i], _D1[i], _G2[i]
    blocks = g1 + g2
    nd = len(data)
    out = bytearray(nd + ec * blocks)
    exp, log = _gf_tables()
    gen = _generator(ec, exp, log)
    eccs = bytearray(ec * blocks)
    start = 0
    for b in range(blocks):
        n = d1 + (b >= g1)
        _ecc(data, start, n, gen, ec, eccs, b * ec, exp, log)
        start += n
    # interleave: the i-th data codeword of every block in turn, then the EC codewords (7.6)
    k = 0
    for i in range(d1 + (g2 > 0)):
        start = 0
        for b in range(blocks):
            n = d1 + (b >= g1)
            if i < n:
                out[k] = data[start + i]
                k += 1
            start += n
    for i in range(ec):
        for b in range(blocks):
            out[k] = eccs[b * ec + i]
            k += 1
    return out


# ---- the matrix (6.3, 7.7) ----------------------------------------------------------------
class _Grid:
    def __init__(self, size):
        self.n = size
        self.stride = (size + 7) >> 3
        self.mod = bytearray(self.stride * size)
        self.fn = bytearray(self.stride * size)  # 1: a function module (not data, not masked)

    def get(self, x, y):
        return self.mod[y * self.stride + (x >> 3)] >> (7 - (x & 7)) & 1

    def put(self, x, y, dark, fn=True):
        i = y * self.stride + (x >> 3)
        bit = 0x80 >> (x & 7)
        if dark:
            self.mod[i] |= bit
        else:
            self.mod[i] &= ~bit
        if fn:
            self.fn[i] |= bit

    def is_fn(self, x, y):
        return self.fn[y * self.stride + (x >> 3)] >> (7 - (x & 7)) & 1

    def finder(self, cx, cy):
        # 7x7 finder centred on (cx, cy) with its light separator ring, clipped at the edges
        n = self.n
        for dy in range(-4, 5):
            for dx in range(-4, 5):
                x, y = cx + dx, cy + dy
                if 0 <= x < n and 0 <= y < n:
                    d = max(abs(dx), abs(dy))
                    self.put(x, y, d != 2 and d != 4)

    def alignment(self, cx, cy):
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                self.put(cx + dx, cy + dy, max(abs(dx), abs(dy)) != 1)


def _format_bits(mask):
    data = _LEVEL_M << 3 | mask
    rem = data
    for _ in range(10):
        rem = rem << 1 ^ (_FORMAT_GEN if rem >> 9 else 0)
    return (data << 10 | rem) ^ _FORMAT_XOR


def version_bits(version):
    rem = version
    for _ in range(12):
        rem = rem << 1 ^ (_VERSION_GEN if rem >> 11 else 0)
    return version << 12 | rem


def _draw_format(g, mask):
    bits = _format_bits(mask)
    n = g.n
    for i in range(15):
        bit = bits >> i & 1
        # around the top-left finder: bits 0..7 down column 8 (skipping the timing row), 8..14
        # leftwards along row 8 (skipping the timing column)
        if i < 6:
            g.put(8, i, bit)
        elif i < 8:
            g.put(8, i + 1, bit)
        elif i == 8:
            g.put(7, 8, bit)
        else:
            g.put(14 - i, 8, bit)
        # the copy: bits 0..7 along row 8 from the right edge, 8..14 up column 8 at the bottom
        if i < 8:
            g.put(n - 1 - i, 8, bit)
        else:
            g.put(8, n - 15 + i, bit)
    g.put(8, n - 8, 1)  # the dark module


def _function_patterns(g, version):
    n = g.n
    for i in range(n):  # timing patterns; finders and alignments drawn over them
        g.put(6, i, i & 1 == 0)
        g.put(i, 6, i & 1 == 0)
    g.finder(3, 3)
    g.finder(n - 4, 3)
    g.finder(3, n - 4)
    pos = _ALIGN[version - 1]
    last = len(pos) - 1
    for a in range(len(pos)):
        for b in range(len(pos)):
            if not (a == 0 and b == 0 or a == 0 and b == last or a == last and b == 0):  # finders' corners
                g.alignment(pos[a], pos[b])
    _draw_format(g, 0)  # reserves the format areas; redrawn for each mask
    if version >= 7:
        bits = version_bits(version)
        for i in range(18):
            bit = bits >> i & 1
            a, b = n - 11 + i % 3, i // 3
            g.put(a, b, bit)
            g.put(b, a, bit)


def _place(g, message):
    # two-module columns from the right, upwards then downwards, skipping the timing column (7.7.3)
    n = g.n
    total = len(message) * 8
    i = 0
    right = n - 1
    while right >= 1:
        if right == 6:
            right = 5
        upward = (right + 1) & 2 == 0
        for vert in range(n):
            y = n - 1 - vert if upward else vert
            for x in range(right, right - 2, -1):  # a range, not a tuple: no allocation per module
                if not g.is_fn(x, y):
                    dark = 0
                    if i < total:
                        dark = message[i >> 3] >> (7 - (i & 7)) & 1
                        i += 1
                    g.put(x, y, dark, False)  # remainder bits stay light
        right -= 2


def _mask_at(mask, x, y):
    # i = row, j = column (7.8.2, Table 10)
    if mask == 0:
        return (y + x) % 2 == 0
    if mask == 1:
        return y % 2 == 0
    if mask == 2:
        return x % 3 == 0
    if mask == 3:
        return (y + x) % 3 == 0
    if mask == 4:
        return (y // 2 + x // 3) % 2 == 0
    if mask == 5:
        return y * x % 2 + y * x % 3 == 0
    if mask == 6:
        return (y * x % 2 + y * x % 3) % 2 == 0
    return ((y + x) % 2 + y * x % 3) % 2 == 0


def _apply_mask(g, mask):
    n, stride, mod, fn = g.n, g.stride, g.mod, g.fn
    for y in range(n):
        row = y * stride
        for x in range(n):
            bit = 0x80 >> (x & 7)
            if not fn[row + (x >> 3)] & bit and _mask_at(mask, x, y):
                mod[row + (x >> 3)] ^= bit


# ---- mask evaluation (7.8.3, Table 11) ----------------------------------------------------
def _line_penalty(line, n):
    # N1: a run of 5 + i modules of one colour scores 3 + i; N3: 1:1:3:1:1 with four light
    # modules before or after it scores 40 (outside the symbol is the light quiet zone).
    # Returns N3 << 16 | N1.
    p = 0
    run = 1
    for i in range(1, n):
        if line[i] == line[i - 1]:
            run += 1
        else:
            if run >= 5:
                p += run - 2
            run = 1
    if run >= 5:
        p += run - 2
    i = line.find(_FINDER_LIKE)
    while i >= 0:  # every occurrence, also one sharing its end module with another
        if _light(line, i - 4, i, n) or _light(line, i + 7, i + 11, n):
            p += 40 << 16  # N3 kept in the high half: penalties() reports N1 and N3 apart
        i = line.find(_FINDER_LIKE, i + 1)
    return p


def _light(line, a, b, n):
    for k in range(max(a, 0), min(b, n)):
        if line[k]:
            return False
    return True


def penalties(get, n, line=None, prev=None):
    """(N1, N2, N3, N4) of an n x n symbol whose get(x, y) gives 1 for a dark module."""
    line = line or bytearray(n)
    prev = prev or bytearray(n)
    n13 = n2 = dark = 0
    for y in range(n):
        for x in range(n):
            line[x] = get(x, y)
        n13 += _line_penalty(line, n)
        for x in range(n):
            dark += line[x]
            if y and x and line[x] == line[x - 1] == prev[x] == prev[x - 1]:
                n2 += 3  # each 2x2 block of one colour: an m x n block scores 3 (m-1)(n-1)
        prev[:] = line
    for x in range(n):
        for y in range(n):
            line[y] = get(x, y)
        n13 += _line_penalty(line, n)
    total = n * n
    n3 = n13 >> 16
    return n13 & 0xFFFF, n2, n3, 10 * (abs(20 * dark - 10 * total) // total)  # N4: 10 per 5 % off half dark


def encode(text, mask=None):
    """A version 1..9, level M, byte-mode symbol of text (bytes or str); mask None: the mask with
    the lowest penalty (evaluated on the whole symbol, format and version information included)."""
    if isinstance(text, str):
        text = text.encode()
    version = version_for(len(text))
    size = 17 + 4 * version
    g = _Grid(size)
    _function_patterns(g, version)
    _place(g, _final_message(_data_codewords(text, version), version))
    qr = QrCode(version, size, g.mod)
    if mask is None:
        scores = []
        line, prev = bytearray(size), bytearray(size)
        for m in range(8):
            _apply_mask(g, m)
            _draw_format(g, m)
            scores.append(sum(penalties(g.get, size, line, prev)))
            _apply_mask(g, m)  # XOR again: undone
        mask = scores.index(min(scores))
        qr.penalties = scores
    elif not 0 <= mask <= 7:
        raise QrError("mask %r: 0..7" % (mask,))
    _apply_mask(g, mask)
    _draw_format(g, mask)
    qr.mask = mask
    return qr
