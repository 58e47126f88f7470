"""Customers, their contracts (versioned terms), the cards they own, and the billing settings.

Every function checks its input first and raises BillingError before writing anything.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session as DbSession
from sqlalchemy.orm import sessionmaker

from backend.billing import terms
from backend.billing.document import Party
from backend.billing.terms import BillingError
from backend.models import BilledSession, BillingSetting, CardOwner, Contract, ContractVersion, Customer, Invoice, Session

Clock = Callable[[], float]
SELLER = "seller"
AUTO_REFUND = "auto_refund"  # {"void": bool, "meter_fault": bool}


# -- customers ----------------------------------------------------------------------------------

def add_customer(sessions: sessionmaker, cid: str, clock: Clock = time.time, **fields) -> Customer:
    terms.ident(cid, "customer id")
    values = terms.customer_fields(**fields)
    with sessions.begin() as db:
        if db.get(Customer, cid) is not None:
            raise BillingError(f"customer {cid!r} exists already")
        row = Customer(id=cid, created_at=int(clock()), **values)
        db.add(row)
    return row


def customer(db: DbSession, cid: str) -> Customer:
    row = db.get(Customer, cid)
    if row is None:
        raise BillingError(f"customer {cid!r} is unknown (customer add)")
    return row


def customer_party(c: Customer) -> Party:
    return terms.party({"name": c.name, "address": c.address, "country": c.country, "vat_id": c.vat_id,
                        "email": c.email, "postcode": c.postcode, "city": c.city})


# -- contracts ----------------------------------------------------------------------------------

def versions(db: DbSession, contract_id: str) -> list[ContractVersion]:
    return list(db.scalars(select(ContractVersion).where(ContractVersion.contract_id == contract_id)
                           .order_by(ContractVersion.version)))


def add_contract(sessions: sessionmaker, contract_id: str, customer_id: str, clock: Clock = time.time, **version) -> ContractVersion:
    """A new contract and its version 1 (valid_from, valid_to, cycle, payment_days, late_fee, tariff_id, rules)."""
    terms.ident(contract_id, "contract id")
    values = terms.version_terms(**version)
    with sessions.begin() as db:
        customer(db, customer_id)
        if db.get(Contract, contract_id) is not None:
            raise BillingError(f"contract {contract_id!r} exists already (contract set changes it)")
        now = int(clock())
        db.add(Contract(id=contract_id, customer_id=customer_id, created_at=now))
        db.flush()
        row = ContractVersion(contract_id=contract_id, version=1, created_at=now, **values)
        db.add(row)
    return row


def set_contract(sessions: sessionmaker, contract_id: str, valid_from: int, clock: Clock = time.time, **changes) -> ContractVersion:
    """A new version from valid_from on: the latest version with `changes` applied (keys of
    version_terms; None: keep). Refused when valid_from is not after the latest version's start or
    when a session at or after valid_from was already billed under this contract."""
    with sessions.begin() as db:
        contract = db.get(Contract, contract_id, with_for_update=True)
        if contract is None:
            raise BillingError(f"contract {contract_id!r} is unknown (contract add)")
        last = versions(db, contract_id)[-1]
        if valid_from <= last.valid_from:
            raise BillingError(f"version {last.version + 1} must start after version {last.version} "
                               f"(valid from {last.valid_from}); a contract's past is not rewritten")
        billed = db.scalar(select(func.max(Session.start_t)).select_from(BilledSession)
                           .join(Session, (Session.dev == BilledSession.dev) & (Session.seq == BilledSession.seq))
                           .join(Invoice, Invoice.number == BilledSession.invoice)
                           .where(Invoice.contract_id == contract_id))
        if billed is not None and billed >= valid_from:
            raise BillingError(f"sessions of {contract_id} up to {billed} are invoiced already: a new version "
                               "must start after them")
        base = {"cycle": last.cycle, "payment_days": last.payment_days, "late_fee": last.late_fee,
                "tariff_id": last.tariff_id, "valid_to": last.valid_to, "rules": json.loads(last.discounts)}
        base.update({k: v for k, v in changes.items() if v is not None})
        if changes.get("clear_valid_to"):
            base["valid_to"] = None
        base.pop("clear_valid_to", None)
        values = terms.version_terms(valid_from=valid_from, **base)
        row = ContractVersion(contract_id=contract_id, version=last.version + 1, created_at=int(clock()), **values)
        db.add(row)
    return row


def version_at(vs: list[ContractVersion], t: int) -> ContractVersion | None:
    """The version valid at t: the latest that started at or before t, unless its validity ended."""
    found = None
    for v in vs:
        if v.valid_from <= t:
            found = v
    if found is None or (found.valid_to is not None and t >= found.valid_to):
        return None
    return found


# -- cards --------------------------------------------------------------------------------------

def assign_card(sessions: sessionmaker, token: str, customer_id: str, contract_id: str | None = None,
                valid_from: int = 0, clock: Clock = time.time) -> CardOwner:
    """The card belongs to customer_id from valid_from on (its sessions from then on are theirs)."""
    terms.token(token)
    with sessions.begin() as db:
        customer(db, customer_id)
        if contract_id is not None:
            contract = db.get(Contract, contract_id)
            if contract is None:
                raise BillingError(f"contract {contract_id!r} is unknown (contract add)")
            if contract.customer_id != customer_id:
                raise BillingError(f"contract {contract_id} belongs to {contract.customer_id}, not {customer_id}")
        if db.get(CardOwner, (token, valid_from)) is not None:
            raise BillingError(f"card {token} already has an owner from {valid_from} on")
        billed = db.scalar(select(func.max(Session.start_t)).select_from(BilledSession)
                           .join(Session, (Session.dev == BilledSession.dev) & (Session.seq == BilledSession.seq))
                           .where(Session.token == token))
        if billed is not None and billed >= valid_from:
            raise BillingError(f"sessions of this card up to {billed} are billed already: assign it from a later time")
        row = CardOwner(token=token, valid_from=valid_from, customer_id=customer_id, contract_id=contract_id,
                        assigned_at=int(clock()))
        db.add(row)
    return row


def owner_at(owners: list[CardOwner], t: int) -> CardOwner | None:
    found = None
    for o in owners:  # sorted by valid_from
        if o.valid_from <= t:
            found = o
    return found


# -- settings -----------------------------------------------------------------------------------

def set_seller(sessions: sessionmaker, **fields) -> Party:
    """The operator as it appears on every document issued from now on (snapshotted at issue)."""
    values = terms.customer_fields(kind="company", language="en", currency="EUR", **fields)
    p = terms.party(values)
    with sessions.begin() as db:
        db.merge(BillingSetting(key=SELLER, value=terms.party_json(p)))
    return p


def seller(db: DbSession) -> Party:
    row = db.get(BillingSetting, SELLER)
    if row is None:
        raise BillingError("the seller is not set: billing seller --name ... --country ... first")
    return terms.party_from_json(row.value)


def set_auto_refund(sessions: sessionmaker, void: bool | None = None, meter_fault: bool | None = None) -> dict:
    with sessions.begin() as db:
        rules = auto_refund(db)
        if void is not None:
            rules["void"] = void
        if meter_fault is not None:
            rules["meter_fault"] = meter_fault
        db.merge(BillingSetting(key=AUTO_REFUND, value=json.dumps(rules, sort_keys=True)))
    return rules


def auto_refund(db: DbSession) -> dict:
    row = db.get(BillingSetting, AUTO_REFUND)
    rules = {"void": False, "meter_fault": False}
    if row is not None:
        rules.update(json.loads(row.value))
    return rules
