"""Operator accounts: argon2 passwords, login and logout, CSRF on every POST, roles, the login rate
limit, the audit log; `python -m backend user add`."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from backend.models import AuditEntry, Card, WebLogin, WebUser
from host_tests.web.conftest import ADMIN, PASSWORD, TOK_C, VIEWER, csrf_of, login

PAGES = ("/sessions", "/chargers", "/cards", "/invoices", "/anomalies", "/analytics", "/audit",
         "/sessions/ev-1/1", "/charts/heatmap.svg", "/charts/heatmap.csv")


def audit_rows(world, action: str, user: str | None = None) -> list[AuditEntry]:
    with world.sessions() as db:
        q = select(AuditEntry).where(AuditEntry.action == action)
        if user is not None:
            q = q.where(AuditEntry.user == user)
        return list(db.scalars(q))


def test_every_page_needs_a_login(client):
    for path in PAGES + ("/",):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path
    r = client.post("/cards/%s/block" % TOK_C, data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_passwords_are_argon2_and_cookies_are_not_stored(client, world):
    login(client)
    cookie = client.cookies["evc_login"]
    with world.sessions() as db:
        assert db.get(WebUser, ADMIN).pw_hash.startswith("$argon2id$")
        ids = list(db.scalars(select(WebLogin.id).where(WebLogin.user == ADMIN)))
    assert cookie not in ids and len(cookie) >= 40


def test_wrong_password_is_refused_and_audited(client, world):
    before = len(audit_rows(world, "login-failed", VIEWER))
    r = client.get("/login")
    r = client.post("/login", data={"user": VIEWER, "password": "wrong password!", "csrf": csrf_of(r.text)})
    assert r.status_code == 401 and "wrong user name or password" in r.text
    assert client.get("/sessions", follow_redirects=False).status_code == 303
    assert len(audit_rows(world, "login-failed", VIEWER)) == before + 1
    r = client.post("/login", data={"user": "nobody", "password": PASSWORD, "csrf": csrf_of(r.text)})
    assert r.status_code == 401 and "wrong user name or password" in r.text  # the same words: no user oracle


def test_the_login_form_needs_its_csrf_token(client, world):
    client.get("/login")
    r = client.post("/login", data={"user": ADMIN, "password": PASSWORD, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403 and "security token" in r.text
    client.cookies.clear()
    r = client.post("/login", data={"user": ADMIN, "password": PASSWORD, "csrf": "forged"}, follow_redirects=False)
    assert r.status_code == 403


def test_posts_without_the_csrf_token_change_nothing(client, world):
    token = login(client)
    for sent in ({}, {"csrf": ""}, {"csrf": token[:-2] + "xx"}):
        r = client.post(f"/cards/{TOK_C}/block", data=sent)
        assert r.status_code == 403 and "security token" in r.text
    with world.sessions() as db:
        assert db.get(Card, TOK_C).status == "accepted"
    assert len(audit_rows(world, "csrf-refused", ADMIN)) >= 3
    # another login's token is no good either
    other = csrf_of(client.get("/sessions").text)
    assert other == token


def test_a_viewer_sees_but_cannot_act(client, world):
    token = login(client, VIEWER)
    cards = client.get("/cards").text
    assert "victor (viewer)" in cards and f"block-{TOK_C}" not in cards
    assert "Remote stop" not in client.get("/chargers").text and "stop-ev-1" not in client.get("/chargers").text
    r = client.post(f"/cards/{TOK_C}/block", data={"csrf": token})
    assert r.status_code == 403 and "needs an admin" in r.text
    r = client.post("/chargers/ev-1/stop", data={"csrf": token})
    assert r.status_code == 403
    r = client.post("/gaps/ev-1/accept", data={"csrf": token, "through": "4", "reason": "x"})
    assert r.status_code == 403
    assert client.get("/audit").status_code == 403
    with world.sessions() as db:
        assert db.get(Card, TOK_C).status == "accepted"
    assert {a.target for a in audit_rows(world, "denied", VIEWER)} >= {TOK_C, "ev-1", "audit"}


def test_logout_ends_the_login(client, world):
    token = login(client)
    cookie = client.cookies["evc_login"]
    r = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert r.status_code == 303
    client.cookies.set("evc_login", cookie)  # a copy of the old cookie is dead too
    assert client.get("/sessions", follow_redirects=False).status_code == 303
    assert audit_rows(world, "logout", ADMIN)


def test_login_rate_limit_per_user_and_address(world):
    from backend.web.auth import Accounts, AuthError

    now = [2_000_000_000]
    acc = Accounts(world.sessions, clock=lambda: now[0])
    acc.add_user("rita", PASSWORD, "viewer")
    for _ in range(5):
        with pytest.raises(AuthError, match="wrong"):
            acc.login("rita", "guess guess guess", "10.0.0.1")
    with pytest.raises(AuthError, match="too many failed logins"):
        acc.login("rita", PASSWORD, "10.0.0.1")  # even the right password, from there, for now
    assert acc.login("rita", PASSWORD, "10.0.0.2")  # another address is not locked out
    now[0] += 14 * 60
    with pytest.raises(AuthError, match="too many"):
        acc.login("rita", PASSWORD, "10.0.0.1")
    now[0] += 61  # the failures are older than 15 minutes now
    assert acc.operator(acc.login("rita", PASSWORD, "10.0.0.1")).name == "rita"
    assert len(audit_rows(world, "login-limited", "rita")) == 2


def test_rate_limit_through_the_form(client, world):
    from backend.web.auth import Accounts

    Accounts(world.sessions).add_user("rolf", PASSWORD, "admin")
    page = client.get("/login").text
    for _ in range(5):
        r = client.post("/login", data={"user": "rolf", "password": "not it at all", "csrf": csrf_of(page)})
        page = r.text
        assert r.status_code == 401
    r = client.post("/login", data={"user": "rolf", "password": PASSWORD, "csrf": csrf_of(page)})
    assert r.status_code == 401 and "too many failed logins" in r.text


def test_user_add_cli(world, monkeypatch, capsys):
    from backend.__main__ import main

    def add(name: str, role: str, password: str) -> int:
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        return main(["user", "add", name, "--role", role, "--db", world.db])

    assert add("olga", "viewer", "long enough password") == 0
    assert "operator olga added (viewer)" in capsys.readouterr().out
    assert add("olga", "admin", "long enough password") == 2 and "exists" in capsys.readouterr().err
    assert add("pete", "admin", "short") == 2 and "at least 10" in capsys.readouterr().err
    assert add("bad name!", "admin", "long enough password") == 2
    with pytest.raises(SystemExit):
        add("quinn", "root", "long enough password")
    with world.sessions() as db:
        assert db.get(WebUser, "olga").role == "viewer"
        assert db.get(WebUser, "pete") is None and db.get(WebUser, "quinn") is None
