"""The scripted day the simulator plays, and the report that decides its exit code.

Scenario "day" (two chargers, device time 60x, evening in Berlin, time-of-day tariff):
  charger-1: a postpaid session across the 22:00 tariff boundary; a blocked card; a broker
             outage during which an unknown card charges under the offline cap and a postpaid
             session finishes, both syncing in order when the broker is back.
  charger-2: a prepaid card that runs out mid-session; a tariff update pushed by the backend
             and used by the next session; a power cut mid-session and its recovery.
  charger-1 also has a session stopped remotely by the backend (`backend cmd stop`), then an
             ad-hoc session: a driver without a card scans the payment QR code on the idle
             screen, pays on the payment page with the Stripe gateway EMULATOR's hosted page (a
             hold of 0.50 EUR), the backend's signed start command starts an `adhoc` session
             capped at the hold, and the sweeper captures exactly the signed total.
Scenario "short" (the test suite's): one charger, one postpaid session, one power cut, one
remote stop, one ad-hoc session.

Every charger has a 128x64 display; with --out its frames become PNG files in WORK/display/
(CHARGER-<ms>-<n>.png, ms the host's wall clock when the frame was drawn).

Both scenarios register billing customers once the card list is out (backend/billing: a fleet
whose contract FLEET the postpaid card's records carry, with 10 % off per invoice; a prepaid
driver whose card is assigned to a per-session contract; an ad-hoc driver who owns the unknown
card and has no contract) and end with a billing run over the month of the simulated day, as the
operator runs it after the month ends, and one refund (a credit note for one fleet session). Every
document goes to WORK/invoices/ as PDF/A-3 (invoices and the credit note with the EN 16931 XML
embedded), with the day's sessions as S.A.F.E. XML; the report lists them with their totals.

Exit 0 only when every record verified, none is missing or duplicated, nothing went to the
anomalies, every prepaid balance adds up, every ad-hoc payment captured exactly its record's signed
total (auth "adhoc"), and every charged session is billed once with totals equal to its signed
record's.
"""
from __future__ import annotations

import json
import re
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sim.world import Card, World, b64url_json, card_token, tou_tariff

POSTPAID = Card("postpaid", bytes.fromhex("04A1B2C3D4E5F6"), contract="FLEET")  # the fleet's contract id
PREPAID = Card("prepaid", bytes.fromhex("04C0FFEE123456"), balance=300)
BLOCKED = Card("blocked", bytes.fromhex("DEADBEEF"), status="blocked")
UNKNOWN = Card("unknown", bytes.fromhex("0A0B0C0D"))

_STATUS = re.compile(r"status: dev=(\S+) state=(\S+) seq=(\d+) pending=(\d+) wh=(\d+) cost=(\d+)")


class Live:
    """A live line per charger (state, kW, kWh, running cost) every two seconds."""

    def __init__(self, world: World, quiet: bool):
        self.world = world
        self.quiet = quiet
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        if not self.quiet:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(2):
            parts = []
            for name, c in self.world.chargers.items():
                if c.dev is None:
                    continue
                last = next((m for m in map(_STATUS.search, reversed(c.dev.lines[-200:])) if m), None)
                if last is None:
                    continue
                kw = c.ev._power_w / 1000 if c.ev.charging else 0.0
                parts.append(f"{name} {last.group(2):<10} {kw:5.1f} kW {int(last.group(5)) / 1000:6.2f} kWh "
                             f"{int(last.group(6)) / 100:6.2f} EUR pending {last.group(4)}")
            if parts:
                print("  | " + "  | ".join(parts), flush=True)


def charge_for(c, device_minutes: int) -> None:
    time.sleep(device_minutes * 60 / c.world.speed)


def _charger_1(world: World) -> None:
    c = world.chargers["charger-1"]
    world.say("charger-1: postpaid card starts at 21:40 local, across the 22:00 tariff boundary")
    c.tap(POSTPAID.uid, r"session: started .* auth=list")
    charge_for(c, 30)
    c.tap(POSTPAID.uid, r"session: record \d+: card")
    world.say("charger-1: a blocked card is refused")
    c.tap(BLOCKED.uid, r"card rejected: blocked")
    world.say("charger-1: broker outage; an unknown card charges offline under the 2 kWh cap")
    world.broker.stop()
    c.tap(UNKNOWN.uid, r"session: started .* auth=offline", timeout=60)
    c.wait(r"session: record \d+: limit", timeout=60)
    world.say("charger-1: a postpaid session finishes while offline")
    c.tap(POSTPAID.uid, r"session: started .* auth=list")
    charge_for(c, 5)
    c.tap(POSTPAID.uid, r"session: record \d+: card")
    world.say("charger-1: broker back; records sync in order")
    at = c.mark()
    world.broker.start()
    c.wait(r"uplink: connected", timeout=60, start=at)
    remote_stop(world, c)
    adhoc(world, c)


