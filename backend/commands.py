"""What each CLI command does (argument parsing lives in __main__.py)."""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from backend import cards, export, importer
from backend.db import open_db
from backend.downlink import Downlinks
from backend.ingest import Ingestor
from backend.keys import Keys, card_token, load_public_key
from backend.models import Anomaly, Device, Session
from backend.mqtt import publish_all
from backend.worker import Partition, Worker


def compile_tariff(tz: str):
    """The pricing helper's compiler (evc/tariff.py), imported only when a tariff is pushed."""
    from evc import tariff as compiler  # noqa: PLC0415

    def build(default: dict, contracts: dict[str, dict], ver: int) -> dict:
        return compiler.compile_doc(default, contracts, ver=ver, tz=tz)

    return build


def run(args: argparse.Namespace) -> int:
    keys = Keys(args.keys)
    if args.command == "keys":
        if args.action == "init":
            keys.init(force=args.force, site_secret=args.site_secret)
            print(f"backend key and site secret written to {keys.folder}")
        keys.site_secret()  # there and readable
        secret = keys.site_secret().hex() if getattr(args, "show_secrets", False) else \
            f"(not shown: in {keys.secret_file}, or keys show --show-secrets)"
        print(json.dumps({"backend_key": keys.public_hex(), "site_secret": secret}, indent=1))
        return 0
    if args.command == "broker":
        from backend import broker

        return broker.run(args)
    sessions = open_db(args.db)
    publish = lambda msgs: publish_all(args.broker, msgs)  # noqa: E731
    downlinks = Downlinks(sessions, keys, args.prefix)
    if args.command == "serve":
        return serve(args, sessions)
    if args.command == "device":
        if args.action == "add":
            pub = load_public_key(args.pubkey.read_bytes())
            with sessions.begin() as db:
                if db.get(Device, args.id) is not None:
                    raise ValueError(f"device {args.id!r} is already registered")
                db.add(Device(id=args.id, pubkey=pub, added_at=int(time.time()), head_seq=0, head_hash=""))
            print(f"device {args.id} registered")
        else:
            with sessions() as db:
                for d in db.scalars(select(Device).order_by(Device.id)):
                    n = db.scalar(select(func.count()).select_from(Session).where(Session.dev == d.id))
                    print(f"{d.id}\tacked {d.head_seq}\tsessions {n}")
        return 0
    if args.command == "tariff":
        ocpi = json.loads(args.file.read_text())
        msgs = downlinks.tariff(_device(args), ocpi, args.contract, compile_tariff(args.tz), publish)
    elif args.command == "authlist":
        device = _device(args)
        file = Path(args.file) if args.file else None
        rows = list(cards.read_csv(file, _secret_or_none(keys), allow_delete=args.diff)) if file else None
        msgs = downlinks.authlist(device, rows, args.diff, publish)
    elif args.command == "card":
        token = args.token or card_token(keys.site_secret(), bytes.fromhex(args.uid))
        print(f"{token} balance {downlinks.credit(token, args.amount)}")
        return 0
    elif args.command == "cmd" and args.action == "time":
        # t: the backend's clock when signing; the device takes it as its time while it has no
        # fresher SNTP sync (docs/protocol.md); exp = t + ttl bounds how late it may act on it
        msgs = downlinks.command(args.device, "time", publish, ttl_s=args.ttl, t=int(downlinks.clock()))
    elif args.command == "cmd":
        msgs = downlinks.command(args.device, args.action, publish, ttl_s=args.ttl)
    elif args.command == "export":
        rows = export.select_sessions(sessions, args.start, args.end, args.device)
        out = open(args.out, "w", newline="") if args.out else sys.stdout
        try:
            n = export.to_csv(rows, out) if args.format == "csv" else export.to_cdrs(rows, out, export.Party(args.country, args.party))
        finally:
            if args.out:
                out.close()
        print(f"{n} sessions exported", file=sys.stderr)
        return 0
    elif args.command == "import":
        counts = importer.import_dir(Ingestor(sessions, gap_grace_s=0), args.dir, args.prefix)
        print(" ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        return 0
    elif args.command == "gap":
        head = Ingestor(sessions).accept_gap(args.device, args.through, args.reason)
        print(f"{args.device}: head now at seq {head}; the device is acknowledged with its next resend")
        return 0
    elif args.command == "anomalies":
        with sessions() as db:
            for a in db.scalars(select(Anomaly).order_by(Anomaly.id)):
                print(f"{export.iso(a.received_at)}\t{a.kind}\t{a.dev}\t{a.seq}\t{a.detail}")
            # a flood is counted, not stored row by row (backend/ingest.py _anomaly): say how much more came
            from backend.ingest import SAMPLES_PER_HOUR  # noqa: PLC0415
            from backend.models import AnomalyCount  # noqa: PLC0415

            for c in db.scalars(select(AnomalyCount).where(AnomalyCount.seen > SAMPLES_PER_HOUR)
                                .order_by(AnomalyCount.hour, AnomalyCount.source, AnomalyCount.kind)):
                print(f"{export.iso(c.hour)}\t{c.kind}\t{c.source or '(unregistered)'}\t-\t"
                      f"{c.seen} in this hour, the first {SAMPLES_PER_HOUR} stored; last on {c.last_topic}")
        return 0
    else:
        raise ValueError(f"unknown command {args.command}")
    for topic, doc, retain in msgs:
        print(f"published {topic}{' (retained)' if retain else ''}: {len(doc)} bytes")
    return 0


def _device(args: argparse.Namespace) -> str | None:
    if args.all and args.device is not None and getattr(args, "file", "") is None:
        args.file, args.device = args.device, None  # `push --all FILE`: the one positional is the file
    if args.all == (args.device is not None):
        raise ValueError("name one DEVICE or --all")
    return None if args.all else args.device


def _secret_or_none(keys: Keys) -> bytes | None:
    try:
        return keys.site_secret()
    except ValueError:
        return None  # token-only lists need no secret; a UID row says so clearly


def serve(args: argparse.Namespace, sessions) -> int:
    ingestor = Ingestor(sessions, gap_grace_s=args.gap_grace)
    partition = Partition.parse(args.partition) if args.partition else "env"  # ValueError: main() says why
    worker = Worker(ingestor, args.broker, args.prefix, None if args.no_share else args.group, batch=args.batch,
                    key=Keys(args.keys).private_key(), auth_ttl_s=args.auth_ttl, partition=partition)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker.run(stop)
    return 0
