"""Database tables (SQLAlchemy 2 typed ORM). Money in minor units, energy in Wh, time in epoch s.

The alembic migrations in backend/migrations create exactly these tables; a test compares them.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Device(Base):
    """A registered charger. head_seq/head_hash: the end of its verified, gap-free chain; that is
    also the cumulative ack (every seq 1..head_seq is stored, as a session or as an anomaly)."""

    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    pubkey: Mapped[bytes] = mapped_column(LargeBinary)  # SubjectPublicKeyInfo DER, P-256
    added_at: Mapped[int] = mapped_column(BigInteger)
    head_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64), default="")


class Session(Base):
    """A verified, chained record: the billable session."""

    __tablename__ = "sessions"
    dev: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)  # the JWS exactly as received
    token: Mapped[str] = mapped_column(String(64), index=True)
    auth: Mapped[str] = mapped_column(String(16))
    contract: Mapped[str | None] = mapped_column(String(64))
    tariff_id: Mapped[str] = mapped_column(String(64))
    tariff_ver: Mapped[str] = mapped_column(String(32))
    start_t: Mapped[int] = mapped_column(BigInteger, index=True)
    start_tq: Mapped[str] = mapped_column(String(1))
    start_wh: Mapped[int] = mapped_column(BigInteger)
    stop_t: Mapped[int] = mapped_column(BigInteger)
    stop_tq: Mapped[str] = mapped_column(String(1))
    stop_wh: Mapped[int] = mapped_column(BigInteger)
    stop_reason: Mapped[str] = mapped_column(String(16))
    energy_wh: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    cost_excl: Mapped[int] = mapped_column(BigInteger)
    cost_incl: Mapped[int] = mapped_column(BigInteger)
    flags: Mapped[str] = mapped_column(String(255))  # comma-separated
    meter_model: Mapped[str] = mapped_column(String(64))
    meter_serial: Mapped[str] = mapped_column(String(64))
    fw: Mapped[str] = mapped_column(String(32))
    ocmf: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the signed payload JSON, as received
    charged: Mapped[int] = mapped_column(BigInteger, default=0)  # taken from a prepaid balance
    stored_at: Mapped[int] = mapped_column(BigInteger)


class Pending(Base):
    """A record signed by its device whose predecessor has not arrived yet (two workers can take a
    device's records out of order, and a real gap waits here): not billed, not acknowledged."""

    __tablename__ = "pending"
    dev: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    hash: Mapped[str] = mapped_column(String(64))
    prev: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)
    problem: Mapped[str | None] = mapped_column(Text)  # "kind: detail" found at arrival, if any
    received_at: Mapped[int] = mapped_column(BigInteger)
    gap_reported: Mapped[bool] = mapped_column(Boolean, default=False)


class Anomaly(Base):
    """Anything that is not a billable session: kept with the raw message for review.
    slot=True: the record was signed by its device, so it fills its seq (and is acknowledged);
    forged or unknown messages never fill a slot. raw is the whole message when the device signed
    it, else its first 4 KiB; raw_len and raw_sha256 describe all of it (backend/guard.py)."""

    __tablename__ = "anomalies"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dev: Mapped[str | None] = mapped_column(String(64), index=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(24))
    detail: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(String(255))
    raw: Mapped[str] = mapped_column(Text)
    hash: Mapped[str | None] = mapped_column(String(64))
    slot: Mapped[bool] = mapped_column(Boolean, default=False)
    received_at: Mapped[int] = mapped_column(BigInteger)
    raw_len: Mapped[int | None] = mapped_column(BigInteger)  # bytes of the message as received
    raw_sha256: Mapped[str | None] = mapped_column(String(64))  # of the message as received


class AnomalyCount(Base):
    """Every anomaly a message caused, counted per source, kind and hour; only the first few of each
    (Ingestor.samples) are stored in `anomalies`, so a flood of garbage cannot fill the database.
    source: the registered device the topic names, or "" for everything else (bad topics, unknown
    devices: their names are the sender's choice, so they share one count)."""

    __tablename__ = "anomaly_counts"
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    hour: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # epoch s at the start of the hour
    seen: Mapped[int] = mapped_column(BigInteger)
    last_at: Mapped[int] = mapped_column(BigInteger)
    last_topic: Mapped[str] = mapped_column(String(255))


