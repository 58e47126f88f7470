"""Broker security: per-device MQTT credentials and ACLs in mosquitto's own file formats.

Every charger logs in to the broker as itself (user name = device id, a random password made here)
and may publish only its own uplink topics and read only its own downlink topics; the backend logs
in as a backend user on a listener of its own. Kept in the backend's key folder (mode 600, hashes
only: a password is shown once, when `broker creds` makes it):

  broker-devices.passwd   chargers:      `<dev>:$7$<iterations>$<salt>$<hash>` (mosquitto_passwd's
  broker-backend.passwd   backend users:  PBKDF2-SHA512 format, which mosquitto 2 reads)

`broker files --out DIR` writes what mosquitto reads (docs/backend.md, "Broker security"):

  passwd, acl                  the chargers' listener (TLS, 8883, use_username_as_clientid)
  passwd.backend, acl.backend  the backend's listener (serve workers, the CLI)
  mosquitto.conf               both listeners, per_listener_settings true, allow_anonymous false
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.keys import Keys, write_private

DEVICE_PUBLISHES = ("rec", "status", "evt", "auth/req")  # device -> backend (docs/protocol.md)
DEVICE_READS = ("ack", "auth/res", "tariff", "authlist", "cmd")  # backend -> device
DEFAULT_BACKEND_USER = "evc-backend"
PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default; the passwords are 192 random bits
SALT_BYTES = 12  # as mosquitto_passwd
DEVICE_FILE = "broker-devices.passwd"
BACKEND_FILE = "broker-backend.passwd"


class BrokerAuthError(ValueError):
    """A bad user name, an unknown user, unreadable files: a clear message for the operator."""


def new_password() -> str:
    """192 random bits, URL- and config-safe (A-Z a-z 0-9 - _): no quoting anywhere."""
    return secrets.token_urlsafe(24)


def hash_password(password: str, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """mosquitto_passwd's default hash: `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    dk = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(dk).decode()}"


def check_password(hashed: str, password: str) -> bool:
    try:
        _, kind, iterations, salt, dk = hashed.split("$")
        if kind != "7":
            return False
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(dk))


def check_name(name: str, what: str = "user name") -> str:
    """A broker user name: the firmware's device id rule (1-32 ASCII letters, digits, - or _), which
    also keeps it safe in the password file (no ':'), the ACL (no spaces) and topics (no + # /)."""
    ok = 1 <= len(name) <= 32 and all(c.isascii() and (c.isalnum() or c in "-_") for c in name)
    if not ok:
        raise BrokerAuthError(f"{what} {name!r}: want 1-32 letters, digits, - or _ (the device id)")
    return name


def check_prefix(prefix: str) -> str:
    if not (0 < len(prefix) < 32) or any(c in prefix for c in "/+# \t\n$"):
        raise BrokerAuthError(f"prefix {prefix!r}: want a topic word without / + # $ or spaces")
    return prefix


