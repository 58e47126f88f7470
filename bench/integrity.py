"""Signed acks (issue 18): what checking an ack costs the device, and what signing acks costs the
backend's ingest.

Device: the uplink's Forwarder under the MicroPython unix port, with the real journal on LittleFS
(RAM flash) holding 200 unacknowledged records of ~1.2 KB: each signed ack goes through on_ack()
(the receive path: the claimed seq only) and commit() (ES256 verify against the pinned backend key,
the record's digest from the journal, journal.ack). Time and bytes allocated per ack; an ESP32
(240 MHz, single-precision build, 32-bit) runs this kind of big-int code some 20-50x slower.

Backend: the ingest benchmark's setup (bench/backend.py: 4 devices x 250 firmware-signed records
through mosquitto into SQLite, one worker, first publish to last ack) with the worker as it is
(each ack: the stored hash looked up, ES256-signed) beside the same worker publishing the old
unsigned {"seq": N}; rounds interleaved, medians.
"""
from __future__ import annotations

import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row, mpy

TITLE = "Integrity: signed acks (device check, backend ingest)"

RECORDS = 200  # in the device's journal, unacknowledged
ACKS = 40  # acks measured (seq 1..ACKS, each moves the cursor by one)
PAD = 900
ROUNDS = 3  # backend: signed / unsigned runs, interleaved
SLOWER = (20, 50)  # an ESP32 against this machine's unix port, for the note


def _payload(seq: int) -> bytes:
    return b'{"v":1,"dev":"bench","seq":%d,"pad":"%s"}' % (seq, b"x" * PAD)


_DEVICE = """
import gc, json, time
import vfs
from powercut import PowerCutDevice
from journal.journal import Journal
from crypto import b64url
from uplink.forward import Forwarder
from uplink.service import backend_verifier

spec = json.loads(SPEC)
bdev = PowerCutDevice(4096, 1024)
vfs.VfsLfs2.mkfs(bdev)
vfs.mount(vfs.VfsLfs2(bdev), "/jf")
import os
os.mkdir("/jf/j")
j = Journal("/jf/j", max_bytes=3 * 1024 * 1024)
j.recover()
head = b64url.encode(b'{"alg":"ES256","kid":"bench"}')
for seq in range(1, spec["records"] + 1):
    p = b'{"v":1,"dev":"bench","seq":%d,"pad":"%s"}' % (seq, b"x" * spec["pad"])
    j.commit_record(seq, p, head + b"." + b64url.encode(p) + b"." + b"A" * 86)
verify = backend_verifier(spec["key"])
f = Forwarder(j, 32, 30000, "bench", verify)
acks = [a.encode() for a in spec["acks"]]

def one(raw):
    f._verify_at = 0  # the duty-cycle gap is for the event loop; here each ack is measured alone
    t = time.ticks_us()
    ok = f.on_ack(raw)
    t1 = time.ticks_us()
    moved = f.commit()
    t2 = time.ticks_us()
    return ok and moved, time.ticks_diff(t1, t), time.ticks_diff(t2, t1)

# warm up: the comb table for u1*G, imports
one(acks[0])
times, recv, alloc, ok = [], [], [], 0
for raw in acks[1:-1]:
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    good, r, c = one(raw)
    alloc.append(gc.mem_alloc() - a)
    gc.enable()
    ok += good
    times.append(r + c)
    recv.append(r)
# the ES256 verification alone, and the digest of an older record from the journal
vt, dt = [], []
for raw in acks[1:-1]:
    t = time.ticks_us()
    verify(raw)
    vt.append(time.ticks_diff(time.ticks_us(), t))
for seq in range(f.store.acked_seq() + 1, f.store.acked_seq() + 21):
    t = time.ticks_us()
    j.digest(seq)
    dt.append(time.ticks_diff(time.ticks_us(), t))
# a forged ack (another key) for the newest record: verified, refused, nothing trimmed
acked = f.store.acked_seq()
gc.collect()
f._verify_at = 0
t = time.ticks_us()
f.on_ack(spec["forged"].encode())
f.commit()
forged_us = time.ticks_diff(time.ticks_us(), t)
assert f.store.acked_seq() == acked
# the genuine ack for the newest record: its digest is in RAM
gc.collect()
gc.disable()
a = gc.mem_alloc()
good, r, c = one(acks[-1])
last_alloc = gc.mem_alloc() - a
gc.enable()
# acks the receive path drops unverified (stale)
t = time.ticks_us()
for raw in acks[1:21]:
    f.on_ack(raw)
stale_us = time.ticks_diff(time.ticks_us(), t) / 20
med = lambda xs: sorted(xs)[len(xs) // 2]
emit({"ok": ok + good, "n": len(acks) - 1, "ack_us": med(times), "recv_us": med(recv), "verify_us": med(vt),
      "digest_us": med(dt), "alloc": max(alloc), "alloc_med": med(alloc), "last_us": r + c, "last_alloc": last_alloc,
      "forged_us": forged_us, "stale_us": stale_us, "acked": f.store.acked_seq(), "ignored": f.acks_ignored})
"""


