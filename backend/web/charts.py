"""Charts as SVG (matplotlib, rendered on the server) and their numbers as CSV."""
from __future__ import annotations

import csv
import io
import threading

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable
matplotlib.rcParams["svg.hashsalt"] = "evc"  # stable ids: the same numbers give the same SVG
_LOCK = threading.Lock()  # pyplot is not used, but font caches are shared: one figure at a time
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def to_csv(header: list[str], rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(list(r))
    return out.getvalue()


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", bbox_inches="tight", metadata={"Date": None})
    return out.getvalue()


def bars(labels: list[str], values: list[float], title: str, ylabel: str) -> str:
    with _LOCK:
        fig = Figure(figsize=(7, 2.8))
        ax = fig.add_subplot()
        ax.bar(range(len(values)), values, color="#2f6f9f")
        step = max(1, len(labels) // 12)
        ax.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)],
                      rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        return _svg(fig)


def heat(grid: list[list[int]], title: str) -> str:
    with _LOCK:
        fig = Figure(figsize=(7, 2.8))
        ax = fig.add_subplot()
        im = ax.imshow(grid, aspect="auto", cmap="Blues")
        ax.set_yticks(range(7), WEEKDAYS, fontsize=8)
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)], fontsize=8)
        ax.set_xlabel("hour of day (UTC)", fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, label="sessions")
        return _svg(fig)
