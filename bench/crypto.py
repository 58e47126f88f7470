"""Signing and verification on the device: fixed-base comb / wNAF vs plain double-and-add.

Everything runs under the MicroPython unix port. Times come from one process (both methods side
by side). Peak heap: in separate processes, everything but N bytes of the free heap is locked up
after the imports, and a binary search finds the smallest N with which the operation completes.

Sealing a record (record.seal: OCMF + payload + JWS) is also measured on the ESP32-geometry
interpreter (sim/esp32geom.py, 32-bit, firmware frozen in) when .esp32geom/micropython exists:
garbage per seal, the smallest fixed heap (no growth) that seals records, and the peak extra heap.
It is not built here (`make esp32geom` does; rebuild after changing firmware to measure it).
"""
from __future__ import annotations

import os
import subprocess

from bench.common import Row, mpy
from sim import esp32geom

TITLE = "crypto: ECDSA P-256 sign/verify on MicroPython (comb vs double-and-add)"

_TIMING = """
import gc, time
from crypto import p256, ecdsa, keys
from billing import record

FAST = (p256.mul_base, p256.mul)
BASE = (lambda k: p256.mul_double_add(k, p256.G), p256.mul_double_add)

def use(impl):
    p256.mul_base, p256.mul = impl

def pair(fn, n):
    # fast and baseline interleaved, medians of single runs: the machine is shared, so both
    # sides see the same load and the median ignores the odd preemption
    times = ([], [])
    for i in range(n):
        for side, impl in enumerate((FAST, BASE)):
            use(impl)
            t = time.ticks_us()
            fn(i)
            times[side].append(time.ticks_diff(time.ticks_us(), t))
    use(FAST)
    return [sorted(x)[n // 2] / 1000 for x in times]

out = {}
gc.collect()
before = gc.mem_alloc()
t = time.ticks_us()
p256.comb_table()
out["table_ms"] = time.ticks_diff(time.ticks_us(), t) / 1000
gc.collect()
out["table_bytes"] = gc.mem_alloc() - before

d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
pub = ecdsa.public_point(d)
sigs = [ecdsa.sign(d, b"msg %d" % i) for i in range(N)]
ks = [int.from_bytes(ecdsa.hashlib.sha256(b"k%d" % i).digest(), "big") % (p256.N - 1) + 1 for i in range(N)]

def alloc(fn):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    fn(0)
    b = gc.mem_alloc()
    gc.enable()
    return b - a

for name, fn in (("mulbase_ms", lambda i: p256.to_affine(*p256.mul_base(ks[i]))),
                 ("mul_ms", lambda i: p256.to_affine(*p256.mul(ks[i], pub))),
                 ("sign_ms", lambda i: ecdsa.sign(d, b"msg %d" % i)),
                 ("verify_ms", lambda i: ecdsa.verify(pub, b"msg %d" % i, *sigs[i]))):
    out["fast_" + name], out["base_" + name] = pair(fn, N)
for tag, impl in (("fast", FAST), ("base", BASE)):
    use(impl)
    out[tag + "_sign_alloc"] = alloc(lambda i: ecdsa.sign(d, b"msg 0"))
    out[tag + "_verify_alloc"] = alloc(lambda i: ecdsa.verify(pub, b"msg 0", *sigs[0]))
use(FAST)
key = keys.Key(d)
f = {"dev": "evc-1", "seq": 1, "prev": "", "token": "0" * 32, "auth": "list", "contract": None,
     "tariff": {"id": "T", "ver": 1}, "start": {"t": 1717236000, "tq": "S", "wh": 1000},
     "stop": {"t": 1717239600, "tq": "S", "wh": 12345, "reason": "card"},
     "meter": {"model": "sdm630", "serial": "1"},
     "cost": {"currency": "EUR", "excl": 100, "incl": 119, "lines": []}, "flags": [], "fw": "0.1"}
out["seal_ms"] = pair(lambda i: record.seal(key, f), 10)[0]
out["seal_alloc"] = alloc(lambda i: record.seal(key, f))
emit(out)
"""

_HEAP = """
import gc
from crypto import p256, ecdsa
d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
pub = (0x60FED4BA255A9D31C961EB74C6356D68C049B8923B61FA6CE669622E60F29FB6,
       0x7903FE1008B8BC99A41AE9E95628BC64F2F1B20C2D7E9F5177A3C294D4462299)
r, s = (0xEFD48B2AACB6A8FD1140DD9CD45E81D69D2C877B56AAF991C34D0EA84EAF3716,
        0xF7CB1C942D657C41D436C7A1B6E29F65F3E900DBB9AFF4064DC4AB2F843ACDA8)
if {baseline}:
    p256.mul_base = lambda k: p256.mul_double_add(k, p256.G)
    p256.mul = p256.mul_double_add
if {prebuilt}:
    p256.comb_table()
gc.collect()
# Lock up all free heap except the headroom under test (in pieces: the heap may be fragmented),
# then run the operation in what is left.
ballast = []
size = excess = gc.mem_free() - {headroom}
while excess >= 64 and size >= 64:
    try:
        ballast.append(bytearray(min(size, excess)))
        excess = gc.mem_free() - {headroom}
    except MemoryError:
        size //= 2
op = {op!r}
if op == "sign":
    assert ecdsa.sign(d, b"sample") == (r, s)
else:
    assert ecdsa.verify(pub, b"sample", r, s)
print("OK")
"""


