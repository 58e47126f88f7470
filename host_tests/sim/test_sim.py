"""The simulator end to end (shortened scenario) and its report's teeth: a lost or altered
record must turn the verdict to FAILED."""
import subprocess
import sys
from pathlib import Path

from sqlalchemy import delete, update

REPO = Path(__file__).resolve().parents[2]


def test_short_day_end_to_end_and_the_report_catches_loss_and_tampering(tmp_path):
    from backend.db import open_db
    from backend.models import Session
    from sim import day as simday
    from sim.world import World

    world = World(tmp_path, echo=False)
    try:
        simday._play_short(world)
        ok, lines = simday.report(world, quiet=True)
        assert ok, "\n".join(lines)
        assert sum(" verified " in line for line in lines) == 3  # card stop, power loss, remote stop
        assert any("power-loss" in line for line in lines) and any(" remote " in line for line in lines)

        sessions = open_db(world.backend.db)
        with sessions.begin() as db:  # a record whose signature no longer matches its bytes
            raw = db.get(Session, ("charger-1", 2)).raw
            db.execute(update(Session).where(Session.seq == 2).values(raw=raw[:-8] + ("A" if raw[-8] != "A" else "B") + raw[-7:]))
        ok, lines = simday.report(world, quiet=True)
        assert not ok and any("signature/chain check failed" in line for line in lines), "\n".join(lines)

        with sessions.begin() as db:  # a record lost by the backend
            db.execute(delete(Session).where(Session.seq == 1))
        ok, lines = simday.report(world, quiet=True)
        assert not ok and any("backend holds seqs [2, 3], device made 1..3" in line for line in lines), "\n".join(lines)
    finally:
        world.stop()


def test_sim_cli_writes_out_dir_and_exits_zero(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--scenario", "short", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sim: OK" in proc.stdout
    assert (out / "records.jsonl").read_text().count('"topic"') >= 3
    assert (out / "charger-1.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (out / "backend.db").stat().st_size > 0
