"""Pricing test support: compile OCPI tariffs on CPython, evaluate batches under MicroPython."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evc.tariff import compile_doc
from sim import mpy

MP = Path(__file__).resolve().parent / "mp"


def run_batch(cases: list[dict], tmp: Path, heap: str | None = None) -> list:
    """Each case: {"doc", "start", "samples"[, "stop", "tq", "contract"]} or {"doc", "start", "periods"}."""
    path = tmp / f"batch{len(list(tmp.glob('batch*')))}.json"
    path.write_text(json.dumps(cases))
    res = mpy.run(f"import pricedrive\nemit(pricedrive.batch({str(path)!r}))", heap=heap, extra_path=[MP], timeout=300)
    return res.value


def ocpi(elements: list, **extra) -> dict:
    return {"id": "T", "currency": "EUR", "elements": elements, **extra}


def doc(tariff: dict, tz: str = "UTC0", contracts: dict | None = None) -> dict:
    return compile_doc(tariff, contracts, 1, tz)


@pytest.fixture
def batch(tmp_path):
    return lambda cases, heap=None: run_batch(cases, tmp_path, heap)
