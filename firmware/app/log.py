# Log lines. Every line goes to the console and to a RAM ring of recent lines (all levels,
# recent()); warnings and errors also go to a small rotating file on flash, batched and
# rate-limited, so that logging costs next to no flash wear and no event-loop stalls (each
# append on LittleFS copies the file's last block and commits metadata: ~17 block writes and
# an erase on the host board, whatever the size appended; bench/flashwrites.py).
# The last errors are kept in RAM for the status message and `flash.py status`.
#
# Flash (only after attach()): W and E lines collect in a RAM batch that is appended to the
# file in one open/write/close when
#   - the batch is full (_BATCH_BYTES),
#   - an E line is logged and nothing was written for _QUIET_MS (a lone error reaches the
#     flash at once; in a burst, the next write comes at most _QUIET_MS after the last),
#   - the oldest line in the batch is _FLUSH_MS old,
#   - flush() is called (before a deliberate stop or reset; the tools, before reading the file).
# The deadlines are checked on every log call (the status line comes every 10 s), so no timer
# or task is needed. At most _RATE_LINES lines per _RATE_MS window enter the batch; the rest
# are counted and written as one "N lines suppressed" line when the window ends. The file is
# rotated to path + ".1" at _MAX_FILE. A full or broken flash drops the batch (counted in
# flash_failures), never the charger; the console and the ring still have every line.
#
# RAM: the ring and the batch are bytearrays allocated at import (while the heap is whole);
# a log call allocates only the formatted line and a memoryview of it.
import os
import sys

from hal import clock

_MAX_FILE = 16 * 1024
_KEEP_ERRORS = 8
_RING_BYTES = 1024  # recent lines of every level (~12; W/E lines also reach the flash log)
_BATCH_BYTES = 1024  # W/E lines waiting for the flash
_FLUSH_MS = 15 * 60 * 1000  # a batched line reaches the flash within this (device time)
_QUIET_MS = 30 * 1000  # an error is written at once if nothing was written for this long
_RATE_LINES = 30  # lines to the flash per window ...
_RATE_MS = 10 * 60 * 1000  # ... of this length; the rest are only counted
_NL = 10

_path = None
_errors = []
oom_count = 0
flash_failures = 0  # batches lost to a full or broken flash

_ring = bytearray(_RING_BYTES)
_ring_pos = 0  # next byte to write; [0, _ring_pos) holds the newest lines
_ring_end = 0  # [_ring_pos, _ring_end) holds older lines (from before the last wrap)
_ring_cut = False  # the older part starts inside a line (its head was overwritten)

_batch = bytearray(_BATCH_BYTES)
_batch_mv = memoryview(_batch)
_batch_len = 0
_due = 0  # flush the batch at this monotonic ms (meaningful while _batch_len)
_last_flush = None  # monotonic ms of the last write to the file; None: none since boot
_win_start = 0
_win_lines = 0
_suppressed = 0


def attach(path):
    """Also append warnings and errors to path (rotated to path + '.1' at 16 KiB)."""
    global _path
    if _path is not None and path != _path:
        flush()
    _path = path


def _fit(raw, limit):
    # bytes of raw (a memoryview of a str) that fit in limit without splitting a UTF-8 character
    n = len(raw)
    if n <= limit:
        return n
    n = limit
    while n and raw[n] & 0xC0 == 0x80:
        n -= 1
    return n


def _ring_put(raw):
    global _ring_pos, _ring_end, _ring_cut
    n = _fit(raw, _RING_BYTES - 1)
    if n < len(raw):
        raw = raw[:n]  # longer than the ring: its head (time, level, tag) is kept
    p = _ring_pos
    if p + n + 1 > _RING_BYTES:  # wrap; the older part now ends where the newest one did
        _ring_end = p
        p = 0
    end = p + n + 1
    _ring_cut = end < _ring_end and _ring[end - 1] != _NL  # read before it is overwritten
    _ring[p:p + n] = raw
    _ring[p + n] = _NL
    _ring_pos = end


