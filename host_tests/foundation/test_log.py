"""app.log under MicroPython on the host board's LittleFS: info lines never touch the flash,
warnings and errors are batched and rate-limited, the RAM ring keeps the recent lines."""
import re

from sim import mpy

# The device's flash (boards/host: LittleFS in ROOT/flash.img) with its block writes counted
# (EVC_FLASH_STATS), and a clock the test moves by hand.
PRELUDE = """
import os
import board
from app import log

ROOT = board.mount_flash()
PATH = ROOT + "/log.txt"


class Clock:
    t = 1000

    def monotonic_ms(self):
        return self.t


clk = log.clock = Clock()


def writes():
    with open(os.getenv("EVC_FLASH_STATS")) as f:
        return int(f.read().split()[0])


def on_flash(path=PATH):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return None


def at(ms):
    clk.t = ms


log.attach(PATH)
"""


def run(tmp_path, code, **env):
    full = {"EVC_ROOT": str(tmp_path / "dev"), "EVC_FLASH_STATS": str(tmp_path / "flash.stats"), **env}
    return mpy.run(PRELUDE + code, env=full)


def test_info_lines_never_touch_the_flash(tmp_path):
    res = run(tmp_path, """
w0 = writes()
for i in range(300):  # 50 minutes of status lines, every 10 s
    at(1000 + i * 10000)
    log.info("status", "dev=x state=idle seq=%d" % i)
log.flush()
emit([writes() - w0, on_flash(), len(log.recent())])
""")
    grew, text, ring = res.value
    assert grew == 0 and text is None
    assert res.stdout.count("I status: dev=x state=idle") == 300  # the console still has every line
    assert 10 < ring < 300


def test_warnings_are_batched_and_written_within_the_flush_period(tmp_path):
    res = run(tmp_path, """
w0 = writes()
for i in range(5):
    at(1000 + i * 1000)
    log.warn("meter", "no answer %d" % i)
got = [writes() - w0, on_flash()]
at(1000 + log._FLUSH_MS - 1)
log.info("status", "tick")  # every log call checks the deadline: not yet
got += [writes() - w0, on_flash()]
at(1000 + log._FLUSH_MS)
log.info("status", "tick")
got += [writes() - w0, on_flash()]
emit(got)
""")
    (w1, f1, w2, f2, w3, f3) = res.value
    assert (w1, f1, w2, f2) == (0, None, 0, None)
    assert w3 > 0 and [line.split(" ", 1)[1] for line in f3] == ["W meter: no answer %d" % i for i in range(5)]


def test_a_full_batch_is_written_at_once_in_one_append(tmp_path):
    res = run(tmp_path, """
per_line = []
n = 0
while on_flash() is None:
    n += 1
    at(1000 + n)
    before = writes()
    log.warn("uplink", "offline: %d %s" % (n, "x" * 60))
    per_line.append(writes() - before)
emit([n, len(on_flash()), per_line, log._batch_len])
""")
    n, written, per_line, pending = res.value
    assert n > 5 and written == n - 1 and pending > 0  # the line that did not fit waits in the next batch
    assert per_line[:-1] == [0] * (n - 1) and per_line[-1] > 0


def test_errors_reach_the_flash_at_once_after_a_quiet_spell(tmp_path):
    res = run(tmp_path, """
got = []
at(5000)
log.error("meter", "first")  # nothing written since boot: at once
got.append(on_flash())
at(10000)
log.error("meter", "second")  # 5 s after a write: waits for the quiet period
got.append(on_flash())
at(5000 + log._QUIET_MS - 1)
log.info("status", "tick")
got.append(len(on_flash()))
at(5000 + log._QUIET_MS)
log.info("status", "tick")
got.append(on_flash())
at(5000 + 10 * log._QUIET_MS)
log.error("meter", "third")  # quiet again
got.append(len(on_flash()))
emit(got)
""")
    first, second, before_quiet, after_quiet, third = res.value
    assert first == ["5000 E meter: first"] and second == first and before_quiet == 1
    assert after_quiet == ["5000 E meter: first", "10000 E meter: second"] and third == 3


def test_a_flood_is_rate_limited_with_a_summary_line(tmp_path):
    res = run(tmp_path, """
w0 = writes()
for i in range(500):  # a warning every 100 ms for 50 s
    at(1000 + i * 100)
    log.warn("nfc", "reader fault #%d" % i)
log.flush()
first = on_flash()
w1 = writes() - w0
at(1000 + log._RATE_MS + 1)  # the window is over: its summary, then a fresh window
log.warn("nfc", "reader fault #500")
log.flush()
emit([first, w1, on_flash(), log._RATE_LINES])
""")
    first, w1, second, k = res.value
    assert len(first) == k + 1 and first[k - 1].endswith("reader fault #%d" % (k - 1))
    assert "W log: %d lines suppressed" % (500 - k) in first[-1]
    assert second[: k + 1] == first and second[-1].endswith("reader fault #500") and len(second) == k + 2
    assert w1 < 200  # 30 lines in a few appends (one append per line: ~17 block writes each)
    assert len(re.findall(r"^\d+ W nfc: reader fault #", res.stdout, re.M)) == 501  # the console got every one


