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
# Fixed margins (room for rotated labels) rather than bbox_inches="tight", which draws every figure
# twice; many bars are one filled outline rather than a rectangle each. Together they halve a
# chart's time (docs/dashboard.md, "Benchmark").
MARGINS = {"left": 0.12, "right": 0.97, "bottom": 0.21, "top": 0.88}
MANY = 60


def _figure() -> Figure:
    fig = Figure(figsize=(7, 2.8))
    fig.subplots_adjust(**MARGINS)
    return fig


def to_csv(header: list[str], rows) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(list(r))
    return out.getvalue()


def _svg(fig: Figure) -> str:
    out = io.StringIO()
    fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def bars(labels: list[str], values: list[float], title: str, ylabel: str) -> str:
    with _LOCK:
        fig = _figure()
        ax = fig.add_subplot()
        if len(values) > MANY:  # one outline: bar k spans [k - 0.5, k + 0.5)
            ax.stairs(values, [k - 0.5 for k in range(len(values) + 1)], fill=True, color="#2f6f9f")
        else:
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
        fig = _figure()
        ax = fig.add_subplot()
        im = ax.imshow(grid, aspect="auto", cmap="Blues")
        ax.set_yticks(range(7), WEEKDAYS, fontsize=8)
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)], fontsize=8)
        ax.set_xlabel("hour of day (UTC)", fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, label="sessions")
        return _svg(fig)


def _series(labels: list[str], series: list[tuple[str, list[float]]], title: str, ylabel: str, stack: bool) -> str:
    with _LOCK:
        fig = _figure()
        ax = fig.add_subplot()
        n, x = max(1, len(series)), range(len(labels))
        width = 0.8 if stack else 0.8 / n
        bottom = [0.0] * len(labels)
        for i, ((name, values), color) in enumerate(zip(series, ("#2f6f9f", "#e0a030", "#7a9f2f"))):
            if stack:
                ax.bar(x, values, width, bottom=bottom, label=name, color=color)
                bottom = [b + v for b, v in zip(bottom, values)]
            else:
                ax.bar([k - 0.4 + width * (i + 0.5) for k in x], values, width, label=name, color=color)
        step = max(1, len(labels) // 12)
        ax.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)],
                      rotation=30, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=8, frameon=False)
        ax.spines[["top", "right"]].set_visible(False)
        return _svg(fig)


def stacked(labels: list[str], series: list[tuple[str, list[float]]], title: str, ylabel: str) -> str:
    """Bars per label, the series stacked (e.g. charging, then plugged in idle)."""
    return _series(labels, series, title, ylabel, True)


def grouped(labels: list[str], series: list[tuple[str, list[float]]], title: str, ylabel: str) -> str:
    """Bars per label, the series side by side (e.g. average and highest power)."""
    return _series(labels, series, title, ylabel, False)
