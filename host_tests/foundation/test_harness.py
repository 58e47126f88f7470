"""The harness really runs code under MicroPython, with the heap limit applied."""
import pytest

from sim.mpy import MicroPythonError


def test_runs_under_micropython(mpy):
    got = mpy.run("import sys\nemit(sys.implementation.name)").value
    assert got == "micropython"


@pytest.mark.parametrize("heap", [32 * 1024, 256 * 1024])
def test_heap_limit_applied(mpy, heap):
    total = mpy.run("from hosttest import heap_limit\nemit(heap_limit())", heap=heap).value
    assert heap - 4096 <= total <= heap


def test_heap_limit_enforced(mpy):
    res = mpy.run("b = bytearray(100 * 1024)", heap=32 * 1024, check=False)
    assert res.returncode != 0 and "MemoryError" in res.stderr + res.stdout


def test_firmware_on_path(mpy):
    assert mpy.call("app.version.get")["fw"]


def test_failure_shows_code_and_traceback(mpy):
    with pytest.raises(MicroPythonError) as err:
        mpy.run("raise ValueError('boom-from-firmware')")
    assert "boom-from-firmware" in str(err.value) and "raise ValueError" in str(err.value)