def _read_passwd(path: Path) -> dict[str, str]:
    users: dict[str, str] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return users
    except OSError as exc:
        raise BrokerAuthError(f"cannot read {path}: {exc.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        user, sep, hashed = line.partition(":")
        if not sep or not hashed.startswith("$7$"):
            raise BrokerAuthError(f"{path} line {n}: not a mosquitto PBKDF2 password line (user:$7$...)")
        users[user] = hashed
    return users


def passwd_text(users: dict[str, str]) -> str:
    return "".join(f"{user}:{hashed}\n" for user, hashed in sorted(users.items()))


class BrokerAuth:
    """The broker users (hashes only) in the backend's key folder."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, backend: bool) -> Path:
        return self.folder / (BACKEND_FILE if backend else DEVICE_FILE)

    def devices(self) -> dict[str, str]:
        return _read_passwd(self._path(False))

    def backend_users(self) -> dict[str, str]:
        return _read_passwd(self._path(True))

    def _save(self, backend: bool, users: dict[str, str]) -> None:
        Keys.make_folder(self.folder)
        write_private(self._path(backend), passwd_text(users).encode())

    def new_credentials(self, user: str, backend: bool = False) -> str:
        """A new password for user (replacing any old one); returns it: the only time it exists in clear."""
        check_name(user, "backend user" if backend else "device id")
        other = self.devices() if backend else self.backend_users()
        if user in other:
            raise BrokerAuthError(f"{user!r} is already a {'device' if backend else 'backend user'}: "
                                  "a name is either a charger or the backend, never both")
        users = self.backend_users() if backend else self.devices()
        password = new_password()
        users[user] = hash_password(password)
        self._save(backend, users)
        return password

    def revoke(self, user: str) -> str:
        for backend in (False, True):
            users = self.backend_users() if backend else self.devices()
            if user in users:
                del users[user]
                self._save(backend, users)
                return "backend user" if backend else "device"
        raise BrokerAuthError(f"no broker user {user!r}")


# ---------------------------------------------------------------------------- mosquitto's files
def device_acl(devices: list[str], prefix: str = "evc") -> str:
    """acl_file for the chargers' listener: each device its own topics, nothing else."""
    check_prefix(prefix)
    out = ["# mosquitto acl_file for the chargers' listener, made by `python -m backend broker files`.",
           "# A charger publishes only its own uplink topics and reads only its own downlink topics;",
           "# anything not granted here is denied (a denied PUBLISH is acknowledged and dropped).", ""]
    for dev in sorted(devices):
        check_name(dev, "device id")
        out.append(f"user {dev}")
        out += [f"topic write {prefix}/{dev}/{t}" for t in DEVICE_PUBLISHES]
        out += [f"topic read {prefix}/{dev}/{t}" for t in DEVICE_READS]
        out.append("")
    return "\n".join(out)


def backend_acl(users: list[str], prefix: str = "evc") -> str:
    """acl_file for the backend's listener: read every charger's uplink (also through $share/...
    shared subscriptions, which mosquitto checks against the topic filter after the group), write
    every charger's downlink."""
    check_prefix(prefix)
    out = ["# mosquitto acl_file for the backend's listener, made by `python -m backend broker files`.", ""]
    for user in sorted(users):
        check_name(user, "backend user")
        out.append(f"user {user}")
        out += [f"topic read {prefix}/+/{t}" for t in DEVICE_PUBLISHES]
        out += [f"topic write {prefix}/+/{t}" for t in DEVICE_READS]
        out.append("")
    return "\n".join(out)


@dataclass
class Listen:
    host: str | None
    port: int

    @classmethod
    def parse(cls, text: str, what: str) -> "Listen":
        host, sep, port = text.rpartition(":")
        if not port.isdigit() or not 0 < int(port) < 65536 or (sep and not host):
            raise BrokerAuthError(f"{what} {text!r}: want PORT or HOST:PORT")
        return cls(host.strip("[]") or None, int(port))

    @property
    def loopback(self) -> bool:
        if self.host in (None, ""):
            return False
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def line(self) -> str:
        return f"listener {self.port}" + (f" {self.host}" if self.host else "")


def mosquitto_conf(install_dir: str, listen: Listen, backend_listen: Listen, certfile: str, keyfile: str,
                   cafile: str) -> str:
    """A mosquitto.conf (mosquitto 2) for the chargers' TLS listener and the backend's listener.

    The chargers' listener replaces every client id with the user name (use_username_as_clientid):
    a charger cannot take over another's session by connecting under its client id. The backend's
    listener keeps client ids (several workers log in as one user) and admits only backend users;
    it goes without TLS only when it listens on loopback."""
    d = install_dir.rstrip("/")
    tls = [f"certfile {certfile}", f"keyfile {keyfile}", f"cafile {cafile}", "tls_version tlsv1.2"]
    lines = [
        "# mosquitto.conf made by `python -m backend broker files` (docs/backend.md, \"Broker security\").",
        "# Password files and ACLs are per listener: chargers and the backend are separate user lists.",
        "per_listener_settings true",
        "set_tcp_nodelay true",
        "# The largest legitimate packet is a record (at most 64 KiB, a journal frame): anything larger",
        "# is refused by the broker before a worker or a charger has to receive it.",
        "max_packet_size 131072",
        "# Workers acknowledge (PUBACK) a record only after the transaction that stored it has committed:",
        "# the in-flight window to a worker bounds its batches (mosquitto's default is 20), and the queue",
        "# behind it must hold a fleet's backlog after an outage (the default 1000 would drop QoS 1 records).",
        "max_inflight_messages 100",
        "max_queued_messages 100000",
        "",
        "# Chargers: TLS only, one user per device (password_file), each confined to its own topics",
        "# (acl_file); the client id is replaced by the user name, so no charger can kick another off.",
        listen.line(),
        *tls,
        "allow_anonymous false",
        f"password_file {d}/passwd",
        f"acl_file {d}/acl",
        "use_username_as_clientid true",
        "",
        "# The backend: serve workers and the CLI. Keep this listener off the chargers' network.",
        backend_listen.line(),
        *([] if backend_listen.loopback else tls),
        "allow_anonymous false",
        f"password_file {d}/passwd.backend",
        f"acl_file {d}/acl.backend",
        "",
    ]
    return "\n".join(lines)


def write_files(auth: BrokerAuth, out: Path, *, prefix: str = "evc", install_dir: str | None = None,
                listen: str = "8883", backend_listen: str = "127.0.0.1:1884",
                certfile: str = "/etc/mosquitto/certs/server.crt", keyfile: str = "/etc/mosquitto/certs/server.key",
                cafile: str = "/etc/mosquitto/certs/ca.crt") -> dict[str, Path]:
    """passwd, acl, passwd.backend, acl.backend and mosquitto.conf in out (password files mode 600)."""
    devices, backend = auth.devices(), auth.backend_users()
    if not backend:
        raise BrokerAuthError("no backend user yet: run `python -m backend broker creds --backend` first "
                              "(the backend could not log in to the broker)")
    conf = mosquitto_conf(install_dir or str(out.resolve()), Listen.parse(listen, "--listen"),
                          Listen.parse(backend_listen, "--backend-listen"), certfile, keyfile, cafile)
    Keys.make_folder(out)
    files = {"passwd": out / "passwd", "passwd.backend": out / "passwd.backend", "acl": out / "acl",
             "acl.backend": out / "acl.backend", "mosquitto.conf": out / "mosquitto.conf"}
    write_private(files["passwd"], passwd_text(devices).encode())
    write_private(files["passwd.backend"], passwd_text(backend).encode())
    write_private(files["acl"], device_acl(list(devices), prefix).encode(), mode=0o644)
    write_private(files["acl.backend"], backend_acl(list(backend), prefix).encode(), mode=0o644)
    write_private(files["mosquitto.conf"], conf.encode(), mode=0o644)
    return files


# ---------------------------------------------------------------------------- command line
def run(args: argparse.Namespace) -> int:
    """`python -m backend broker creds|revoke|list|files` (arguments in backend/__main__.py)."""
    auth = BrokerAuth(args.keys)
    if args.action == "creds":
        backend = args.backend is not None
        user = args.backend if backend else args.dev
        password = auth.new_credentials(user, backend=backend)
        where = "backend user" if backend else "device"
        if args.out:
            Keys.make_folder(args.out.parent)
            write_private(args.out, (json.dumps({"user": user, "password": password}) + "\n").encode())
            use = (f"give it to flash.py provision --broker-creds {args.out}, then delete it" if not backend else
                   f"keep it for `python -m backend ... --broker-password-file {args.out}` (env EVC_BROKER_PASSWORD_FILE)")
            print(f"{where} {user}: new broker password written to {args.out} (mode 600): {use}", file=sys.stderr)
        else:
            print(password)
            print(f"{where} {user}: the new broker password above is shown once; only its hash is kept",
                  file=sys.stderr)
        print("then `python -m backend broker files --out DIR`, install the files and reload mosquitto (SIGHUP)",
              file=sys.stderr)
        return 0
    if args.action == "revoke":
        kind = auth.revoke(args.user)
        print(f"{kind} {args.user} removed: run `python -m backend broker files` and reload mosquitto (SIGHUP)")
        return 0
    if args.action == "list":
        for user in sorted(auth.devices()):
            print(f"device\t{user}")
        for user in sorted(auth.backend_users()):
            print(f"backend\t{user}")
        return 0
    if args.action == "files":
        files = write_files(auth, args.out, prefix=args.prefix, install_dir=args.install_dir, listen=args.listen,
                            backend_listen=args.backend_listen, certfile=args.certfile, keyfile=args.keyfile,
                            cafile=args.cafile)
        for name, path in files.items():
            mode = path.stat().st_mode & 0o777
            print(f"{path}\t{mode:o}")
        print(f"{len(auth.devices())} devices, {len(auth.backend_users())} backend users; install as "
              "docs/backend.md says (owner mosquitto, the password files mode 600) and reload mosquitto (SIGHUP)")
        return 0
    raise ValueError(f"unknown broker action {args.action}")