def _fits(op: str, baseline: bool, prebuilt: bool, headroom: int) -> bool:
    code = _HEAP.format(op=op, baseline=baseline, prebuilt=prebuilt, headroom=headroom)
    proc = subprocess.run([*mpy.command(None, "512k"), "-c", code], capture_output=True, text=True,
                          timeout=60, env=mpy.mpy_env())
    return proc.returncode == 0 and "OK" in proc.stdout


def peak_heap(op: str, baseline: bool = False, prebuilt: bool = False) -> int:
    """Free heap (bytes, 256-byte resolution) the operation needs beyond what is already live."""
    lo, hi = 0, 128 * 1024
    if not _fits(op, baseline, prebuilt, hi):
        raise RuntimeError(f"{op} needs more than {hi} bytes")
    while hi - lo > 256:
        mid = (lo + hi) // 2
        if _fits(op, baseline, prebuilt, mid):
            hi = mid
        else:
            lo = mid
    return hi


# Where a signature's time goes (issue 23: the comb sign is 0.37 of double-and-add, goal 0.33): the
# parts both methods share (RFC 6979 nonce, the affine conversion's inversion, k^-1 mod n) and the
# point operations, each timed alone (medians), and one field product a*b % p for scale.
_BREAKDOWN = """
import time
from crypto import p256, ecdsa

d = 0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721
h = [ecdsa.hashlib.sha256(b"m%d" % i).digest() for i in range(N)]
ks = [next(ecdsa.nonces(d, h[i])) for i in range(N)]
jac = [p256.mul_base(k) for k in ks]
P, n = p256.P, p256.N
a, b = jac[0][0], jac[1][1]
x2, y2 = p256.G

def points(i):
    X, Y, Z = jac[i]
    for _ in range(SPAN - 1):
        X, Y, Z = p256.double(X, Y, Z)
        X, Y, Z = p256.add_affine(X, Y, Z, x2, y2)

def products(i):
    for _ in range(100):
        a * b % P

PARTS = (
    ("sign", lambda i: ecdsa.sign_digest(d, h[i])),
    ("nonce", lambda i: next(ecdsa.nonces(d, h[i]))),
    ("mulbase", lambda i: p256.mul_base(ks[i])),
    ("points", points),
    ("affine", lambda i: p256.to_affine(*jac[i])),
    ("kinv", lambda i: pow(ks[i], n - 2, n)),
    ("products100", products),
    ("base_mulbase", lambda i: p256.mul_double_add(ks[i], p256.G)),
)
times = {name: [] for name, _ in PARTS}
for i in range(N):  # the parts interleaved: a shared machine's load falls on all of them alike
    for name, fn in PARTS:
        t = time.ticks_us()
        fn(i)
        times[name].append(time.ticks_diff(time.ticks_us(), t))
emit({name: sorted(v)[N // 2] / 1000 for name, v in times.items()})
"""


def sign_breakdown_rows() -> list[Row]:
    t = mpy.run(f"N = 31\nSPAN = {p256_SPAN}\n" + _BREAKDOWN, heap="8m", timeout=600).value
    t["fieldmul"] = t["products100"] / 100
    b = "crypto"
    shared = t["nonce"] + t["affine"] + t["kinv"]
    points = t["points"]
    rest = t["sign"] - t["mulbase"] - shared
    floor = (t["mulbase"] + shared) / (t["base_mulbase"] + shared)
    rows = [
        Row(b, "sign, comb: whole", t["sign"], "ms", "median of 31, unix port; the parts below, each timed alone"),
        Row(b, "sign: RFC 6979 nonce", t["nonce"], "ms", "HMAC-SHA256 x6 (hashlib in C): same in both methods"),
        Row(b, "sign: k*G (comb 6x43)", t["mulbase"], "ms",
            f"of which 42 doublings + 42 mixed additions {points:.2f} ms ({points / t['fieldmul'] / 84:.0f} field "
            f"products' time each); double-and-add: {t['base_mulbase']:.2f} ms"),
        Row(b, "sign: to affine (one inversion mod p)", t["affine"], "ms", "pow(z, p-2, p): same in both methods"),
        Row(b, "sign: k^-1 mod n", t["kinv"], "ms", "pow(k, n-2, n): same in both methods"),
        Row(b, "sign: not attributed", round(rest, 3), "ms",
            "the whole minus the parts timed alone (hash to int, r and s mod n, the generator; and noise)"),
        Row(b, "field product a*b % p", t["fieldmul"] * 1000, "us",
            f"256-bit operands, median of 100-product runs; an inversion costs {t['affine'] / t['fieldmul']:.0f} "
            f"of them"),
        Row(b, "sign: share in big-int field arithmetic", round(100 * (points + t["affine"] + t["kinv"]) / t["sign"]), "%",
            f"point operations and the two inversions; with the shared {shared:.2f} ms the ratio to double-and-add "
            f"is {floor:.2f} (goal 0.33): a smaller k*G needs fewer field products, not less overhead"),
    ]
    return rows


