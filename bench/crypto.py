"""Signing and verification on the device: fixed-base comb / wNAF vs plain double-and-add.

Everything runs under the MicroPython unix port. Times come from one process (both methods side
by side). Peak heap: in separate processes, everything but N bytes of the free heap is locked up
after the imports, and a binary search finds the smallest N with which the operation completes.
"""
from __future__ import annotations

import subprocess

from bench.common import Row, mpy

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
    for op in ("sign", "verify"):
        rows.append(Row(b, f"peak heap: {op}, comb/wNAF, first use", peak_heap(op), "B", "incl. building the table"))
        rows.append(Row(b, f"peak heap: {op}, comb/wNAF", peak_heap(op, prebuilt=True), "B", "table already built"))
        rows.append(Row(b, f"peak heap: {op}, double-and-add", peak_heap(op, baseline=True), "B", "baseline"))
    rows.append(Row(b, "signatures per run", n, "", "same keys/messages for both methods"))
    return rows
