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

        billed, bill_lines = simday.bill(world, tmp_path)  # before the tampering below
        assert billed, "\n".join(bill_lines)
        check_invoices(open_db(world.backend.db), tmp_path / "invoices", bill_lines)

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


def check_invoices(sessions, folder: Path, report: list[str]) -> None:
    """The short day's documents: the fleet invoice of its three sessions and the credit note for
    one, each a PDF embedding factur-x.xml that passes the EN 16931 checks, with totals equal to
    the stored sessions' signed totals less the fleet's 10 % discount."""
    import io

    from pypdf import PdfReader

    from backend.billing.facturx import check_facturx
    from backend.billing.issued import document_for
    from backend.models import Invoice, Session

    with sessions() as db:
        docs = {i.number: document_for(db, i.number) for i in db.query(Invoice)}
        stored = {(s.dev, s.seq): s for s in db.query(Session)}
    assert sorted(d.kind for d in docs.values()) == ["credit_note", "invoice"]
    for number, doc in docs.items():
        assert any(line.strip().startswith(number) for line in report), report
        reader = PdfReader(io.BytesIO((folder / f"{number}.pdf").read_bytes()))
        xml = reader.attachments["factur-x.xml"][0]
        check_facturx(xml)
        gross = abs(doc.total_gross)  # a credit note states its credit as a positive amount
        assert f"<ram:GrandTotalAmount>{gross // 100}.{gross % 100:02d}<".encode() in xml
    inv = next(d for d in docs.values() if d.kind == "invoice")
    cn = next(d for d in docs.values() if d.kind == "credit_note")
    assert {(s.dev, s.seq) for s in inv.sessions} == set(stored) and len(stored) == 3
    signed = sum(s.cost_incl for s in stored.values())
    discount = sum(x.gross for x in inv.lines if x.kind == "discount")
    assert sum(x.gross for x in inv.lines if x.kind == "session") == signed
    assert -sum(x.net for x in inv.lines if x.kind == "discount") == (sum(s.cost_excl for s in stored.values()) + 5) // 10
    assert inv.total_gross == signed + discount > 0
    refunded = cn.sessions[0]
    assert cn.references == (inv.number,) and 0 < -cn.total_gross <= stored[(refunded.dev, refunded.seq)].cost_incl
    assert (folder / "sessions-safe.xml").read_bytes().count(b"<value ") == 3


def test_sim_cli_writes_out_dir_and_exits_zero(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--scenario", "short", "--quiet",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "sim: OK" in proc.stdout
    assert (out / "records.jsonl").read_text().count('"topic"') >= 3
    assert (out / "charger-1.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (out / "backend.db").stat().st_size > 0
    assert sorted(p.name[:3] for p in (out / "invoices").glob("*.pdf")) == ["CN-", "INV"]
    assert "billing run 20" in proc.stdout and "credit_note" in proc.stdout
