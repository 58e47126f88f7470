"""Session journal on LittleFS (MicroPython unix port, RAM-backed flash that counts its traffic).

Append time per record, append time with a small and a large journal, boot recovery time with
100 and 10,000 records in the journal (both in one run, with their ratio), flash traffic per
session, an hour of checkpoints, and the sessions that fit in 1 MB. Records are shaped like the
charger's (sim/mp/journal_load.py: JWS of 1.5-2.5 KB, mean about 2 KB, hashes and signatures
incompressible).

Before/after in one run: the flash figures are measured with this tree's journal and with the
journal as it was before the compact forms (#23, BEFORE_REV), taken from git into a temporary
folder that shadows firmware/journal; without git history the before column is left out.
"""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from bench.common import Row, mpy

TITLE = "journal: crash-safe session journal on LittleFS"
BEFORE_REV = "0dcc2a4"  # the last journal that kept records as sent and sessions in the segments
READ_BEFORE_REV = "0f74c28"  # the last compact-record reader that built its pieces as new objects

_MP = Path(__file__).resolve().parent / "mp"
_REPO = Path(__file__).resolve().parent.parent

_CODE = """
import jbench
emit({
    "appends": jbench.appends(),
    "size": jbench.append_vs_size(10, 2000),
    "capacity": jbench.capacity(),
    "r100": jbench.recovery(100, 100, 1024, 512 * 1024),
    "r10k_acked": jbench.recovery(10000, 100, 1024, 512 * 1024),
    "r10k_pending": jbench.recovery(10000, 10000, 16384, 14 * 1024 * 1024),
    "read": jbench.read_cost(),
})
"""
_READ_BEFORE = """
import jbench
emit(jbench.read_cost())
"""
_BEFORE = """
import jbench
emit({"appends": jbench.appends(), "capacity": jbench.capacity()})
"""


def _ratio(a: int, b: int) -> float:
    return b / a if a else 0.0


def _before(tmp: Path, rev: str = BEFORE_REV, code: str = _BEFORE,
            names: tuple[str, ...] = ("__init__.py", "frame.py", "journal.py", "recovery.py")) -> dict | None:
    """code run with firmware/journal as it was at rev (its files taken from git into tmp)."""
    pkg = tmp / "journal"
    pkg.mkdir()
    for name in names:
        got = subprocess.run(["git", "show", f"{rev}:firmware/journal/{name}"], cwd=_REPO,
                             capture_output=True)
        if got.returncode != 0:
            return None
        (pkg / name).write_bytes(got.stdout)
    return mpy.run(code, heap="160M", timeout=600, extra_path=[tmp, _MP]).value


