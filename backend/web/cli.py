"""`python -m backend web` (serve the dashboard) and `python -m backend user add NAME --role R`
(an operator account; the password is read from standard input, never from the command line)."""
from __future__ import annotations

import argparse
import getpass
import os
import sys


def add_parsers(sub, leaf) -> None:
    web = sub.add_parser("web", help="serve the operator's dashboard", description="serve the operator's dashboard")
    web.add_argument("--db", default=os.environ.get("EVC_DB", "backend.db"),
                     help="SQLite file path or postgresql://user:pass@host/db (env EVC_DB; default %(default)s)")
    web.add_argument("--broker", default=os.environ.get("EVC_BROKER"),
                     help="mqtt://host:port (env EVC_BROKER): remote stop and card blocking publish there; "
                          "without it they are refused with a message")
    web.add_argument("--keys", default=os.environ.get("EVC_BACKEND_KEYS", "backend-keys"),
                     help="folder of the backend key that signs what is pushed (env EVC_BACKEND_KEYS)")
    web.add_argument("--prefix", default="evc", help="MQTT topic prefix (default %(default)s)")
    web.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    web.add_argument("--port", type=int, default=8080, help="port (default %(default)s)")
    web.add_argument("--max-power-w", type=int, default=22_000,
                     help="the chargers' power: sessions delivering more energy per hour are flagged (default %(default)s)")
    web.add_argument("--secure-cookies", action="store_true", help="cookies only over HTTPS (behind a TLS proxy)")
    web.add_argument("-v", "--verbose", action="store_true")
    user = sub.add_parser("user", help="dashboard operators").add_subparsers(dest="action", required=True)
    add = leaf(user, "add", "add an operator; the password is read from standard input")
    add.add_argument("name")
    add.add_argument("--role", choices=("admin", "viewer"), required=True)


def handles(args: argparse.Namespace) -> bool:
    return args.command in ("web", "user")


def _password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise ValueError("the passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    from backend.db import open_db  # noqa: PLC0415

    if args.command == "user":
        from backend.web.auth import Accounts  # noqa: PLC0415

        Accounts(open_db(args.db)).add_user(args.name, _password(), args.role)
        print(f"operator {args.name} added ({args.role})")
        return 0
    if not 0 < args.port < 65536 or args.max_power_w <= 0:
        raise ValueError("--port must be 1..65535 and --max-power-w positive")
    import uvicorn  # noqa: PLC0415

    from backend.web.app import create_app  # noqa: PLC0415

    app = create_app(args.db, broker=args.broker, keys=args.keys, prefix=args.prefix, max_power_w=args.max_power_w,
                     secure_cookies=args.secure_cookies)
    uvicorn.run(app, host=args.host, port=args.port, log_level="debug" if args.verbose else "info")
    return 0
