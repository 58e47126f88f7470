"""Operator accounts, logins, CSRF tokens, the login rate limit and the audit log.

A login is a row in web_logins named by the SHA-256 of a random cookie token: logging out or
expiring deletes the row, and the database never holds a usable cookie. Each login has its own
CSRF token that every POST must echo. Failed logins are audit entries; the limit counts them per
user and per address over a window (5 in 15 minutes by default).
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.orm import sessionmaker

from backend.models import AuditEntry, WebLogin, WebUser

ROLES = ("admin", "viewer")
NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
MIN_PASSWORD = 10
LOGIN_TTL_S = 8 * 3600
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password of anyone")  # unknown users cost a hash too (no timing oracle)


class AuthError(ValueError):
    pass


@dataclass(frozen=True)
class Operator:
    name: str
    role: str
    csrf: str

    @property
    def admin(self) -> bool:
        return self.role == "admin"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def audit(db, user: str, ip: str, action: str, target: str = "", detail: str = "", now: int | None = None) -> None:
    db.add(AuditEntry(at=int(time.time()) if now is None else now, user=user[:64], ip=ip[:64], action=action[:32],
                      target=target[:128], detail=detail[:2000]))


class Accounts:
    def __init__(self, sessions: sessionmaker, clock: Callable[[], float] = time.time,
                 max_failures: int = 5, window_s: int = 15 * 60):
        self.sessions = sessions
        self.clock = clock
        self.max_failures = max_failures
        self.window_s = window_s

    def add_user(self, name: str, password: str, role: str, by: str = "cli") -> None:
        if not NAME.match(name):
            raise AuthError("user name: 1..64 of letters, digits and . _ @ -")
        if role not in ROLES:
            raise AuthError(f"role must be one of {', '.join(ROLES)}")
        if len(password) < MIN_PASSWORD:
            raise AuthError(f"password: at least {MIN_PASSWORD} characters")
        with self.sessions.begin() as db:
            if db.get(WebUser, name) is not None:
                raise AuthError(f"user {name!r} exists")
            db.add(WebUser(name=name, pw_hash=_HASHER.hash(password), role=role, created_at=int(self.clock())))
            audit(db, by, "", "user-add", name, f"role {role}", int(self.clock()))

    def _failures(self, db, name: str, ip: str) -> int:
        since = int(self.clock()) - self.window_s
        return db.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "login-failed", AuditEntry.user == name[:64], AuditEntry.ip == ip[:64],
            AuditEntry.at > since)) or 0

    def login(self, name: str, password: str, ip: str) -> str:
        """A new login's cookie token; AuthError (same message for unknown user and bad password).
        A refusal is audited in its own committed transaction before it is raised."""
        now = int(self.clock())
        refusal = None
        with self.sessions.begin() as db:
            if self._failures(db, name, ip) >= self.max_failures:
                audit(db, name, ip, "login-limited", name, "", now)
                refusal = "too many failed logins: try again later"
            else:
                user = db.get(WebUser, name) if NAME.match(name) else None
                try:
                    _HASHER.verify(user.pw_hash if user else _DUMMY, password)
                    ok = user is not None
                except (VerificationError, InvalidHashError):
                    ok = False
                if not ok:
                    audit(db, name, ip, "login-failed", name, "", now)
                    refusal = "wrong user name or password"
                else:
                    token = secrets.token_urlsafe(32)
                    db.add(WebLogin(id=_digest(token), user=name, csrf=secrets.token_urlsafe(32), created_at=now,
                                    expires_at=now + LOGIN_TTL_S))
                    db.execute(delete(WebLogin).where(WebLogin.expires_at <= now))
                    audit(db, name, ip, "login", name, "", now)
        if refusal is not None:
            raise AuthError(refusal)
        return token

    def operator(self, token: str | None) -> Operator | None:
        if not token:
            return None
        with self.sessions() as db:
            row = db.execute(select(WebLogin.user, WebLogin.csrf, WebUser.role).join(WebUser, WebUser.name == WebLogin.user)
                             .where(WebLogin.id == _digest(token), WebLogin.expires_at > int(self.clock()))).first()
        return Operator(row.user, row.role, row.csrf) if row else None

    def logout(self, token: str, ip: str) -> None:
        with self.sessions.begin() as db:
            login = db.get(WebLogin, _digest(token))
            if login is not None:
                audit(db, login.user, ip, "logout", login.user, "", int(self.clock()))
                db.delete(login)


def csrf_ok(op: Operator, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(op.csrf.encode(), str(sent).encode())
