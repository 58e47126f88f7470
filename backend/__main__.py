"""python -m backend COMMAND: serve, device, tariff, authlist, card, cmd, keys, broker, export, import."""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
from pathlib import Path

from backend.billing import cli as billing_cli
from backend.billing import doc_cli
from backend.payments import cli as pay_cli
from backend.web import cli as web_cli

DEFAULT_DB = "backend.db"
DEFAULT_KEYS = "backend-keys"


def _epoch(text: str) -> int:
    """Epoch seconds, or an ISO 8601 date/time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int((t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp())


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", default=os.environ.get("EVC_DB", DEFAULT_DB),
                   help="SQLite file path or postgresql://user:pass@host/db (env EVC_DB; default %(default)s)")
    p.add_argument("--broker", default=os.environ.get("EVC_BROKER", "mqtt://127.0.0.1:1883"),
                   help="mqtt://host:port or mqtts://user@host:port (env EVC_BROKER)")
    p.add_argument("--broker-ca", default=os.environ.get("EVC_BROKER_CA"),
                   help="CA certificate that signed the broker's, for mqtts (env EVC_BROKER_CA; default: the system's)")
    p.add_argument("--broker-password-file", default=os.environ.get("EVC_BROKER_PASSWORD_FILE"),
                   help="file holding the broker password of the URL's user (env EVC_BROKER_PASSWORD_FILE)")
    p.add_argument("--prefix", default="evc", help="MQTT topic prefix (default %(default)s)")
    p.add_argument("--keys", default=os.environ.get("EVC_BACKEND_KEYS", DEFAULT_KEYS),
                   help="folder of the backend key and site secret (env EVC_BACKEND_KEYS)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def parser() -> argparse.ArgumentParser:
    common = _common()
    top = argparse.ArgumentParser(prog="python -m backend", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    def leaf(parent, name: str, helptext: str) -> argparse.ArgumentParser:
        return parent.add_parser(name, parents=[common], help=helptext, description=helptext)

    serve = leaf(sub, "serve", "ingest records: verify, store exactly once, acknowledge")
    serve.add_argument("--group", default="evc-backend", help="shared subscription group (workers with one group split the load)")
    serve.add_argument("--no-share", action="store_true", help="plain subscription (a broker without shared subscriptions)")
    serve.add_argument("--gap-grace", type=int, default=30, help="seconds a record may wait for its predecessor before a gap is reported")
    serve.add_argument("--batch", type=int, default=64, help="most messages stored in one transaction")
    serve.add_argument("--partition", metavar="I/N", default=None,
                       help="device affinity: this worker takes the devices of partition I of N (default: "
                            "$EVC_BACKEND_PARTITION, else the shared subscription); start N workers, 0/N..N-1/N")
    serve.add_argument("--auth-ttl", type=int, default=24 * 3600,
                       help="seconds a charger may reuse an online acceptance from its cache (refusals: at most 300)")

    device = sub.add_parser("device", help="device registry").add_subparsers(dest="action", required=True)
    add = leaf(device, "add", "register a device and its public key")
    add.add_argument("id")
    add.add_argument("--pubkey", required=True, type=Path, help="P-256 public key: PEM, DER or hex DER")
    leaf(device, "list", "registered devices and their acknowledged seq")

    tariff = sub.add_parser("tariff", help="tariffs").add_subparsers(dest="action", required=True)
    tpush = leaf(tariff, "push", "compile an OCPI 2.2.1 tariff, sign it and publish it retained")
    _target(tpush)
    tpush.add_argument("file", type=Path, help="OCPI 2.2.1 tariff JSON")
    tpush.add_argument("--contract", help="the tariff for this contract id (default: the device's default tariff)")
    tpush.add_argument("--tz", default="UTC0", help="POSIX TZ rule the device judges time restrictions in")

    authlist = sub.add_parser("authlist", help="card lists").add_subparsers(dest="action", required=True)
    apush = leaf(authlist, "push", "publish a signed card list (full, or --diff)")
    _target(apush)
    apush.add_argument("file", type=Path, nargs="?", help="card list CSV (uid|token,status,exp,contract,balance)")
    apush.add_argument("--diff", action="store_true", help="differential: the CSV's rows plus every balance that moved")

    card = sub.add_parser("card", help="prepaid accounts").add_subparsers(dest="action", required=True)
    credit = leaf(card, "credit", "add to (or, negative, take from) a prepaid balance")
    who = credit.add_mutually_exclusive_group(required=True)
    who.add_argument("--token")
    who.add_argument("--uid", help="card UID in hex (token computed with the site secret)")
    credit.add_argument("amount", type=int, help="minor units")
    billing_cli.add_card_assign(card, leaf)

    cmd = sub.add_parser("cmd", help="commands").add_subparsers(dest="action", required=True)
    stop = leaf(cmd, "stop", "remote stop of the running session")
    stop.add_argument("device")
    stop.add_argument("--ttl", type=int, default=300, help="seconds the command stays valid")
    tcmd = leaf(cmd, "time", "send the backend's time (a device with no time source, docs/protocol.md)")
    tcmd.add_argument("device")
    tcmd.add_argument("--ttl", type=int, default=60, help="seconds the command stays valid")

    keys = sub.add_parser("keys", help="backend key pair and site secret").add_subparsers(dest="action", required=True)
    kinit = leaf(keys, "init", "create the backend key pair and the site secret")
    kinit.add_argument("--force", action="store_true")
    kinit.add_argument("--site-secret", help="hex (default: 32 random bytes)")
    kshow = leaf(keys, "show", "print the device config values: backend_key (and site_secret with --show-secrets)")
    kshow.add_argument("--show-secrets", action="store_true", help="print the site secret too (for a device config)")

    broker = sub.add_parser("broker", help="broker security: per-device credentials, ACLs, mosquitto files")
    baction = broker.add_subparsers(dest="action", required=True)
    bcreds = leaf(baction, "creds", "new broker password for a device (or the backend): shown once, only its hash is kept")
    bwho = bcreds.add_mutually_exclusive_group(required=True)
    bwho.add_argument("--dev", help="device id (its broker user name)")
    bwho.add_argument("--backend", nargs="?", const="evc-backend", metavar="USER",
                      help="a backend user (default evc-backend)")
    bcreds.add_argument("--out", type=Path,
                        help="write {\"user\", \"password\"} to this file (mode 600, for flash.py provision --broker-creds) "
                             "instead of printing the password")
    brevoke = leaf(baction, "revoke", "remove a device's or backend user's broker credentials")
    brevoke.add_argument("user")
    leaf(baction, "list", "the broker users (no secrets)")
    bfiles = leaf(baction, "files", "write mosquitto's password files, ACLs and a mosquitto.conf")
    bfiles.add_argument("--out", type=Path, required=True, help="folder for passwd, acl, passwd.backend, acl.backend, mosquitto.conf")
    bfiles.add_argument("--install-dir", help="where those files will be on the broker host (default: --out)")
    bfiles.add_argument("--listen", default="8883", help="the chargers' TLS listener: PORT or HOST:PORT (default %(default)s)")
    bfiles.add_argument("--backend-listen", default="127.0.0.1:1884",
                        help="the backend's listener, HOST:PORT (default %(default)s; TLS unless on loopback)")
    bfiles.add_argument("--certfile", default="/etc/mosquitto/certs/server.crt", help="broker certificate (PEM)")
    bfiles.add_argument("--keyfile", default="/etc/mosquitto/certs/server.key", help="its private key (PEM)")
    bfiles.add_argument("--cafile", default="/etc/mosquitto/certs/ca.crt", help="the CA that signed it (PEM)")

    export = leaf(sub, "export", "sessions as CSV, OCPI 2.2.1 CDR JSON or S.A.F.E. transparency XML")
    export.add_argument("--format", choices=("csv", "ocpi-cdr", "safe-xml"), default="csv")
    doc_cli.add_export_options(export)
    export.add_argument("--from", dest="start", type=_epoch, help="sessions starting at or after (epoch or ISO)")
    export.add_argument("--to", dest="end", type=_epoch, help="sessions starting before (epoch or ISO)")
    export.add_argument("--device")
    export.add_argument("--out", type=Path, help="file (default: stdout)")
    export.add_argument("--country", default="DE", help="OCPI country_code of the CPO")
    export.add_argument("--party", default="EVC", help="OCPI party_id of the CPO")

    imp = leaf(sub, "import", "verify and store records exported over USB (tools/flash.py export-journal)")
    imp.add_argument("dir", type=Path)

    leaf(sub, "anomalies", "list stored anomalies")

    gap = sub.add_parser("gap", help="gaps in a device's records").add_subparsers(dest="action", required=True)
    accept = leaf(gap, "accept", "declare seqs up to THROUGH lost for good, so the records behind them are billed")
    accept.add_argument("device")
    accept.add_argument("through", type=int, help="the last lost seq (a record must wait at THROUGH+1)")
    accept.add_argument("--reason", required=True, help="why, for the audit trail (e.g. the device's quarantine event)")
    # customer, contract, billing, invoice, refund (backend/billing/cli.py); the groups take more actions
    billing_groups = billing_cli.add_parsers(sub, leaf)
    doc_cli.add_parsers(sub, leaf, billing_groups["invoice"])  # invoice pdf|xml, credit-note pdf|xml
    pay_cli.add_parsers(sub, leaf)  # pay serve|refund (backend/payments/cli.py)
    web_cli.add_parsers(sub, leaf)  # web, user add (backend/web/cli.py)
    return top


def _target(p: argparse.ArgumentParser) -> None:
    p.add_argument("device", nargs="?", help="device id")
    p.add_argument("--all", action="store_true", help="every registered device")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from backend import commands  # heavy imports only after argument errors had their chance

    try:
        if doc_cli.handles(args):
            return doc_cli.run(args)
        if billing_cli.handles(args):
            return billing_cli.run(args)
        if pay_cli.handles(args):
            return pay_cli.run(args)
        if web_cli.handles(args):
            return web_cli.run(args)
        if args.broker_ca or args.broker_password_file:
            from backend.mqtt import with_options

            args.broker = with_options(args.broker, args.broker_ca, args.broker_password_file)
        return commands.run(args)
    except (ValueError, OSError, ConnectionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