def recent(limit=None):
    """The most recent lines (every level) still in the RAM ring, oldest first."""
    older = bytes(_ring[_ring_pos:_ring_end]) if _ring_pos < _ring_end else b""
    if older and _ring_cut:
        older = older[older.find(b"\n") + 1:]
    text = str(older + bytes(_ring[:_ring_pos]), "utf-8")
    lines = text.split("\n")[:-1] if text else []
    if limit is not None:
        lines = lines[-limit:] if limit > 0 else []
    return lines


def _batch_put(raw, now):
    global _batch_len, _due
    n = _fit(raw, _BATCH_BYTES - 1)
    if _batch_len + n + 1 > _BATCH_BYTES:
        _flush(now)
    if not _batch_len:
        _due = now + _FLUSH_MS
    if n < len(raw):
        raw = raw[:n]
    _batch[_batch_len:_batch_len + n] = raw
    _batch[_batch_len + n] = _NL
    _batch_len += n + 1


def _summary(now):
    # the rate limit's "N lines suppressed" line, if any were
    global _suppressed
    if _suppressed:
        line = "%d W log: %d lines suppressed (flash log limit: %d lines per %d s)" % (
            now, _suppressed, _RATE_LINES, _RATE_MS // 1000)
        _suppressed = 0
        print(line)
        raw = memoryview(line)
        _ring_put(raw)
        _batch_put(raw, now)


def _to_flash(raw, now, is_error):
    global _win_start, _win_lines, _suppressed, _due
    if now - _win_start >= _RATE_MS:
        _summary(now)
        _win_start = now
        _win_lines = 0
    if _win_lines >= _RATE_LINES:
        _suppressed += 1
        return
    _win_lines += 1
    _batch_put(raw, now)
    if is_error:
        due = now if _last_flush is None else max(now, _last_flush + _QUIET_MS)
        if due < _due:
            _due = due


def _flush(now):
    global _batch_len, _last_flush, flash_failures
    n = _batch_len
    if not n or _path is None:
        return
    _batch_len = 0
    _last_flush = now
    try:
        try:
            if os.stat(_path)[6] > _MAX_FILE:
                os.rename(_path, _path + ".1")
        except OSError:
            pass
        with open(_path, "ab") as f:
            f.write(_batch_mv[:n])
    except (OSError, MemoryError):
        flash_failures += 1  # a full or broken flash must not stop the charger


def flush():
    """Write the batched warnings and errors (and a pending suppressed count) to the file now."""
    if _path is None:
        return
    now = clock.monotonic_ms()
    _summary(now)
    _flush(now)


def _write(level, tag, msg):
    now = clock.monotonic_ms()
    line = "%d %s %s: %s" % (now, level, tag, msg)
    print(line)
    raw = memoryview(line)
    _ring_put(raw)
    if level == "E" or level == "W":
        _errors.append(line)
        if len(_errors) > _KEEP_ERRORS:
            _errors.pop(0)
        if _path is not None:
            _to_flash(raw, now, level == "E")
    if _path is not None:
        if _suppressed and now - _win_start >= _RATE_MS:
            _summary(now)  # the window ended quietly; the next W/E line starts a new one
        if _batch_len and now >= _due:
            _flush(now)


def info(tag, msg):
    _write("I", tag, msg)


def warn(tag, msg):
    _write("W", tag, msg)


def error(tag, msg):
    _write("E", tag, msg)


def out_of_memory(tag, where):
    """A MemoryError, logged without building strings first: free the garbage, then print fixed
    text (formatting a traceback needs the memory that just ran out). Counted, not kept in full."""
    global oom_count
    import gc

    gc.collect()
    oom_count += 1
    print(clock.monotonic_ms(), "E", tag + ":", "MemoryError in", where)


def exception(tag, exc):
    import io

    buf = io.StringIO()
    sys.print_exception(exc, buf)
    _write("E", tag, "%s: %s" % (type(exc).__name__, buf.getvalue().strip().replace("\n", " | ")))


def last_errors():
    return list(_errors)