p256_SPAN = 43  # firmware/crypto/p256.py _SPAN: the comb's columns


def run() -> list[Row]:
    n = 20
    t = mpy.run(f"N = {n}\n" + _TIMING, heap="8m", timeout=600).value
    b = "crypto"
    rows = [
        Row(b, "comb table build (first use)", t["table_ms"], "ms", "32 affine points, cached"),
        Row(b, "comb table retained", t["table_bytes"], "B", "one bytearray (unix port, 64-bit)"),
    ]
    for what, unit, note in [
        ("sign_ms", "ms", "ECDSA-SHA256 incl. RFC 6979, median"),
        ("verify_ms", "ms", "u1*G + u2*Q"),
        ("mulbase_ms", "ms", "k*G"),
        ("mul_ms", "ms", "k*Q, arbitrary point"),
        ("sign_alloc", "B", "allocated per signature (garbage)"),
        ("verify_alloc", "B", "allocated per verification (garbage)"),
    ]:
        fast, base = t["fast_" + what], t["base_" + what]
        method = "wNAF-5" if what == "mul_ms" else ("comb + wNAF-5" if what.startswith("verify") else "comb 6x43")
        name = what.removesuffix("_ms")
        rows.append(Row(b, f"{name}: {method}", fast, unit, note))
        rows.append(Row(b, f"{name}: double-and-add", base, unit,
                        f"baseline; fast/base = {fast / base:.2f}" if base else "baseline"))
    rows.append(Row(b, "record.seal (OCMF + JWS: 2 signatures)", t["seal_ms"], "ms", "whole session record"))
    rows.append(Row(b, "record.seal garbage", t["seal_alloc"], "B",
                    f"allocated per seal, unix port; of which 2 signatures {2 * t['fast_sign_alloc']:,} B"))
    for op in ("sign", "verify"):
        rows.append(Row(b, f"peak heap: {op}, comb/wNAF, first use", peak_heap(op), "B", "incl. building the table"))
        rows.append(Row(b, f"peak heap: {op}, comb/wNAF", peak_heap(op, prebuilt=True), "B", "table already built"))
        rows.append(Row(b, f"peak heap: {op}, double-and-add", peak_heap(op, baseline=True), "B", "baseline"))
    rows.append(Row(b, "signatures per run", n, "", "same keys/messages for both methods"))
    rows += sign_breakdown_rows()
    rows += seal_rows_esp32geom()
    return rows


# --- record.seal on the ESP32-geometry interpreter ----------------------------------------------

_SEAL_SETUP = """
import gc
pad = bytearray({pad})  # shifts the heap layout: a figure must hold for every shift (fragmentation)
from crypto import keys, p256, canon
from billing import record
if {reserve} and hasattr(canon, "reserve"):
    canon.reserve()  # the kept writer, allocated at boot before the key (whose check builds the comb table)
key = keys.Key(0xC9AFA9D845BA75166B5C215767B1D6934E50C3DB36E89B127B8A622B120F6721)
p256.comb_table()
F = {{"dev": "evc-0a1b2c", "seq": 2, "prev": "ab" * 32, "token": "0123456789abcdef0123456789abcdef",
     "auth": "list", "contract": "fleet-7", "tariff": {{"id": "AC-STD", "ver": 4}},
     "start": {{"t": 1717236000, "tq": "S", "wh": 1234567}},
     "stop": {{"t": 1717243512, "tq": "I", "wh": 1246001, "reason": "card"}},
     "meter": {{"model": "sdm630", "serial": "SN-0042", "vendor": "Eastron"}},
     "cost": {{"currency": "EUR", "excl": 452, "incl": 538,
              "lines": [{{"dim": "energy", "qty": 11434, "excl": 452}}, {{"dim": "time", "qty": 7512, "excl": 100}}]}},
     "flags": [], "fw": "0.1.0"}}
gc.collect()
"""

