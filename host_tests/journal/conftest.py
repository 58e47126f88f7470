from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

MP = Path(__file__).resolve().parent / "mp"

# Runs before every snippet: a fresh LittleFS on the power-cut RAM device mounted at /jflash.
PRELUDE = """
import os, vfs, hashlib, binascii
from powercut import PowerCutDevice
from journal import Journal, JournalFull
from jsweep import payload_for, signed_for, hash_hex

def fresh(blocks=64):
    d = PowerCutDevice(4096, blocks)
    vfs.VfsLfs2.mkfs(d)
    remount(d)
    return d

def remount(d):
    try:
        vfs.umount("/jflash")
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(d), "/jflash")

D = "/jflash/journal"
CFG = {"max_bytes": 64 * 1024, "segment_bytes": 8 * 1024}

def started(blocks=64, **cfg):
    # a fresh flash and a recovered journal on it (CFG unless given)
    d = fresh(blocks)
    j = Journal(D, **(cfg or CFG))
    j.recover()
    return d, j

def commit(j, sid=None):
    seq = j.next_seq()
    j.commit_record(seq, payload_for(seq), signed_for(seq), sid)
    return seq
"""


@pytest.fixture
def jrun(mpy):
    """Run MicroPython code with the journal test helpers loaded; returns the emitted value."""

    def run(code: str, timeout: float = 120, heap: str | None = None):
        return mpy.run(PRELUDE + textwrap.dedent(code), extra_path=[MP], timeout=timeout, heap=heap).value

    return run
