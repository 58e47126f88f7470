"""The simulator end to end (shortened scenario, with an ad-hoc session paid through the Stripe
gateway emulator) and its report's teeth: a lost or altered record must turn the verdict to
FAILED."""
import subprocess
import sys
from pathlib import Path

from sqlalchemy import delete, update

REPO = Path(__file__).resolve().parents[2]


def test_short_day_end_to_end_and_the_report_catches_loss_and_tampering(tmp_path, capsys, monkeypatch, request):
    """The short day as `make sim` plays it (tools/sim.py --out: play_world is all its command does
    past the arguments), then the report's teeth on the stopped world's database. Its chargers run
    the firmware frozen into the 32-bit interpreter with a stock ESP32's heap geometry (the display
    and its payment QR code: the heaviest configuration) and must stay within the 40,960 B budget;
    on a machine without gcc -m32 they run on the unix port (said in the output)."""
    from backend.db import open_db
    from backend.models import Session
    from sim import day as simday
    from sim import esp32geom as geom

    out = tmp_path / "out"
    out.mkdir()
    why = geom.unavailable()
    on_chip = {}
    if why:
        print(f"short day on the unix port: {why}")
    else:
        monkeypatch.setenv("ESP32GEOM_IDF_HEAP", str(geom.STOCK_IDF_BUDGET))
        on_chip = {"micropython": str(request.getfixturevalue("esp32geom")), "heap": geom.STOCK_HEAP}
    played = simday.play_world(out, "short", quiet=True, **on_chip)
    printed = capsys.readouterr().out
    assert played.code == 0 and "sim: OK" in printed, printed[-3000:]
    lines, world = played.lines, played.world
    if on_chip:
        peaks = [geom.peak(c.dev.output()) for c in world.chargers.values() if c.dev is not None]
        assert peaks and all(p is not None and p[0] <= geom.STOCK_IDF_BUDGET for p in peaks), peaks
    assert sum(" verified " in line for line in lines) == 4  # card stop, power loss, remote stop, ad hoc
    assert any("power-loss" in line for line in lines) and any(" remote " in line for line in lines)
    check_adhoc(world, lines)
    check_invoices(open_db(world.backend.db), out / "invoices", lines)
    check_out_dir(out, printed)

    sessions = open_db(world.backend.db)
    ok, lines = simday.report(world, quiet=True, last_seq=played.last_seq)
    assert ok, "\n".join(lines)  # the stopped world's report is the same verdict
    with sessions.begin() as db:  # a record whose signature no longer matches its bytes
        raw = db.get(Session, ("charger-1", 2)).raw
        db.execute(update(Session).where(Session.seq == 2).values(raw=raw[:-8] + ("A" if raw[-8] != "A" else "B") + raw[-7:]))
    ok, lines = simday.report(world, quiet=True, last_seq=played.last_seq)
    assert not ok and any("signature/chain check failed" in line for line in lines), "\n".join(lines)

    with sessions.begin() as db:  # a record lost by the backend
        db.execute(delete(Session).where(Session.seq == 1))
    ok, lines = simday.report(world, quiet=True, last_seq=played.last_seq)
    assert not ok and any("backend holds seqs [2, 3, 4], device made 1..4" in line for line in lines), "\n".join(lines)


