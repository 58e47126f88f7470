# MicroPython side of bench/journal.py: timings and flash traffic on LittleFS over a RAM device.
import os
import time

import vfs
from journal_load import mount, payload_for, signed_for
from journal import Journal
from powercut import PowerCutDevice

MOUNT = "/jbench"
DIR = MOUNT + "/journal"


def _device(kb, block=4096):
    dev = PowerCutDevice(block, kb * 1024 // block)
    vfs.VfsLfs2.mkfs(dev)
    mount(dev, MOUNT)
    return dev


def _session(j, n, checkpoints):
    sid = "S%d" % n
    j.open_session(sid, {"wh": n * 1000, "token": "0123456789abcdef0123456789abcdef", "tariff": {"id": "T1", "ver": 7}})
    for c in range(checkpoints):
        j.checkpoint(sid, {"t": 1760000000 + c * 60, "wh": n * 1000 + c * 100, "cost": c * 37})
    seq = j.next_seq()
    j.commit_record(seq, payload_for(seq), signed_for(seq), sid)
    return seq


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def recovery(records, pending, flash_kb, max_bytes, segment_bytes=32 * 1024):
    """Build a journal of `records` records (all but the last `pending` acknowledged), then time recover()."""
    dev = _device(flash_kb)
    j = Journal(DIR, max_bytes=max_bytes, segment_bytes=segment_bytes)
    j.recover()
    for n in range(records):
        seq = j.next_seq()
        j.commit_record(seq, payload_for(seq), signed_for(seq))
        if seq % 50 == 0 and seq > pending:
            j.ack(seq - pending)
    if records > pending:
        j.ack(records - pending)
    j.open_session("open", {"wh": 1})
    j.checkpoint("open", {"wh": 2})
    j.close()
    times = []
    for _ in range(5):
        mount(dev, MOUNT)  # a fresh mount, as after a reboot
        read0 = dev.bytes_read
        t = time.ticks_us()
        j = Journal(DIR, max_bytes=max_bytes, segment_bytes=segment_bytes)
        r = j.recover()
        times.append(time.ticks_diff(time.ticks_us(), t))
        read = dev.bytes_read - read0
        j.close()
    vfs.umount(MOUNT)
    return {"us": _median(times), "segments": r.segments, "pending": r.pending, "journal_read": r.bytes_read,
            "flash_read": read, "next": r.next_seq}


def appends(records=200, checkpoints=3, hour_checkpoints=60):
    """Time per committed record and per checkpoint; flash writes per session (with its ack); then
    the erases of an hour-long session's checkpoints (one a minute)."""
    dev = _device(1024)
    j = Journal(DIR, max_bytes=512 * 1024, segment_bytes=32 * 1024)
    j.recover()
    rec_us = []
    ck_us = []
    w0, p0, e0 = dev.writes, dev.bytes_programmed, dev.erases
    for n in range(records):
        sid = "S%d" % n
        j.open_session(sid, {"wh": n * 1000, "token": "0123456789abcdef0123456789abcdef", "tariff": {"id": "T1", "ver": 7}})
        for c in range(checkpoints):
            t = time.ticks_us()
            j.checkpoint(sid, {"t": 1760000000 + c * 60, "wh": n * 1000 + c * 100, "cost": c * 37})
            ck_us.append(time.ticks_diff(time.ticks_us(), t))
        seq = j.next_seq()
        payload, signed = payload_for(seq), signed_for(seq)
        t = time.ticks_us()
        j.commit_record(seq, payload, signed, sid)
        rec_us.append(time.ticks_diff(time.ticks_us(), t))
        j.ack(seq)
    out = {
        "record_us": _median(rec_us),
        "checkpoint_us": _median(ck_us),
        "writes_per_session": (dev.writes - w0) * 1000 // records,  # thousandths
        "programmed_per_session": (dev.bytes_programmed - p0) // records,
        "erases_per_session": (dev.erases - e0) * 1000 // records,
        "block": dev.block_size,
    }
    e0, p0 = dev.erases, dev.bytes_programmed
    j.open_session("hour", {"wh": 1, "token": "0123456789abcdef0123456789abcdef", "tariff": {"id": "T1", "ver": 7}})
    for c in range(hour_checkpoints):
        j.checkpoint("hour", {"t": 1760000000 + c * 60, "wh": 1 + c * 183, "cost": c * 71})
    out["hour_checkpoint_erases"] = dev.erases - e0
    out["hour_checkpoint_programmed"] = dev.bytes_programmed - p0
    j.close()
    vfs.umount(MOUNT)
    return out


def append_vs_size(small=10, large=2000, probe=50):
    """Append time with `small` and with `large` unacknowledged records already in the journal."""
    out = {}
    for n in (small, large):
        dev = _device(8192)
        j = Journal(DIR, max_bytes=7 * 1024 * 1024, segment_bytes=32 * 1024)
        j.recover()
        for _ in range(n):
            seq = j.next_seq()
            j.commit_record(seq, payload_for(seq), signed_for(seq))
        us = []
        for _ in range(probe):
            seq = j.next_seq()
            p, s = payload_for(seq), signed_for(seq)
            t = time.ticks_us()
            j.commit_record(seq, p, s)
            us.append(time.ticks_diff(time.ticks_us(), t))
        out[str(n)] = _median(us)
        j.close()
        vfs.umount(MOUNT)
    return out


def capacity(max_bytes=1024 * 1024, checkpoints=2):
    """Sessions (the charger's records, JWS mean about 2 KB) that fit in `max_bytes` before
    sessions are refused; with the flash LittleFS has in use then (blocks, metadata included)."""
    dev = _device(max_bytes // 1024 + 256)
    free0 = os.statvfs(MOUNT)[3]
    j = Journal(DIR, max_bytes=max_bytes, segment_bytes=32 * 1024)
    j.recover()
    n = 0
    signed = 0
    while j.can_start_session():
        seq = _session(j, n, checkpoints)
        signed += len(signed_for(seq))
        n += 1
    used = j.usage()[0]
    flash = (free0 - os.statvfs(MOUNT)[3]) * dev.block_size
    j.close()
    vfs.umount(MOUNT)
    return {"sessions": n, "used": used, "signed_bytes": signed, "flash": flash}


def read_cost(records=40, piece=512):
    """A compact record's JWS read back as the uplink sends it (crec.Reader, readinto in `piece`
    bytes): median time and heap garbage per record, read from the journal on the RAM flash
    device, and from a copy of its segment on the unix port's own filesystem (without the Python
    block device's garbage: a board's flash driver is C and makes none)."""
    import gc

    from journal import crec

    _device(1024)
    j = Journal(DIR, max_bytes=512 * 1024, segment_bytes=64 * 1024)
    j.recover()
    chars = 0
    for n in range(records):
        chars += len(signed_for(_session(j, n, 0)))
    on_flash = [r for _, r in j.pending(on_flash=True)]
    native = {}
    for r in on_flash:
        if r.path not in native:
            native[r.path] = "/tmp/jbench-%d.seg" % len(native)
            with open(r.path, "rb") as src, open(native[r.path], "wb") as dst:
                dst.write(src.read())
    copies = [crec.Reader(native[r.path], r._pos - 6, r._ends[2] - r._pos + 6) for r in on_flash]
    buf = memoryview(bytearray(piece))

    def read_all(readers):
        us, garbage = [], []
        for r in readers:
            gc.collect()
            gc.disable()
            free = gc.mem_free()
            t0 = time.ticks_us()
            while r.readinto(buf):
                pass
            us.append(time.ticks_diff(time.ticks_us(), t0))
            garbage.append(free - gc.mem_free())
            gc.enable()
        return {"us": _median(us), "garbage": _median(garbage)}

    out = {"flash": read_all(on_flash), "native": read_all(copies), "chars": chars // records}
    j.close()
    vfs.umount(MOUNT)
    for p in native.values():
        os.remove(p)
    return out
