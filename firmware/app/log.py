# Log lines to the console and a small rotating file on flash; the last errors are kept
# in RAM for the status message and `flash.py status`.
import sys

from hal import clock

_MAX_FILE = 16 * 1024
_KEEP_ERRORS = 8

_path = None
_errors = []


def attach(path):
    """Also append log lines to path (rotated to path + '.1' at 16 KiB)."""
    global _path
    _path = path


def _write(level, tag, msg):
    line = "%d %s %s: %s" % (clock.monotonic_ms(), level, tag, msg)
    print(line)
    if level in ("E", "W"):
        _errors.append(line)
        if len(_errors) > _KEEP_ERRORS:
            _errors.pop(0)
    if _path is None:
        return
    try:
        import os

        try:
            if os.stat(_path)[6] > _MAX_FILE:
                os.rename(_path, _path + ".1")
        except OSError:
            pass
        with open(_path, "a") as f:
            f.write(line + "\n")
    except OSError:
        pass  # a full or broken flash must not stop the charger; the console still has it


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


oom_count = 0


def exception(tag, exc):
    import io

    buf = io.StringIO()
    sys.print_exception(exc, buf)
    _write("E", tag, "%s: %s" % (type(exc).__name__, buf.getvalue().strip().replace("\n", " | ")))


def last_errors():
    return list(_errors)