def _charger_2(world: World, tariff_ready: threading.Event) -> None:
    c = world.chargers["charger-2"]
    world.say("charger-2: prepaid card with 3.00 EUR runs out mid-session")
    c.tap(PREPAID.uid, r"session: started .* auth=list")
    c.wait(r"session: record \d+: balance", timeout=120)
    world.say("charger-2: the backend pushes a new tariff")
    at = c.mark()
    tariff_ready.set()
    c.wait(r"tariff: tariff document version \d+ applied", timeout=60, start=at)
    c.tap(POSTPAID.uid, r"session: started .* tariff=evening-2")
    charge_for(c, 5)
    c.tap(POSTPAID.uid, r"session: record \d+: card")
    power_cut(world, c)


def power_cut(world: World, c) -> None:
    world.say(f"{c.name}: power cut in the middle of a session, then reboot")
    c.tap(POSTPAID.uid, r"session: started")
    charge_for(c, 12)  # at least one checkpoint (every 10 device minutes)
    c.dev.power_cut()
    time.sleep(0.5)
    c.boot()
    c.wait(r"session: record \d+: power-loss", timeout=60)
    time.sleep(1.0)  # the meter's first polls after the boot: a session starts only from a fresh reading


def remote_stop(world: World, c) -> None:
    world.say(f"{c.name}: the backend stops a session remotely")
    c.tap(POSTPAID.uid, r"session: started")
    charge_for(c, 3)
    # the simulated clock is shifted to the evening and runs fast: the command must outlive that shift
    world.backend.cli("cmd", "stop", c.name, "--ttl", str(2 * 86400))
    c.wait(r"session: record \d+: remote", timeout=60)


def scan_payment_link(world: World, c, timeout: float = 60) -> str:
    """What a driver's phone reads off the charger's screen: the QR code of the newest frame, once it
    is the idle screen's payment link with the code the backend has from the charger's status."""
    import zxingcpp

    from backend.models import PaymentCode
    from sim import display

    prefix = f"{world.payments.pay_url}/{c.name}/"
    deadline = time.monotonic() + timeout
    link = None
    while time.monotonic() < deadline:
        frames = sorted(c.frames.glob("*.vlsb")) if c.frames.exists() else []
        try:
            im = display.image(display.read_frame(frames[-1]), scale=4) if frames else None
        except (ValueError, OSError):  # a frame being written
            im = None
        found = zxingcpp.read_barcodes(im, formats=zxingcpp.BarcodeFormat.QRCode) if im is not None else []
        link = found[0].text if found else None
        if link and link.startswith(prefix):
            with world.payments.sessions() as db:
                row = db.get(PaymentCode, c.name)
            if row is not None and row.code == link[len(prefix):]:
                return link
        time.sleep(0.2)
    raise TimeoutError(f"{c.name}: no payment QR code with the announced code on the screen (last read: {link})")


