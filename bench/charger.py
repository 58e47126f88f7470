"""Card tap to decision: latency and RAM with local lists of 100, 10,000 and 50,000 cards."""
from __future__ import annotations

import tempfile

from bench.common import Row, mpy

TITLE = "Authorization: tap to decision vs list size (MicroPython unix port, LittleFS)"

BUILD = """
import board, hashlib, binascii, gc
from billing.authlist import AuthList
root = board.mount_flash()
N = {n}
toks = sorted(binascii.hexlify(hashlib.sha256(b"card%d" % i).digest()[:16]).decode() for i in range(N))
al = AuthList(root + "/auth")
per = 1000


def parts():
    for p in range((N + per - 1) // per):
        yield [dict(token=t, status="accepted", contract="C%d" % (i % 5), balance=(5000 if i % 3 == 0 else None))
               for i, t in enumerate(toks[p * per:(p + 1) * per])]


al.install(1, True, parts())
emit(al.count)
"""

MEASURE = """
import board, hashlib, binascii, gc, time, asyncio
gc.collect()
base = gc.mem_alloc()
from billing.authlist import AuthList
from billing.authcache import AuthCache
from billing.prepaid import Ledger
from billing.authorize import Authorizer
root = board.mount_flash()
cfg = dict(master_tokens=[], unknown="reject", offline_max_wh=0, offline_max_cost=0, prepaid_min=100)
auth = Authorizer(AuthList(root + "/auth"), AuthCache(root + "/cache.bin", 256), Ledger(root + "/spent.bin"), cfg)
gc.collect()
resident = gc.mem_alloc() - base
def tokens(prefix, stop, step):
    for i in range(0, stop, step):
        yield binascii.hexlify(hashlib.sha256(b"%s%d" % (prefix, i)).digest()[:16]).decode()
async def timed(tokens):
    us, garbage = [], []
    for t in tokens:
        gc.collect()
        a0 = gc.mem_alloc()
        t0 = time.ticks_us()
        d = await auth.decide(t, 1800000000)
        us.append(time.ticks_diff(time.ticks_us(), t0))
        garbage.append(gc.mem_alloc() - a0)
    us.sort()
    garbage.sort()
    return us[len(us) // 2], us[len(us) * 95 // 100], garbage[-1]
hit = asyncio.run(timed(tokens(b"card", {n}, max(1, {n} // 200))))
nohit = asyncio.run(timed(tokens(b"nope", 100, 1)))
emit(dict(resident=resident, hit=hit, miss=nohit))
"""


def run() -> list[Row]:
    rows: list[Row] = []
    for n in (100, 10_000, 50_000):
        with tempfile.TemporaryDirectory() as root:
            env = {"EVC_ROOT": root, "EVC_FLASH_KB": "4096"}
            count = mpy.run(BUILD.format(n=n), heap="64m", env=env, timeout=900).value
            got = mpy.run(MEASURE.format(n=n), heap="160k", env=env).value
        (h50, h95, hg), (m50, _, mg) = got["hit"], got["miss"]
        rows += [
            Row("tap to decision", f"{count:,} cards: known card, median / p95", f"{h50 / 1000:.2f} / {h95 / 1000:.2f}", "ms",
                "list hit incl. prepaid ledger; heap 160k"),
            Row("tap to decision", f"{count:,} cards: unknown card, median", m50 / 1000, "ms", "list miss + cache scan (256 slots)"),
            Row("tap to decision", f"{count:,} cards: heap per decision (max)", max(hg, mg), "bytes", "garbage allocated by one decision"),
            Row("tap to decision", f"{count:,} cards: resident heap of list+cache+ledger", got["resident"], "bytes",
                "RAM held between taps (incl. module code)"),
        ]
    return rows
