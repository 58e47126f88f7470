"""Shared pieces for benchmark modules: the row type and running firmware code under MicroPython."""
from __future__ import annotations

from dataclasses import dataclass

from sim import mpy  # noqa: F401  (re-exported: mpy.run / mpy.call)


@dataclass
class Row:
    bench: str
    measure: str
    value: float | int | str
    unit: str = ""
    note: str = ""

    def fmt(self) -> str:
        v = self.value
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 100 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)
