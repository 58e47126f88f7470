"""Session journal on LittleFS (MicroPython unix port, RAM-backed flash that counts its traffic).

Append time per record, append time with a small and a large journal, boot recovery time with
100 and 10,000 records in the journal (both in one run, with their ratio), flash traffic per
session and the sessions that fit in 1 MB. Records are 1.5-2.5 KB (mean 2 KB), as a JWS with an
OCMF string inside.
"""
from __future__ import annotations

from pathlib import Path

from bench.common import Row, mpy

TITLE = "journal: crash-safe session journal on LittleFS"

_MP = Path(__file__).resolve().parent / "mp"

_CODE = """
import jbench
emit({
    "appends": jbench.appends(),
    "size": jbench.append_vs_size(10, 2000),
    "capacity": jbench.capacity(),
    "r100": jbench.recovery(100, 100, 1024, 512 * 1024),
    "r10k_acked": jbench.recovery(10000, 100, 1024, 512 * 1024),
    "r10k_pending": jbench.recovery(10000, 10000, 32768, 30 * 1024 * 1024),
})
"""


def _ratio(a: int, b: int) -> float:
    return b / a if a else 0.0


def run() -> list[Row]:
    r = mpy.run(_CODE, heap="160M", timeout=600, extra_path=[_MP]).value
    a, size, cap = r["appends"], r["size"], r["capacity"]
    r100, r10a, r10p = r["r100"], r["r10k_acked"], r["r10k_pending"]
    b = "journal"
    return [
        Row(b, "append: commit a 2 KB record", a["record_us"] / 1000, "ms", "median, synced to LittleFS"),
        Row(b, "append: checkpoint", a["checkpoint_us"] / 1000, "ms", "median"),
        Row(b, "append with 10 unacked records", size["10"] / 1000, "ms", "median of 50"),
        Row(b, "append with 2,000 unacked records", size["2000"] / 1000, "ms",
            f"x{_ratio(size['10'], size['2000']):.2f} of the small journal"),
        Row(b, "recovery: 100 records", r100["us"] / 1000, "ms",
            f"{r100['segments']} segments, {r100['journal_read']:,} B of journal read"),
        Row(b, "recovery: 10,000 records (last 100 unacked)", r10a["us"] / 1000, "ms",
            f"x{_ratio(r100['us'], r10a['us']):.2f} of 100 records; {r10a['journal_read']:,} B of journal read"),
        Row(b, "recovery: 10,000 records all unacked (22 MB)", r10p["us"] / 1000, "ms",
            f"x{_ratio(r100['us'], r10p['us']):.1f} of 100 records; {r10p['segments']} segments listed, "
            f"{r10p['journal_read']:,} B of journal read, {r10p['flash_read']:,} B of flash (directory)"),
        Row(b, "flash programmed per session", a["programmed_per_session"], "B",
            "open + 3 checkpoints + 2 KB record + ack; LittleFS copy-on-write of the last block"),
        Row(b, "flash erased per session", a["erases_per_session"] * a["block"] // 1000, "B",
            f"{a['erases_per_session'] / 1000:.2f} erases of {a['block']} B blocks"),
        Row(b, "block-device writes per session", a["writes_per_session"] / 1000, "",
            "program calls (32 B program unit) + erases"),
        Row(b, "sessions in 1 MB", cap["sessions"], "",
            f"2 checkpoints each; {cap['used']:,} B used, {cap['signed_bytes']:,} B of signed records"),
    ]
