# MicroPython side: the record payloads a journal workload commits, and LittleFS mounting, shared
# by the journal power-cut tests and bench/journal.py.
import vfs


def signed_for(seq):
    n = 1500 + (seq * 377) % 1000
    unit = ("%06d|" % seq).encode()
    return (unit * (n // len(unit) + 1))[:n]


def payload_for(seq):
    return ('{"seq":%d,"v":1}' % seq).encode()


def mount(dev, at):
    """Mount LittleFS from `dev` at `at`, replacing whatever was mounted there (a reboot)."""
    try:
        vfs.umount(at)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), at)