def test_the_ring_keeps_the_last_lines_in_order_and_wraps(tmp_path):
    res = run(tmp_path, """
import random
random.seed(7)
R = log._RING_BYTES
bad = []
sent = []
total = 0
for i in range(600):
    size = random.choice((0, 5, 20, 60, 150, 400, R // 2, R - 40, R + 300))
    msg = "%d:" % i + "ab" * (size // 2)
    log.info("t", msg)
    line = "%d I t: %s" % (clk.t, msg)
    sent.append(line[:R - 1])  # a line longer than the ring keeps its head
    total += len(sent[-1]) + 1
    got = log.recent()
    kept = sum(len(x) + 1 for x in got)
    longest = max(len(x) + 1 for x in sent[-len(got) - 1:])
    if got != sent[-len(got):] or kept > R or kept < min(total, R - 2 * longest):
        bad.append([i, len(got), kept])
        break
for i in range(3):
    log.info("t", "short %d" % i)
emit([bad, log.recent(3) == ["%d I t: short %d" % (clk.t, i) for i in range(3)], log.recent(0)])
""")
    bad, last3, none = res.value
    assert bad == [] and last3 and none == []


def test_the_ring_before_it_wraps_and_utf8_cut(tmp_path):
    res = run(tmp_path, """
log.info("a", "one")
log.warn("b", "two")
log.error("c", "three")
small = log.recent()
log.info("u", "é" * log._RING_BYTES)  # longer than the ring, cut at a character boundary
big = log.recent()
log.info("z", "after")
got = [small, len(big), len(big[0].encode()) < log._RING_BYTES, big[0][-1], log.recent()[-1]]
for i in range(100):  # 64 bytes a line: the ring holds exactly _RING_BYTES // 64 of them, wrapped on a line boundary
    log.info("e", "%04d" % i + "x" * 49)  # 63 bytes and a newline
got.append([log._RING_BYTES // 64, len(log.recent()), log.recent()[0][10:14]])
emit(got)
""")
    small, nbig, fits, tail, last, (want, kept, oldest) = res.value
    assert kept == want and oldest == "%04d" % (100 - want)
    assert small == ["1000 I a: one", "1000 W b: two", "1000 E c: three"]
    assert nbig == 1 and fits and tail == "é" and last == "1000 I z: after"


def test_logging_allocates_nothing_beyond_the_line(tmp_path):
    res = run(tmp_path, """
import micropython
lines = ["%d W x: %s" % (i, "y" * (i * 37 % 300)) for i in range(200)]
views = [memoryview(s) for s in lines]
failed = 0
for i, raw in enumerate(views):
    if log._batch_len + len(raw) + 1 > log._BATCH_BYTES:
        log._batch_len = 0  # (the flush itself may allocate: not measured here)
    micropython.heap_lock()
    try:
        log._ring_put(raw)  # wraps many times
        log._batch_put(raw, 1000 + i)
    except MemoryError:
        failed += 1
    micropython.heap_unlock()
emit([failed, log.recent(1) == lines[-1:]])
""")
    assert res.value == [0, True]


def test_rotation_and_a_broken_or_full_flash(tmp_path):
    res = run(tmp_path, """
for i in range(400):
    at(1000 + i * log._RATE_MS)  # a window each: no rate limit
    log.error("x", "error %d %s" % (i, "z" * 80))
rotated = on_flash(PATH + ".1")
cur = on_flash()
size = os.stat(PATH)[6]

log.attach(ROOT + "/no/such/dir/log.txt")  # a broken path: counted, never raised
log.error("x", "lost")
log.flush()
broken = log.flash_failures

log.attach(PATH)
with open(ROOT + "/fill", "wb") as f:  # fill the filesystem
    for chunk in (4096, 512, 64, 8, 1):
        try:
            while True:
                f.write(bytes(chunk))
                f.flush()
        except OSError:
            pass
for i in range(100):  # ~10 KiB more than the block left free
    at(clk.t + log._RATE_MS)
    log.error("x", "on a full flash %d %s" % (i, "z" * 80))
log.flush()
emit([len(rotated), rotated[-1], cur[0], size, broken, log.flash_failures, log.last_errors()[-1]])
""", EVC_FLASH_KB="128")
    n_rot, last_rot, first_cur, size, broken, failures, last_err = res.value
    assert n_rot > 100 and first_cur.split()[-2] == str(int(last_rot.split()[-2]) + 1)  # continuous
    assert size <= 16 * 1024 + 200
    assert broken == 1 and failures > broken
    assert "on a full flash 99" in last_err


def test_public_functions_keep_working(tmp_path):
    res = run(tmp_path, """
try:
    raise ValueError("bad value")
except ValueError as exc:
    log.exception("sup", exc)
log.out_of_memory("sup", "meter")
log.flush()
emit([log.last_errors(), log.oom_count, on_flash()])
""")
    errors, ooms, text = res.value
    assert errors[-1].startswith("1000 E sup: ValueError: ") and errors[-1].endswith("ValueError: bad value")
    assert ooms == 1
    assert text == errors