_SEAL_GARBAGE = _SEAL_SETUP + """
from crypto import ecdsa
record.seal(key, F)  # first use: the kept writer (when not reserved) and other one-time state
def alloc(fn):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    fn()
    b = gc.mem_alloc()
    gc.enable()
    return b - a
p, j = record.seal(key, F)
print("RESULT", alloc(lambda: record.seal(key, F)), alloc(lambda: ecdsa.sign_digest(key._priv, bytes(32))),
      len(p), len(j))
"""

_SEAL_LOOP = _SEAL_SETUP + """
{ballast}
for i in range({seals}):
    F["seq"] = i + 2
    p, j = record.seal(key, F)
    p = j = None
print("OK")
"""

_BALLAST = """
ballast = []
size = excess = gc.mem_free() - {headroom}
while excess >= 64 and size >= 64:
    try:
        ballast.append(bytearray(min(size, excess)))
        excess = gc.mem_free() - {headroom}
    except MemoryError:
        size //= 2
"""


def _geom_run(code: str, heap: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MICROPYPATH": ".frozen", "ESP32GEOM_IDF_HEAP": "0"}  # no growth: the heap is fixed
    return subprocess.run([str(esp32geom.BINARY), "-X", f"heapsize={heap}", "-c", code], capture_output=True,
                          text=True, env=env, timeout=120, cwd="/")


def _bisect(works, lo: int, hi: int, step: int = 256) -> int:
    """The smallest size (to `step`) that works, for one heap layout, assuming that above it all do."""
    if not works(hi):
        raise RuntimeError(f"does not work even at {hi}")
    while hi - lo > step:
        mid = (lo + hi) // 2 // 16 * 16
        if works(mid):
            hi = mid
        else:
            lo = mid
    return hi


def _over_layouts(works, lo: int, hi: int) -> tuple[int, str]:
    """Median over the heap layouts of the per-layout threshold, and a note with their range.

    Fragmentation makes a single threshold jumpy (a larger heap can place a block worse), so each
    layout (a pad allocated first) is bisected on its own and the median is the figure.
    """
    found = sorted(_bisect(lambda size, pad=pad: works(size, pad), lo, hi) for pad in _PADS)
    return found[len(found) // 2], f"median of {len(found)} heap layouts ({found[0]:,}-{found[-1]:,})"


_PADS = (0, 16, 48, 80, 112, 160, 208, 304)


def seal_rows_esp32geom(seals: int = 5) -> list[Row]:
    """Garbage, smallest heap and peak of record.seal on the frozen 32-bit interpreter."""
    b = "crypto (esp32geom)"
    if not esp32geom.BINARY.exists():
        return [Row(b, "record.seal on the ESP32-geometry interpreter", "skipped", "",
                    f"no {esp32geom.BINARY.relative_to(esp32geom.REPO)} (make esp32geom)")]
    rows = []
    proc = _geom_run(_SEAL_GARBAGE.format(reserve=True, pad=0), "1m")
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT")]
    if not line:
        raise RuntimeError(f"esp32geom seal failed: {proc.stdout[-500:]} {proc.stderr[-500:]}")
    garbage, sign, n_payload, n_jws = map(int, line[0].split()[1:])
    rows.append(Row(b, "record.seal garbage", garbage, "B",
                    f"gc disabled around one seal (payload {n_payload} B, JWS {n_jws} B); "
                    f"2 signatures {2 * sign:,} B of it, the rest {garbage - 2 * sign:,} B"))
    for reserve in (False, True):
        def seals_at(heap: int, pad: int, reserve=reserve) -> bool:
            code = _SEAL_LOOP.format(reserve=reserve, ballast="", seals=seals, pad=pad)
            return _geom_run(code, str(heap)).returncode == 0
        value, note = _over_layouts(seals_at, 8 * 1024, 64 * 1024)
        rows.append(Row(b, "smallest heap sealing %d records%s" % (seals, ", writer reserved" if reserve else ""),
                        value, "B", f"-X heapsize, no growth; key + comb table built first (~10 KB live); {note}"))
    for reserve in (False, True):
        def fits(headroom: int, pad: int, reserve=reserve) -> bool:
            code = _SEAL_LOOP.format(reserve=reserve, ballast=_BALLAST.format(headroom=headroom), seals=seals, pad=pad)
            return _geom_run(code, "256k").returncode == 0
        value, note = _over_layouts(fits, 0, 48 * 1024)
        rows.append(Row(b, "peak extra heap, %d seals%s" % (seals, ", writer reserved" if reserve else ""), value, "B",
                        "free heap beside a ballast" + ("" if reserve else " (incl. the kept writer, 3 KiB)")
                        + f"; {note}"))
    return rows
