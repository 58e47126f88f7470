"""Sessions out: CSV for spreadsheets, OCPI 2.2.1 CDRs (with the OCMF string as signed data)."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from backend.models import Device, Session

CSV_COLUMNS = ("dev", "seq", "token", "contract", "auth", "start", "start_tq", "stop", "stop_tq", "stop_reason",
               "start_wh", "stop_wh", "energy_wh", "currency", "cost_excl", "cost_incl", "flags", "tariff_id",
               "tariff_ver", "meter_model", "meter_serial", "fw")

# How the card was authorized -> OCPI AuthMethod
AUTH_METHOD = {"online": "AUTH_REQUEST", "remote": "COMMAND"}  # list, cache, offline, master: WHITELIST
MINOR_UNITS = {"JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3, "OMR": 3, "TND": 3}  # ISO 4217 exponents; default 2


@dataclass(frozen=True)
class Party:
    country_code: str = "DE"
    party_id: str = "EVC"


def iso(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Selection:
    """The sessions an export names, iterated as (Session, Device). The CDR export adds a credit
    CDR for each session a credit note (backend/billing/refunds.py) credited, issued in the same
    time range."""

    sessions: sessionmaker
    start: int | None
    end: int | None
    device: str | None

    def __iter__(self) -> Iterator[tuple[Session, Device]]:
        q = select(Session, Device).join(Device, Device.id == Session.dev).order_by(Session.dev, Session.seq)
        if self.start is not None:
            q = q.where(Session.start_t >= self.start)
        if self.end is not None:
            q = q.where(Session.start_t < self.end)
        if self.device is not None:
            q = q.where(Session.dev == self.device)
        with self.sessions() as db:
            for s, d in db.execute(q).yield_per(500):
                yield s, d

    def credits(self) -> Iterator[tuple[Session, Device, dict]]:
        """(session, device, {n, number, net, tax, issued_at}) per credit note and session; n counts
        the session's credits (1, 2, ...) over all time, so a credit CDR's id never changes."""
        from backend.models import Invoice, InvoiceLine  # noqa: PLC0415 - billing tables

        q = (select(InvoiceLine.dev, InvoiceLine.seq, Invoice.number, Invoice.issued_at,
                    func.sum(InvoiceLine.net), func.sum(InvoiceLine.tax))
             .join(Invoice, Invoice.number == InvoiceLine.invoice)
             .where(Invoice.kind == "credit_note", InvoiceLine.kind == "refund", InvoiceLine.dev.is_not(None))
             .group_by(InvoiceLine.dev, InvoiceLine.seq, Invoice.number, Invoice.issued_at, Invoice.series, Invoice.seq)
             .order_by(InvoiceLine.dev, InvoiceLine.seq, Invoice.series, Invoice.seq))
        if self.device is not None:
            q = q.where(InvoiceLine.dev == self.device)
        with self.sessions() as db:
            n, last = 0, None
            for dev, seq, number, issued_at, net, tax in db.execute(q).all():
                n = n + 1 if (dev, seq) == last else 1
                last = (dev, seq)
                if (self.start is not None and issued_at < self.start) or (self.end is not None and issued_at >= self.end):
                    continue
                s, d = db.get(Session, (dev, seq)), db.get(Device, dev)
                yield s, d, {"n": n, "number": number, "net": int(net), "tax": int(tax), "issued_at": issued_at}


def select_sessions(sessions: sessionmaker, start: int | None, end: int | None, device: str | None) -> Selection:
    return Selection(sessions, start, end, device)


def to_csv(rows: Iterator[tuple[Session, Device]], out: io.TextIOBase) -> int:
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)
    n = 0
    for s, _ in rows:
        values = {c: getattr(s, c, None) for c in CSV_COLUMNS}
        values["start"], values["stop"] = iso(s.start_t), iso(s.stop_t)
        w.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])
        n += 1
    return n


def _money(minor: int, currency: str) -> float:
    # Decimal makes the division exact; the float that JSON needs prints back the same digits.
    return float(Decimal(minor).scaleb(-MINOR_UNITS.get(currency, 2)))


def cdr(s: Session, d: Device, party: Party) -> dict:
    hours = Decimal(s.stop_t - s.start_t) / 3600
    kwh = Decimal(s.energy_wh) / 1000
    ocmf_payload = s.ocmf[5:].rpartition("|")[0]
    out = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": f"{s.dev}-{s.seq}",
        "start_date_time": iso(s.start_t),
        "end_date_time": iso(s.stop_t),
        "session_id": f"{s.dev}-{s.seq}",
        "cdr_token": {"country_code": party.country_code, "party_id": party.party_id, "uid": s.token, "type": "RFID",
                      "contract_id": s.contract or s.token},
        "auth_method": AUTH_METHOD.get(s.auth, "WHITELIST"),
        # The backend knows the charger, not its street address: operators map evse_uid to a location.
        "cdr_location": {"id": s.dev, "evse_uid": s.dev, "evse_id": s.dev, "connector_id": "1"},
        "meter_id": s.meter_serial,
        "currency": s.currency,
        "charging_periods": [{"start_date_time": iso(s.start_t),
                              "dimensions": [{"type": "ENERGY", "volume": float(kwh)},
                                             {"type": "TIME", "volume": float(round(hours, 6))}],
                              "tariff_id": s.tariff_id}],
        "signed_data": {
            "encoding_method": "OCMF",
            "public_key": d.pubkey.hex(),
            "signed_values": [{"nature": "Session", "plain_data": ocmf_payload, "signed_data": s.ocmf}],
            "url": "",
        },
        "total_cost": {"excl_vat": _money(s.cost_excl, s.currency), "incl_vat": _money(s.cost_incl, s.currency)},
        "total_energy": float(kwh),
        "total_time": float(round(hours, 6)),
        "last_updated": iso(s.stored_at),
    }
    remark = ",".join(f for f in (s.flags, s.stop_reason) if f)
    if remark:
        out["remark"] = remark
    return out


def credit_cdr(s: Session, d: Device, party: Party, credit: dict) -> dict:
    """OCPI 2.2.1 Credit CDR: the original's data with `credit`, `credit_reference_id` (the
    original CDR's id) and the credited amounts, negative, as total_cost (all of the original's
    for a full refund; the part refunded for a partial one)."""
    out = cdr(s, d, party)
    out.update(id=f"{s.dev}-{s.seq}-C{credit['n']}", credit=True, credit_reference_id=f"{s.dev}-{s.seq}",
               invoice_reference_id=credit["number"], last_updated=iso(credit["issued_at"]),
               total_cost={"excl_vat": _money(credit["net"], s.currency),
                           "incl_vat": _money(credit["net"] + credit["tax"], s.currency)})
    return out


def to_cdrs(rows: Iterator[tuple[Session, Device]], out: io.TextIOBase, party: Party = Party()) -> int:
    """A JSON array of CDRs, streamed one object at a time (then the credit CDRs of a Selection)."""
    out.write("[")
    n = 0
    for s, d in rows:
        out.write(("," if n else "") + "\n" + json.dumps(cdr(s, d, party)))
        n += 1
    for s, d, credit in rows.credits() if isinstance(rows, Selection) else ():
        out.write(("," if n else "") + "\n" + json.dumps(credit_cdr(s, d, party, credit)))
        n += 1
    out.write("\n]\n")
    return n
