"""Run the project's benchmarks, print one table, write docs/benchmarks.md.

Each module in bench/ (one per part: meter, nfc, pricing, journal, crypto, charger, uplink,
backend, billing, payments) has `TITLE` and `run() -> list[Row]`. Comparisons are measured in the same run
and printed side by side. `--only NAME` runs some of them.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import Row  # noqa: E402

OUT = REPO / "docs" / "benchmarks.md"


def discover() -> list[str]:
    return sorted(p.stem for p in (REPO / "bench").glob("*.py") if p.stem not in ("__init__", "common"))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[Row]) -> list[str]:
    lines = ["| benchmark | measure | value | unit | note |", "| --- | --- | ---: | --- | --- |"]
    for r in rows:
        lines.append(f"| {r.bench} | {r.measure} | {r.fmt()} | {r.unit} | {r.note} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="benchmark modules to run (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    names = args.only or discover()
    sections: list[tuple[str, list[Row], float]] = []
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {module.TITLE}", flush=True)
        t0 = time.monotonic()
        try:
            rows = module.run()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(f"{name}: {exc!r}")
            print(f"   FAILED: {exc!r}", flush=True)
            continue
        took = time.monotonic() - t0
        sections.append((module.TITLE, rows, took))
        print("\n".join(table(rows)), flush=True)
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        md = [
            "# Benchmarks",
            "",
            f"Measured {when} on {machine()}.",
            "Reproduce with `make bench` (or `.venv/bin/python tools/bench.py [--only NAME ...]`).",
            "Firmware figures are measured under the MicroPython unix port on this machine, not on an ESP32;",
            "ratios and sizes carry over, absolute times do not.",
            "",
        ]
        for title, rows, took in sections:
            md += [f"## {title}", "", *table(rows), "", f"_(section ran in {took:.1f} s)_", ""]
        if failed:
            md += ["## Failed", "", *[f"- {f}" for f in failed], ""]
        if args.only and OUT.exists():
            md = _merge(OUT.read_text(), md, [t for t, _, _ in sections])
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text("\n".join(md))
        print(f"wrote {OUT.relative_to(REPO)}")
    return 1 if failed else 0


def _merge(old: str, new: list[str], titles: list[str]) -> list[str]:
    """With --only, keep the other sections of the existing file."""
    keep, current = [], None
    for line in old.splitlines():
        if line.startswith("## "):
            current = line[3:]
        if current is not None and current not in titles:
            keep.append(line)
    return new + keep


if __name__ == "__main__":
    sys.exit(main())