def adhoc(world: World, c) -> None:
    pay = world.payments
    if not world.display:
        world.say(f"{c.name}: no display, so no payment QR code: no ad-hoc session")
        return
    world.say(f"{c.name}: a driver without a card scans the payment QR code and pays by card "
              f"(hold {pay.hold / 100:.2f} EUR through the Stripe gateway EMULATOR)")
    link = scan_payment_link(world, c)
    at = c.mark()
    pid = pay.pay(link)
    world.paid.append((c.name, pid))
    c.wait(r"session: started \S+ auth=adhoc", timeout=60, start=at)
    seq = c.wait(r"session: record \d+: limit", timeout=120, start=at)
    deadline = time.monotonic() + 60
    while (p := pay.payment(pid)).state not in ("captured", "released", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
    world.say(f"{c.name}: ad-hoc {seq.split(': ', 1)[1]}; payment {p.state}: {p.captured / 100:.2f} of the "
              f"{p.amount_held / 100:.2f} EUR hold")


def _play_day(world: World) -> None:
    world.start(["charger-1", "charger-2"])
    world.push_tariff(tou_tariff("evening-1", 0.30, 0.20), "tariff-1")  # retained: waits for the chargers
    for c in world.chargers.values():
        c.boot()
        c.wait(r"tariff: tariff document version \d+ applied", timeout=60)
    world.push_cards([POSTPAID, PREPAID, BLOCKED])  # card lists are not retained: push to connected chargers
    for c in world.chargers.values():
        c.wait(r"down: authlist ver \d+ applied", timeout=60)
    register_customers(world)
    tariff_ready = threading.Event()
    errors: list[BaseException] = []

    def guard(fn, *a):
        try:
            fn(*a)
        except BaseException as exc:  # noqa: BLE001 - reported in the report
            errors.append(exc)
            tariff_ready.set()

    threads = [threading.Thread(target=guard, args=(_charger_1, world)),
               threading.Thread(target=guard, args=(_charger_2, world, tariff_ready))]
    for t in threads:
        t.start()
    tariff_ready.wait(300)
    if not errors:
        world.push_tariff(tou_tariff("evening-2", 0.35, 0.25), "tariff-2")
    for t in threads:
        t.join(600)
    if errors:
        raise errors[0]


def _play_short(world: World) -> None:
    world.start(["charger-1"])
    world.push_tariff(tou_tariff("evening-1", 0.30, 0.20), "tariff-1")
    c = world.chargers["charger-1"]
    c.boot()
    c.wait(r"tariff: tariff document version \d+ applied", timeout=60)
    world.push_cards([POSTPAID])
    c.wait(r"down: authlist ver \d+ applied", timeout=60)
    register_customers(world)
    c.tap(POSTPAID.uid, r"session: started .* auth=list")
    charge_for(c, 10)
    c.tap(POSTPAID.uid, r"session: record \d+: card")
    power_cut(world, c)
    c.wait(r"uplink: connected", timeout=60)
    remote_stop(world, c)
    adhoc(world, c)


SCENARIOS = {"day": _play_day, "short": _play_short}

SELLER = dict(name="EVC Musterstadt GmbH", address="Ladestraße 1", postcode="12345", city="Musterstadt", country="DE",
              vat_id="DE123456789", email="billing@evc-musterstadt.example")


def register_customers(world: World) -> None:
    """The operator's billing setup, as `billing seller`, `customer add`, `contract add` and `card
    assign` do it (in-process: eight CLI start-ups would cost the day seconds)."""
    import datetime as dt

    from backend.billing import registry
    from backend.db import open_db

    sessions = open_db(world.backend.db)
    device_now = int(time.time()) + world.offset  # the chargers' clock starts here (then runs faster)
    since = device_now - device_now % 86400 - 86400  # contracts valid from the day before the simulated day
    registry.set_seller(sessions, **SELLER)
    people = [("fleet", "company", "Musterfleet Logistik GmbH", "DE987654321", "de"),
              ("anna", "driver", "Anna Prepaid", None, "en"),
              ("walk-in", "driver", "Walk-in Driver", None, "en")]
    for cid, kind, name, vat_id, lang in people:
        registry.add_customer(sessions, cid, kind=kind, name=name, address="Hauptstraße 7", postcode="12345",
                              city="Musterstadt", country="DE", vat_id=vat_id, email=f"{cid}@example.com",
                              language=lang, currency="EUR")
    registry.add_contract(sessions, POSTPAID.contract, "fleet", cycle="monthly", payment_days=14, late_fee=500,
                          tariff_id=None, valid_from=since, valid_to=None, rules=["percent:1000:invoice"])
    registry.add_contract(sessions, "ANNA-PREPAID", "anna", cycle="per_session", payment_days=0, late_fee=0,
                          tariff_id=None, valid_from=since, valid_to=None, rules=[])
    registry.assign_card(sessions, card_token(world.secret, POSTPAID.uid), "fleet")
    registry.assign_card(sessions, card_token(world.secret, PREPAID.uid), "anna", "ANNA-PREPAID")
    registry.assign_card(sessions, card_token(world.secret, UNKNOWN.uid), "walk-in")  # no contract: receipts
    world.say(f"billing: seller, 3 customers, 2 contracts valid from {dt.datetime.fromtimestamp(since, dt.timezone.utc):%Y-%m-%d}")


def bill(world: World, work: Path) -> tuple[bool, list[str]]:
    """The billing run over the month of the simulated day, one refund, every document as PDF in
    work/invoices/; (ok, report lines). The run happens as the operator's would, after the month
    ended: its clock is the month's end plus an hour (records carry the chargers' time)."""
    import datetime as dt

    from backend.billing import doc_cli
    from backend.billing.document import Brand
    from backend.billing.issued import document_for
    from backend.billing import registry
    from backend.billing.refunds import Refunds
    from backend.billing.runs import Runner, money, period_bounds
    from backend.db import open_db
    from backend.models import BilledSession, Session

    t0 = time.monotonic()
    sessions = open_db(world.backend.db)
    problems: list[str] = []
    with sessions() as db:
        rows = {(r.dev, r.seq): r for r in db.query(Session)}
    if not rows:
        return False, ["PROBLEM: billing: no sessions stored"]
    last = max(r.start_t for r in rows.values())
    period = dt.datetime.fromtimestamp(last, dt.timezone.utc).strftime("%Y-%m")
    at = period_bounds(period)[1] + 3600
    clock = lambda: at  # noqa: E731
    result = Runner(sessions, clock).run(period)
    with sessions() as db:
        fleet = [n for n in result.issued if document_for(db, n).customer_ref == "fleet"]
    numbers = list(result.issued)
    if fleet:  # one refund: the fleet's last session, in full
        with sessions() as db:
            s = document_for(db, fleet[0]).sessions[-1]
        numbers.append(Refunds(sessions, lambda: at + 86400).refund(fleet[0], [(s.dev, s.seq)], note="Goodwill refund."))
    else:
        problems.append("billing: no fleet invoice issued")
    folder = work / "invoices"
    folder.mkdir(parents=True, exist_ok=True)
    with sessions() as db:
        brand = Brand(seller=registry.seller(db), footer=f"{SELLER['name']} · Amtsgericht Musterstadt HRB 1234",
                      extra={"timezone": "Europe/Berlin"})
        billed = {(b.dev, b.seq): b.invoice for b in db.query(BilledSession)}
    lines = ["", f"billing run {period} (as at {dt.datetime.fromtimestamp(at, dt.timezone.utc):%Y-%m-%d %H:%M} UTC), "
             f"documents in {folder}:"]
    for number in numbers:
        doc, pdf, what = doc_cli.render(sessions, number, "pdf", brand=brand)
        doc_cli.write_file(folder / f"{number}.pdf", pdf)
        signed = sum(rows[(x.dev, x.seq)].cost_incl for x in doc.sessions)
        billed_gross = sum(x.gross for x in doc.lines if x.kind == "session")
        if doc.kind != "credit_note" and billed_gross != signed:
            problems.append(f"{number}: session lines {billed_gross} != signed totals {signed}")
        n = len(doc.sessions)
        lines.append(f"  {number:<16} {doc.kind:<11} {doc.buyer.name[:26]:<26} {n:>2} session{'' if n == 1 else 's'} "
                     f"{money(doc.total_gross, doc.currency):>12}  {what}")
    for key, r in sorted(rows.items()):
        if r.cost_incl > 0 and key not in billed:
            problems.append(f"{key[0]} seq {key[1]}: charged {r.cost_incl} but on no document")
    data, n = doc_cli.safe_export(sessions, None, None, None, None)
    doc_cli.write_file(folder / "sessions-safe.xml", data)
    lines.append(f"  sessions-safe.xml: {n} sessions for the S.A.F.E. transparency software")
    lines.append(f"  (billing, refund and rendering took {time.monotonic() - t0:.1f} s)")
    return not problems, lines + [f"PROBLEM: {p}" for p in problems]


def _synced(world: World, timeout: float = 90) -> dict[str, int]:
    """Wait until every charger reports no pending records; return each one's last seq.

    Only status lines printed after this call count: an older one may predate the last record.
    """
    marks = {name: c.mark() for name, c in world.chargers.items()}
    last: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    for name, c in world.chargers.items():
        while True:
            m = None
            for line in reversed(c.dev.lines[marks[name]:]):
                m = _STATUS.search(line)
                if m:
                    break
            if m and m.group(4) == "0":
                last[name] = int(m.group(3))
                break
            if time.monotonic() > deadline:
                last[name] = int(m.group(3)) if m else -1
                break
            time.sleep(0.5)
    return last


def settled(world: World) -> dict[str, int]:
    """Each charger's last seq once none has records pending (_synced), and the backend's commit."""
    last_seq = _synced(world)
    time.sleep(1.0)  # the backend commits before it acks; the ack cleared `pending`
    return last_seq


def report(world: World, quiet: bool, last_seq: dict[str, int] | None = None) -> tuple[bool, list[str]]:
    """Verify everything the backend stored against what crossed the wire; the report lines.
    last_seq: each charger's last seq when its device is gone (Played.last_seq), else waited for."""
    from cryptography.hazmat.primitives import serialization

    from backend.db import open_db
    from backend.models import Anomaly, Card as CardRow, Session
    from evc.verify import VerifyError, verify_record

    import logging

    logging.getLogger("alembic").setLevel(logging.WARNING)  # the migration check is not news here
    problems: list[str] = []
    if last_seq is None:
        last_seq = settled(world)
    sessions = open_db(world.backend.db)
    lines = [f"{'dev':<10} {'seq':>3} {'auth':<8} {'stop':<11} {'kWh':>7} {'EUR incl':>8} "
             f"{'tariff':<12} {'signature':<9} flags"]
    with sessions() as db:
        rows = db.query(Session).order_by(Session.dev, Session.seq).all()
        anomalies = db.query(Anomaly).all()
        cards = {c.token: c for c in db.query(CardRow).all()}
    keys = {n: serialization.load_pem_public_key(c.pubkey_pem.encode()) for n, c in world.chargers.items()}
    previous: dict[str, object] = {}
    by_dev: dict[str, list[int]] = {}
    for r in rows:
        try:
            rec = verify_record(r.raw.encode(), keys[r.dev], previous.get(r.dev))
            previous[r.dev] = rec
            verdict = "verified"
        except (VerifyError, KeyError) as exc:
            verdict = "FAILED"
            problems.append(f"{r.dev} seq {r.seq}: signature/chain check failed: {exc}")
        by_dev.setdefault(r.dev, []).append(r.seq)
        lines.append(f"{r.dev:<10} {r.seq:>3} {r.auth:<8} {r.stop_reason:<11} {r.energy_wh / 1000:7.3f} "
                     f"{r.cost_incl / 100:8.2f} {r.tariff_id + '/' + str(r.tariff_ver)[-4:]:<12} {verdict:<9} {r.flags}")
    for name, n in last_seq.items():
        seqs = by_dev.get(name, [])
        if n < 0:
            problems.append(f"{name}: never reported status")
        elif seqs != list(range(1, n + 1)):
            problems.append(f"{name}: backend holds seqs {seqs}, device made 1..{n}")
    wire = {}
    for topic, payload in world.received:
        dev = topic.split("/")[1]
        seq = b64url_json(payload.split(b".")[1].decode())["seq"]
        wire.setdefault(dev, set()).add(seq)
    for name, seqs in by_dev.items():
        if set(seqs) != wire.get(name, set()):
            problems.append(f"{name}: records seen on the wire {sorted(wire.get(name, []))} differ from stored {seqs}")
    for a in anomalies:
        problems.append(f"anomaly {a.kind} dev={a.dev} seq={a.seq}: {a.detail[:120]}")
    lines.append("")
    lines.append("prepaid balances:")
    for card in [c for c in world.cards if c.balance is not None]:
        tok = card_token(world.secret, card.uid)
        row = cards.get(tok)
        spent = sum(r.cost_incl for r in rows if r.token == tok and "void" not in r.flags)
        charged = sum(r.charged for r in rows if r.token == tok)
        if row is None:
            problems.append(f"{card.label}: unknown to the backend")
            continue
        ok = row.balance == card.balance - spent and spent <= card.balance and charged == spent
        lines.append(f"  {card.label}: opened {card.balance / 100:.2f}, charged {spent / 100:.2f}, "
                     f"balance {row.balance / 100:.2f} EUR {'ok' if ok else 'MISMATCH'}")
        if not ok:
            problems.append(f"{card.label}: balance {row.balance} != {card.balance} - {spent} (charged {charged})")
    lines += payments_report(world, {(r.dev, r.seq): r for r in rows}, problems)
    lines.append(f"anomalies: {len(anomalies)}")
    return not problems, lines + [f"PROBLEM: {p}" for p in problems]


def payments_report(world: World, stored: dict, problems: list[str]) -> list[str]:
    """Every ad-hoc payment the drivers made: the hold, what was captured, and its record: captured
    must equal the record's signed total (never above the hold), the record's auth "adhoc"."""
    from backend.models import Payment

    with world.payments.sessions() as db:
        payments = {p.id: p for p in db.query(Payment)}
    lines = ["", "ad-hoc payments (Stripe gateway EMULATOR):"]
    for dev, pid in world.paid:
        p = payments.get(pid)
        if p is None:
            problems.append(f"payment {pid[:8]} on {dev}: not stored")
            continue
        s = stored.get((p.dev, p.seq)) if p.seq is not None else None
        lines.append(f"  {dev} seq {p.seq if p.seq is not None else '-'}: payment {pid[:8]} {p.state}, hold "
                     f"{p.amount_held / 100:.2f}, captured {p.captured / 100:.2f} {p.currency}, record "
                     f"{'auth ' + s.auth + ', signed total ' + format(s.cost_incl / 100, '.2f') if s else 'missing'}")
        if p.state != "captured" or s is None:
            problems.append(f"payment {pid[:8]} on {dev}: {p.state} {p.detail!r}, record {'stored' if s else 'missing'}")
        elif s.auth != "adhoc" or p.captured != s.cost_incl or p.captured > p.amount_held or s.token != pid:
            problems.append(f"payment {pid[:8]}: captured {p.captured} of hold {p.amount_held}, record {dev} seq "
                            f"{p.seq} auth {s.auth} total {s.cost_incl} token {s.token[:8]}")
    if not world.paid:
        lines.append("  none")
    return lines


@dataclass
class Played:
    """One scenario played (play_world): the exit code, the printed report's lines and the stopped
    world (its database, wire log and payments stay readable)."""
    code: int
    lines: list[str]
    world: World
    last_seq: dict[str, int]


def play(work: Path, scenario: str, quiet: bool = False, micropython: str | None = None, heap: str | None = None,
         frames: bool = True) -> int:
    """frames: the display frames to PNG at the end (tools/sim.py: with --out only)."""
    if scenario not in SCENARIOS:
        print(f"sim: unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
        return 2
    return play_world(work, scenario, quiet, micropython, heap, frames).code


def play_world(work: Path, scenario: str, quiet: bool = False, micropython: str | None = None,
               heap: str | None = None, frames: bool = True) -> Played:
    world = World(work, echo=not quiet, micropython=micropython, heap=heap)
    last_seq: dict[str, int] = {}
    t0 = time.monotonic()
    failure = None
    try:
        with Live(world, quiet):
            SCENARIOS[scenario](world)
        last_seq = settled(world)
        ok, lines = report(world, quiet, last_seq)
    except Exception as exc:  # noqa: BLE001 - the report says what broke
        failure = exc
        ok, lines = False, [f"PROBLEM: scenario stopped: {exc!r}"]
        for c in world.chargers.values():
            if c.dev is not None:
                lines += [f"--- {c.name} (last lines) ---", *c.dev.lines[-30:]]
    finally:
        _write_out(world, work, frames)
        world.stop()
    if failure is None:  # billing needs only the database: the chargers are off by now
        try:
            billed, more = bill(world, work)
        except Exception as exc:  # noqa: BLE001
            failure, billed, more = exc, False, [f"PROBLEM: billing stopped: {exc!r}"]
        ok, lines = ok and billed, lines + more
    print(f"\n== sim report: scenario {scenario}, {time.monotonic() - t0:.0f} s ==")
    print("\n".join(lines))
    print("sim: OK" if ok else "sim: FAILED")
    if failure is not None and not quiet:
        raise failure
    return Played(0 if ok else 1, lines, world, last_seq)


def _write_out(world: World, work: Path, frames: bool = True) -> None:
    """--out: the raw record messages as JSON lines, each device's public key (PEM), and every
    display frame the chargers drew as PNG in work/display/ (frames)."""
    with open(work / "records.jsonl", "w") as f:
        for topic, payload in world.received:
            f.write(json.dumps({"topic": topic, "payload": payload.decode()}) + "\n")
    for name, c in world.chargers.items():
        if c.pubkey_pem:
            (work / f"{name}.pem").write_text(c.pubkey_pem)
    if frames:
        from sim import display

        t0 = time.monotonic()
        made = sum(len(display.convert(c.frames, work / "display", prefix=f"{name}-"))
                   for name, c in world.chargers.items() if c.frames.exists())
        world.say(f"display: {made} frames as PNG in {work / 'display'} ({time.monotonic() - t0:.1f} s)")
    if Path(world.backend.db).exists() and Path(world.backend.db).parent != work:
        shutil.copy(world.backend.db, work / "backend.db")