Index("ix_anomalies_slot", Anomaly.dev, Anomaly.seq, unique=True,
      sqlite_where=text("slot"), postgresql_where=text("slot"))


class Card(Base):
    """A card known to the backend. balance None: postpaid; else prepaid, in minor units."""

    __tablename__ = "cards"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    exp: Mapped[int | None] = mapped_column(BigInteger)
    contract: Mapped[str | None] = mapped_column(String(64))
    balance: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Reservation(Base):
    """Prepaid funds held for one online session on one charger (backend/prepaid.py): named on the
    device by (dev, token, exp); held until its record settles it or, past exp, until the charger
    shows it can no longer use it. state: held | settled | released."""

    __tablename__ = "reservations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64))
    dev: Mapped[str] = mapped_column(String(32))
    amount: Mapped[int] = mapped_column(BigInteger)
    exp: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    seq: Mapped[int | None] = mapped_column(BigInteger)  # the record that settled it
    charged: Mapped[int | None] = mapped_column(BigInteger)
    closed_at: Mapped[int | None] = mapped_column(BigInteger)


Index("ix_reservations_name", Reservation.dev, Reservation.token, Reservation.exp, unique=True)
Index("ix_reservations_token_state", Reservation.token, Reservation.state)


class Allowance(Base):
    """A charger's offline share of a prepaid card as last handed out in its list (backend/prepaid.py):
    it may spend `amount` less what its records after bal_seq charged."""

    __tablename__ = "allowances"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    bal_seq: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)


class Downlink(Base):
    """Every signed document published, with its version (monotonic per device and type)."""

    __tablename__ = "downlinks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dev: Mapped[str] = mapped_column(String(32), index=True)
    type: Mapped[str] = mapped_column(String(16))
    ver: Mapped[int] = mapped_column(BigInteger)
    part: Mapped[int] = mapped_column(Integer, default=1)
    parts: Mapped[int] = mapped_column(Integer, default=1)
    doc: Mapped[str] = mapped_column(Text)
    published_at: Mapped[int] = mapped_column(BigInteger)


class DeviceState(Base):
    """What a device last reported holding (its retained status) and what the backend last pushed
    to bring it up to date (backend/converge.py): versions only move when the device says so."""

    __tablename__ = "device_states"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    tariff_ver: Mapped[int] = mapped_column(BigInteger, default=0)  # as the device reports them
    list_ver: Mapped[int] = mapped_column(BigInteger, default=0)
    collecting_ver: Mapped[int | None] = mapped_column(BigInteger)  # a list version arriving in parts
    refused_ver: Mapped[int | None] = mapped_column(BigInteger)  # the last list version the device gave up on
    refused_reason: Mapped[str | None] = mapped_column(String(32))
    seen_at: Mapped[int] = mapped_column(BigInteger, default=0)
    pushed_tariff_ver: Mapped[int] = mapped_column(BigInteger, default=0)  # republished by convergence
    pushed_tariff_at: Mapped[int] = mapped_column(BigInteger, default=0)
    pushed_list_ver: Mapped[int] = mapped_column(BigInteger, default=0)
    pushed_list_at: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str | None] = mapped_column(Text)  # the last status as received (JSON): the dashboard's live state


class DevicePresence(Base):
    """Every change of a device's online flag as its statuses reported it (the last will
    {"online": false} included), at the backend's time of receipt: the dashboard's offline periods."""

    __tablename__ = "device_presence"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dev: Mapped[str] = mapped_column(String(32))
    at: Mapped[int] = mapped_column(BigInteger)
    online: Mapped[bool] = mapped_column(Boolean)


Index("ix_device_presence_dev_at", DevicePresence.dev, DevicePresence.at)


class ListEntry(Base):
    """The card list as last sent to a device: the base of differential pushes."""

    __tablename__ = "list_entries"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry: Mapped[str] = mapped_column(Text)  # JSON of the entry as sent


