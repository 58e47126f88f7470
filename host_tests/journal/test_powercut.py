"""Power cut at block write k, on LittleFS over the power-cut device, for the cut points of a
charger workload (>= 20 sessions, two at a time, checkpoints, drops, acks, segment rotation).

After each cut: remount, recover, and check that every record confirmed before the cut is there
and intact, nothing corrupted is returned, seqs are contiguous, the ack cursor is never past the
committed records, open sessions and their checkpoints are reported, and the journal goes on
(new records, another reboot). One MicroPython process runs a whole batch of cut points.
"""
from __future__ import annotations

import json

import pytest

from host_tests.journal.conftest import MP

EVERY_NTH = 3  # default run: every 3rd write plus every write near a rotation, trim or ack


def _sweep(mpy, cuts: str, torn: bool, config: dict, timeout: float = 600) -> tuple[dict, dict]:
    code = f"""
import json, jsweep
jsweep.configure(**json.loads({json.dumps(json.dumps(config))}))
base = jsweep.baseline()
total = base["total"] - base["start"]
near = [k - base["start"] for k in base["near"]]
cuts = {cuts}
emit([base, jsweep.sweep(cuts, {torn})])
"""
    base, result = mpy.run(code, extra_path=[MP], timeout=timeout).value
    return base, result


def _report(capsys, label: str, base: dict, result: dict) -> None:
    with capsys.disabled():
        print(
            f"\n[journal power-cut] {label}: {result['tried']} cut points tried "
            f"(of {base['total'] - base['start']} block writes, {base['records']} records)"
        )
    assert result["failed"] == 0, f"{result['failed']} cut points failed, first ones: {result['failures']}"


SAMPLE = f"sorted(set(range(1, total + 2, {EVERY_NTH})) | set(k for k in near if k > 0))"
ALL = "range(1, total + 2)"
DEFAULT = {"sessions": 24}


@pytest.mark.parametrize("torn", [False, True], ids=["lost", "torn"])
def test_power_cut_sample(mpy, capsys, torn):
    base, result = _sweep(mpy, SAMPLE, torn, DEFAULT)
    assert base["records"] >= 20
    assert result["tried"] >= (base["total"] - base["start"]) // EVERY_NTH
    _report(capsys, f"sample, {'torn' if torn else 'lost'} writes", base, result)


@pytest.mark.exhaustive
@pytest.mark.parametrize("torn", [False, True], ids=["lost", "torn"])
@pytest.mark.parametrize(
    "config",
    [DEFAULT, {"sessions": 40, "segment_bytes": 4096, "max_bytes": 48 * 1024}],
    ids=["8k-segments", "4k-segments"],
)
def test_power_cut_every_write(mpy, capsys, torn, config):
    base, result = _sweep(mpy, ALL, torn, config, timeout=1800)
    assert result["tried"] == base["total"] - base["start"]
    _report(capsys, f"every write, {'torn' if torn else 'lost'}, {config}", base, result)


def test_bit_flips_are_detected_and_the_rest_is_read(jrun, capsys):
    r = jrun("import jcases\nemit(jcases.flips(150))")
    with capsys.disabled():
        print(f"\n[journal bit flips] {r['trials']} flips, {r['detected']} detected, {r['missing']} records lost to them")
    assert r["failures"] == [] and r["detected"] == r["trials"] == 150


@pytest.mark.exhaustive
def test_bit_flips_many(jrun, capsys):
    r = jrun("import jcases\nemit(jcases.flips(3000, seed=11))", timeout=1800)
    with capsys.disabled():
        print(f"\n[journal bit flips] {r['trials']} flips, {r['detected']} detected")
    assert r["failures"] == [] and r["detected"] == r["trials"]
