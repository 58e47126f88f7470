# MicroPython side of the host test harness: structured results as JSON lines on stdout.
import json
import sys


def emit(obj):
    sys.stdout.write("=> " + json.dumps(obj) + "\n")


def heap_limit():
    import gc

    gc.collect()
    return gc.mem_free() + gc.mem_alloc()