class TariffSource(Base):
    """The OCPI tariffs a device prices with: contract "" is the default. Every push recompiles the
    device's whole tariff document (default + per-contract) from these."""

    __tablename__ = "tariff_sources"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    contract: Mapped[str] = mapped_column(String(64), primary_key=True)
    ocpi: Mapped[str] = mapped_column(Text)  # the OCPI 2.2.1 tariff object, JSON


# -- billing (#20, backend/billing/): customers, contracts, invoices, receipts, credit notes ----------


class Customer(Base):
    """Who is invoiced: a driver or a company/fleet."""

    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # driver | company
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(Text)  # street lines as printed, "\n"-separated
    postcode: Mapped[str] = mapped_column(String(16))
    city: Mapped[str] = mapped_column(String(100))
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    vat_id: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[int] = mapped_column(BigInteger)


class Contract(Base):
    """A contract id as the card list and the signed records carry it; its terms are versioned."""

    __tablename__ = "contracts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    created_at: Mapped[int] = mapped_column(BigInteger)


class ContractVersion(Base):
    """Terms from valid_from on (until the next version, and never at or after valid_to): a session
    is billed under the version valid at its start."""

    __tablename__ = "contract_versions"
    contract_id: Mapped[str] = mapped_column(ForeignKey("contracts.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    valid_from: Mapped[int] = mapped_column(BigInteger)
    valid_to: Mapped[int | None] = mapped_column(BigInteger)
    tariff_id: Mapped[str | None] = mapped_column(String(64))
    cycle: Mapped[str] = mapped_column(String(16))  # per_session | weekly | monthly
    payment_days: Mapped[int] = mapped_column(Integer)
    discounts: Mapped[str] = mapped_column(Text)  # JSON list, backend/billing/terms.py
    late_fee: Mapped[int] = mapped_column(BigInteger)  # minor units once an invoice is overdue; 0: none
    created_at: Mapped[int] = mapped_column(BigInteger)


class CardOwner(Base):
    """A card (token) belongs to a customer from valid_from on; contract_id: the contract its
    sessions are billed under when the signed record names none."""

    __tablename__ = "card_owners"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    valid_from: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_id: Mapped[str | None] = mapped_column(ForeignKey("contracts.id"))
    assigned_at: Mapped[int] = mapped_column(BigInteger)


class NumberSeries(Base):
    """The last number issued per series ("INV-2026"): locked in the transaction that issues."""

    __tablename__ = "number_series"
    series: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(BigInteger)


class Invoice(Base):
    """An issued document: invoice, receipt or credit note (refers_to: what it corrects). Never
    changed after issue except paid_at and late_fee_by; buyer/seller are snapshots (JSON)."""

    __tablename__ = "invoices"
    number: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # invoice | receipt | credit_note
    series: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(BigInteger)
    customer_id: Mapped[str | None] = mapped_column(ForeignKey("customers.id"), index=True)
    contract_id: Mapped[str | None] = mapped_column(String(64))
    contract_ver: Mapped[int | None] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    issued_at: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[int | None] = mapped_column(BigInteger)  # epoch s, inclusive
    period_end: Mapped[int | None] = mapped_column(BigInteger)  # epoch s, exclusive
    due_at: Mapped[int | None] = mapped_column(BigInteger)
    billing_period: Mapped[str] = mapped_column(String(7))  # the run's YYYY-MM ("" for credit notes)
    refers_to: Mapped[str | None] = mapped_column(ForeignKey("invoices.number"), index=True)
    buyer: Mapped[str] = mapped_column(Text)
    seller: Mapped[str] = mapped_column(Text)
    language: Mapped[str] = mapped_column(String(2))
    total_net: Mapped[int] = mapped_column(BigInteger)
    total_tax: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text)
    payment_terms: Mapped[str] = mapped_column(String(255))
    paid_at: Mapped[int | None] = mapped_column(BigInteger)
    late_fee_by: Mapped[str | None] = mapped_column(String(32))  # the invoice that charged its late fee


Index("ix_invoices_series_seq", Invoice.series, Invoice.seq, unique=True)
Index("ix_invoices_contract", Invoice.contract_id)  # billing run: energy billed per contract (0008)


class InvoiceLine(Base):
    """A line as printed; dev/seq/record_hash name the session a session, discount or refund line is about."""

    __tablename__ = "invoice_lines"
    invoice: Mapped[str] = mapped_column(ForeignKey("invoices.number"), primary_key=True)
    pos: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # session | discount | fee | refund
    description: Mapped[str] = mapped_column(String(255))
    net: Mapped[int] = mapped_column(BigInteger)
    vat_bp: Mapped[int | None] = mapped_column(Integer)
    tax: Mapped[int] = mapped_column(BigInteger)
    dev: Mapped[str | None] = mapped_column(String(32))
    seq: Mapped[int | None] = mapped_column(BigInteger)
    record_hash: Mapped[str | None] = mapped_column(String(64))
    main: Mapped[bool] = mapped_column(Boolean, default=False)  # the line that carries the session reference


Index("ix_invoice_lines_session", InvoiceLine.dev, InvoiceLine.seq)


class BilledSession(Base):
    """A session is billed once (this primary key); amount: what its document charged for it after
    discounts, gross; refunded: credited so far. Refunds lock this row."""

    __tablename__ = "billed_sessions"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    invoice: Mapped[str] = mapped_column(ForeignKey("invoices.number"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)


class BillingSetting(Base):
    """Operator settings of billing (the seller's details, automatic refund rules): JSON values."""

    __tablename__ = "billing_settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Payment(Base):
    """An ad-hoc payment (backend/payments/): a card hold at a gateway for one session. id is the
    payment's reference: the start command carries it and the session's record names it as its
    token. state: new (hold asked) -> held -> commanded (start sent) -> started -> captured, or
    released / failed. captured and refunded in minor units of currency."""

    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(16))
    hold_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    dev: Mapped[str] = mapped_column(String(32), index=True)
    code: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    amount_held: Mapped[int] = mapped_column(BigInteger)
    captured: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    state: Mapped[str] = mapped_column(String(16), index=True)
    seq: Mapped[int | None] = mapped_column(BigInteger)  # the session's record, once it is stored
    detail: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[int] = mapped_column(BigInteger)
    deadline_at: Mapped[int] = mapped_column(BigInteger)  # released when the session has not started by then


class PaymentCode(Base):
    """The one-time payment code a charger last announced in its retained status (its idle screen's link)."""

    __tablename__ = "payment_codes"
    dev: Mapped[str] = mapped_column(String(32), primary_key=True)
    code: Mapped[str] = mapped_column(String(16))
    seen_at: Mapped[int] = mapped_column(BigInteger)


class PaymentRefund(Base):
    """A refund sent to the gateway: written (pending) before the call, so a retry after a crash uses
    the same idempotency key (the row's id) and is not paid out twice."""

    __tablename__ = "payment_refunds"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))  # pending | done
    gateway_ref: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)