def check_out_dir(out: Path, printed: str) -> None:
    """What --out leaves for a technician: the wire's records, each device's key, the backend's
    database, the billing run's PDFs, the report, and the display's frames."""
    assert (out / "records.jsonl").read_text().count('"topic"') >= 3
    assert (out / "charger-1.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert (out / "backend.db").stat().st_size > 0
    assert sorted(p.name[:3] for p in (out / "invoices").glob("*.pdf")) == ["CN-", "INV", "RC-"]
    assert "billing run 20" in printed and "credit_note" in printed
    assert "ad-hoc payments (Stripe gateway EMULATOR):" in printed and " captured, hold 0.50" in printed
    # every frame the charger's display drew, as PNG named by charger and time; the last idle
    # screen's QR code is the payment link with the charger's next code
    import re

    import zxingcpp
    from PIL import Image

    pngs = sorted((out / "display").glob("*.png"))
    assert len(pngs) >= 10 and all(re.fullmatch(r"charger-1-\d{13}-\d{5}\.png", p.name) for p in pngs), pngs[:5]
    links = [b.text for png in pngs for b in zxingcpp.read_barcodes(Image.open(png), formats=zxingcpp.BarcodeFormat.QRCode)]
    assert "https://receipts.example/r/charger-1/4" in links, links  # the ad-hoc session's receipt code
    pay = {t for t in links if "/pay/" in t}
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/pay/charger-1/[A-Z2-7]{8}", t) for t in pay), pay
    assert len(pay) >= 2, links  # the idle screen's code is new after a session (at least: the one paid, the next)


def check_adhoc(world, report: list[str]) -> None:
    """The ad-hoc session: the driver's one payment, captured at exactly the signed total of the
    record it started (auth adhoc, token = the payment's reference, stopped at the hold's cap),
    never more than the hold; the report lists it."""
    from backend.models import Payment, Session

    (dev, pid), = world.paid
    with world.payments.sessions() as db:
        p = db.get(Payment, pid)
        s = db.get(Session, (dev, p.seq))
    assert p.state == "captured" and p.amount_held == world.payments.hold, (p.state, p.detail)
    assert s.auth == "adhoc" and s.token == pid and s.stop_reason == "limit", (s.auth, s.stop_reason)
    assert p.captured == s.cost_incl and 0 < p.captured <= p.amount_held
    assert f"{dev} seq {s.seq}: payment {pid[:8]} captured, hold 0.50, captured {p.captured / 100:.2f} EUR, " \
           f"record auth adhoc, signed total {s.cost_incl / 100:.2f}" in "\n".join(report), report
    assert world.payments.emu.executed == [("capture", p.hold_id, p.captured)]  # the gateway moved the money once


def check_invoices(sessions, folder: Path, report: list[str]) -> None:
    """The short day's documents: the fleet invoice of its three card sessions, the credit note for
    one, and the ad-hoc session's receipt, each a PDF embedding factur-x.xml that passes the
    EN 16931 checks, with totals equal to the stored sessions' signed totals (the fleet's less its
    10 % discount)."""
    import io

    from pypdf import PdfReader

    from backend.billing.facturx import check_facturx
    from backend.billing.issued import document_for
    from backend.models import Invoice, Session

    with sessions() as db:
        docs = {i.number: document_for(db, i.number) for i in db.query(Invoice)}
        stored = {(s.dev, s.seq): s for s in db.query(Session)}
    assert sorted(d.kind for d in docs.values()) == ["credit_note", "invoice", "receipt"]
    for number, doc in docs.items():
        assert any(line.strip().startswith(number) for line in report), report
        reader = PdfReader(io.BytesIO((folder / f"{number}.pdf").read_bytes()))
        if doc.kind == "receipt":  # a simplified invoice to a driver: no e-invoice embedded
            assert "factur-x.xml" not in reader.attachments and len(reader.pages) >= 1
            continue
        xml = reader.attachments["factur-x.xml"][0]
        check_facturx(xml)
        gross = abs(doc.total_gross)  # a credit note states its credit as a positive amount
        assert f"<ram:GrandTotalAmount>{gross // 100}.{gross % 100:02d}<".encode() in xml
    inv = next(d for d in docs.values() if d.kind == "invoice")
    cn = next(d for d in docs.values() if d.kind == "credit_note")
    receipt = next(d for d in docs.values() if d.kind == "receipt")
    (paid,) = [k for k, s in stored.items() if s.auth == "adhoc"]
    assert [(s.dev, s.seq) for s in receipt.sessions] == [paid] and receipt.total_gross == stored[paid].cost_incl
    del stored[paid]
    assert {(s.dev, s.seq) for s in inv.sessions} == set(stored) and len(stored) == 3
    signed = sum(s.cost_incl for s in stored.values())
    discount = sum(x.gross for x in inv.lines if x.kind == "discount")
    assert sum(x.gross for x in inv.lines if x.kind == "session") == signed
    assert -sum(x.net for x in inv.lines if x.kind == "discount") == (sum(s.cost_excl for s in stored.values()) + 5) // 10
    assert inv.total_gross == signed + discount > 0
    refunded = cn.sessions[0]
    assert cn.references == (inv.number,) and 0 < -cn.total_gross <= stored[(refunded.dev, refunded.seq)].cost_incl
    assert (folder / "sessions-safe.xml").read_bytes().count(b"<value ") == 4


def test_sim_cli_runs_from_a_shell_and_refuses_an_unknown_scenario(tmp_path):
    """The command line itself (the day behind it is played above, in-process, to save a second
    minute-long day): it starts from any directory and says what it can do."""
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--scenario", "night", "--quiet",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "unknown scenario 'night'; choose from day, short" in proc.stdout
    helped = subprocess.run([sys.executable, str(REPO / "tools" / "sim.py"), "--help"], capture_output=True,
                            text=True, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0 and "--scenario" in helped.stdout and "device" in helped.stdout