def run() -> list[Row]:
    r = mpy.run(_CODE, heap="160M", timeout=900, extra_path=[_MP]).value
    with tempfile.TemporaryDirectory(prefix="evc-bench-journal-") as tmp:
        old = _before(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="evc-bench-journal-") as tmp:
        old_read = _before(Path(tmp), READ_BEFORE_REV, _READ_BEFORE,
                           ("__init__.py", "crec.py", "dense.py", "frame.py", "journal.py", "recovery.py"))
    a, size, cap = r["appends"], r["size"], r["capacity"]
    r100, r10a, r10p = r["r100"], r["r10k_acked"], r["r10k_pending"]
    oa, oc = (old["appends"], old["capacity"]) if old else (None, None)

    def was(fmt: str, *keys: str, scale: int = 1) -> str:
        if old is None:
            return "before: no git history to measure it"
        src = {"a": oa, "c": oc}
        values = (src[k[0]][k[2:]] / scale if scale != 1 else src[k[0]][k[2:]] for k in keys)
        return f"before ({BEFORE_REV}, same run): " + fmt.format(*values)

    b = "journal"
    block = a["block"]
    return [
        Row(b, "append: commit a 2 KB record", a["record_us"] / 1000, "ms",
            "median, synced to LittleFS; kept compact: header and payload in dense form, raw signature; "
            + was("{:.3f} ms", "a:record_us", scale=1000)),
        Row(b, "append: checkpoint", a["checkpoint_us"] / 1000, "ms",
            "median; the session's slot file cK replaced whole; " + was("{:.3f} ms", "a:checkpoint_us", scale=1000)),
        Row(b, "append with 10 unacked records", size["10"] / 1000, "ms", "median of 50"),
        Row(b, "append with 2,000 unacked records", size["2000"] / 1000, "ms",
            f"x{_ratio(size['10'], size['2000']):.2f} of the small journal"),
        Row(b, "recovery: 100 records", r100["us"] / 1000, "ms",
            f"{r100['segments']} segments, {r100['journal_read']:,} B of journal read"),
        Row(b, "recovery: 10,000 records (last 100 unacked)", r10a["us"] / 1000, "ms",
            f"x{_ratio(r100['us'], r10a['us']):.2f} of 100 records; {r10a['journal_read']:,} B of journal read"),
        Row(b, "recovery: 10,000 records all unacked", r10p["us"] / 1000, "ms",
            f"x{_ratio(r100['us'], r10p['us']):.1f} of 100 records; {r10p['segments']} segments listed, "
            f"{r10p['journal_read']:,} B of journal read, {r10p['flash_read']:,} B of flash (directory)"),
        Row(b, "flash programmed per session", a["programmed_per_session"], "B",
            "open + 3 checkpoints + record + ack; LittleFS copy-on-write of the segment's last block; "
            + was("{:,} B", "a:programmed_per_session")),
        Row(b, "flash erased per session", a["erases_per_session"] * block // 1000, "B",
            f"{a['erases_per_session'] / 1000:.2f} erases of {block} B blocks (goal <= 2); "
            + was("{:.2f} erases", "a:erases_per_session", scale=1000)),
        Row(b, "flash erased by an hour of checkpoints", a["hour_checkpoint_erases"], "erases",
            f"one open session, 60 checkpoints a minute apart (journal.checkpoint_s 60), "
            f"{a['hour_checkpoint_programmed']:,} B programmed; " + was("{} erases", "a:hour_checkpoint_erases")),
        Row(b, "block-device writes per session", a["writes_per_session"] / 1000, "",
            "program calls (32 B program unit) + erases; " + was("{:.1f}", "a:writes_per_session", scale=1000)),
        Row(b, "sessions in 1 MB", cap["sessions"], "",
            f"journal max_bytes 1 MB, 2 checkpoints each (goal >= 1,000): {cap['used']:,} B of segments for "
            f"{cap['signed_bytes']:,} B of JWS records; LittleFS has {cap['flash']:,} B of flash in use; "
            + was("{:,} sessions, {:,} B of flash", "c:sessions", "c:flash")),
        *_read_rows(r["read"], old_read),
    ]


def _read_rows(now: dict, old: dict | None) -> list[Row]:
    """What the uplink pays to send a compact record: its JWS rebuilt by crec.Reader in 512-byte
    readinto pieces (median of 40 records), now and at READ_BEFORE_REV in the same run."""
    b = "journal"

    def was(where: str) -> str:
        if old is None:
            return "before: no git history to measure it"
        o = old[where]
        return f"before ({READ_BEFORE_REV}, same run): {o['garbage']:,} B, {o['us']} us"

    n = now["chars"]
    return [
        Row(b, "read: heap garbage per compact record sent, native file", now["native"]["garbage"], "B",
            f"{n:,}-character JWS, {now['native']['us']} us; the unix port's own filesystem: what the reader "
            f"itself makes; " + was("native")),
        Row(b, "read: heap garbage per compact record sent, RAM flash device", now["flash"]["garbage"], "B",
            f"{now['flash']['us']} us; LittleFS over the Python block device (sim/mp/powercut.py), whose "
            f"calls make garbage a board's C flash driver does not; " + was("flash")),
    ]