# -- operator dashboard (#22, backend/web/): accounts, login sessions, audit log, query indexes -------


class WebUser(Base):
    """An operator account of the dashboard. role: admin | viewer; pw_hash: argon2id (argon2-cffi)."""

    __tablename__ = "web_users"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    pw_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[int] = mapped_column(BigInteger)


class WebLogin(Base):
    """A logged-in browser: id is the SHA-256 of the cookie's random token (a database leak gives
    no usable cookie); csrf: the token every POST of this login must carry."""

    __tablename__ = "web_logins"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(ForeignKey("web_users.name"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)


class AuditEntry(Base):
    """Every dashboard action, who did it and from where; failed logins too (the rate limit counts them)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[int] = mapped_column(BigInteger)
    user: Mapped[str] = mapped_column(String(64))
    ip: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text)


Index("ix_audit_log_limit", AuditEntry.action, AuditEntry.user, AuditEntry.ip, AuditEntry.at)
Index("ix_sessions_dev_start", Session.dev, Session.start_t)
Index("ix_sessions_contract", Session.contract)
Index("ix_sessions_token_start", Session.token, Session.start_t)
# the revenue trend groups by UTC day in this order (backend/web/queries.py trend; migration 0009)
Index("ix_sessions_currency_day", Session.currency, text("(start_t / 86400)"), Session.start_t, Session.energy_wh,
      Session.cost_incl)