def _device() -> dict:
    from sim.backend_peer import Signer

    key, other = Signer(), Signer()
    acks = []
    for seq in list(range(1, ACKS + 1)) + [RECORDS]:
        doc = {"type": "ack", "dev": "bench", "seq": seq, "hash": hashlib.sha256(_payload(seq)).hexdigest()}
        acks.append(key.sign(doc).decode())
    forged = other.sign({"type": "ack", "dev": "bench", "seq": RECORDS, "hash": "0" * 64}).decode()
    spec = {"records": RECORDS, "pad": PAD, "key": key.spki_hex, "acks": acks, "forged": forged}
    code = _DEVICE.replace("SPEC", repr(json.dumps(spec)))
    r = mpy.run(code, heap="16M", timeout=600).value
    assert r["ok"] == r["n"] and r["acked"] == RECORDS, r  # every genuine ack moved the cursor
    return r


# the serve command with the worker's acks as they were before issue 18 (unsigned), for the baseline
_RUNNER = """
import json, sys
from backend import worker
if sys.argv[1] == "unsigned":
    worker.Worker._ack_messages = lambda self, heads, known=None: [
        (f"{self.prefix}/{d}/ack", json.dumps({"seq": s})) for d, s in heads.items()]
from backend.__main__ import main
sys.exit(main(sys.argv[2:]))
"""


def _rate(broker_url: str, db: str, fleet, keys: str, mode: str) -> float:
    """bench/backend.py's ingest rate (measure) with one worker started through the runner above."""
    from bench import backend as ingest

    class Serve(ingest.Workers):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.cmd = [sys.executable, "-c", _RUNNER, mode, *self.cmd[3:]]  # [python -m backend] serve ...

    real = ingest.Workers
    ingest.Workers = Serve  # measure() starts its workers through this name
    try:
        return float(ingest.measure(broker_url, db, fleet, 1, keys))
    finally:
        ingest.Workers = real


def _sign_cost() -> float:
    """Backend: microseconds to sign one ack (CPython, cryptography)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from backend import acks

    key = ec.generate_private_key(ec.SECP256R1())
    n = 500
    t = time.perf_counter()
    for i in range(n):
        acks.sign(key, "bench-0", i + 1, "ab" * 32)
    return (time.perf_counter() - t) / n * 1e6


def run() -> list[Row]:
    from backend.keys import Keys
    from bench.backend import DEVICES, PER_DEVICE, Fleet
    from sim.broker import Broker

    rows: list[Row] = []
    d = _device()
    lo, hi = (d["ack_us"] * k / 1000 for k in SLOWER)
    b = "signed acks"
    rows += [
        Row(b, "device: ack checked and committed", d["ack_us"] / 1000, "ms",
            f"median of {d['n'] - 1}: receive path + ES256 verify + digest from the journal + journal.ack; "
            f"~{lo:.0f}-{hi:.0f} ms on an ESP32 (20-50x)"),
        Row(b, "device: of which ES256 verify", d["verify_us"] / 1000, "ms", "backend_verifier, pinned key parsed once"),
        Row(b, "device: of which the receive path", d["recv_us"] / 1000, "ms",
            "on_ack(): the claimed seq from the payload, the ack copied to its 512-byte slot"),
        Row(b, "device: digest of an older record from the journal", d["digest_us"] / 1000, "ms",
            f"headers of its segment walked on LittleFS ({RECORDS} records of ~1.2 KB pending); the newest is in RAM"),
        Row(b, "device: ack for the newest record", d["last_us"] / 1000, "ms", "digest from RAM"),
        Row(b, "device: allocated per ack (max)", d["alloc"], "B",
            f"garbage, mostly the big-int arithmetic of the verify (median {d['alloc_med']:,} B); 64-bit unix port"),
        Row(b, "device: forged ack (another key) refused", d["forged_us"] / 1000, "ms", "one verification, nothing trimmed"),
        Row(b, "device: stale ack dropped unverified", d["stale_us"] / 1000, "ms", "receive path only"),
        Row(b, "backend: ack signing", _sign_cost(), "us", "keys.sign_document (cryptography, RFC 6979), per ack"),
    ]
    signed, unsigned = [], []
    with tempfile.TemporaryDirectory() as tmp, Broker(prefer="mosquitto") as broker:
        keys = str(Path(tmp) / "backend-keys")
        Keys(keys).init()
        fleet = Fleet("bench", DEVICES, PER_DEVICE)
        for r in range(ROUNDS):
            for mode, out in (("signed", signed), ("unsigned", unsigned)):
                out.append(_rate(broker.url, str(Path(tmp) / f"{mode}{r}.db"), fleet, keys, mode))
        note = f"{DEVICES} devices x {PER_DEVICE} records, 1 worker, SQLite, {broker.kind}; median of {ROUNDS}"
    s, u = statistics.median(signed), statistics.median(unsigned)
    rows += [
        Row(b, "backend: ingest, signed acks", s, "records/s", note),
        Row(b, "backend: ingest, unsigned acks (before)", u, "records/s", f"same run, interleaved; signed/unsigned = {s / u:.2f}"),
    ]
    return rows
