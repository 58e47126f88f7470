"""The chargers' live state from their retained statuses (stored by backend/converge.py through the
worker's path, conftest STATUSES) and their past offline periods, against hand-computed values."""
from __future__ import annotations

import csv
import io
import json
import re

from host_tests.web.conftest import BILLED, DAY, MAR, WILL, login, send_statuses


def cells(html: str, dev: str) -> dict[str, str]:
    row = re.search(rf'<tr id="charger-{dev}">(.*?)</tr>', html, re.S)[1]
    found = dict(re.findall(r'<td class="(?:n )?(online|state|power|energy|cost|since)">([^<]*)</td>', row))
    found["all"] = re.sub(r"<[^>]+>", "|", row)
    return found


def test_the_chargers_page_shows_the_live_state(client, world):
    login(client)
    html = client.get("/chargers").text
    ev2 = cells(html, "ev-2")  # charging, with the power the newer firmware sends
    assert {k: ev2[k] for k in ("online", "state", "power", "energy", "cost", "since")} == {
        "online": "yes", "state": "charging", "power": "7200", "energy": "3.250", "cost": "1.46 EUR",
        "since": "2026-03-05 02:00"}
    assert "|0.9.1|" in ev2["all"] and "|1|" in ev2["all"]  # firmware from the status; 1 record on the charger
    assert "|2026-03-05 02:01|" in ev2["all"]  # last seen: the last status's arrival
    w1 = cells(html, BILLED)  # charging, a status without "w": no power invented
    assert (w1["state"], w1["power"], w1["energy"], w1["cost"]) == ("charging", "—", "1.500", "0.59 EUR")
    ev1 = cells(html, "ev-1")  # never reported
    assert (ev1["online"], ev1["state"], ev1["power"], ev1["energy"]) == ("never reported", "—", "—", "—")
    assert "|0.9.0|" in ev1["all"]  # firmware of its last record


def test_past_offline_periods(client, world):
    login(client)
    html = client.get("/anomalies").text
    table = re.search(r'<table id="offline-periods">(.*?)</table>', html, re.S)[1]
    assert re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td><td class=\"n\">([^<]+)</td>", table) == [
        (BILLED, "2026-03-02 02:00", "2026-03-02 05:00", "3:00"), ("ev-2", "2026-03-05 00:00", "2026-03-05 02:00", "2:00")]
    r = client.get("/offline.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert list(csv.reader(io.StringIO(r.text))) == [
        ["charger", "offline_from", "back_online", "seconds"],
        [BILLED, "2026-03-02T02:00:00Z", "2026-03-02T05:00:00Z", "10800"],
        ["ev-2", "2026-03-05T00:00:00Z", "2026-03-05T02:00:00Z", "7200"]]
    # at least 3 h (the threshold is in whole hours), and a window from 4 March
    assert client.get("/offline.csv", params={"min_h": "3"}).text.count("\n") == 2
    assert client.get("/offline.csv", params={"start": "2026-03-04"}).text.splitlines()[1:] == [
        "ev-2,2026-03-05T00:00:00Z,2026-03-05T02:00:00Z,7200"]
    assert client.get("/anomalies", params={"min_h": "x"}).status_code == 400


def test_offline_periods_in_sql(world):
    from backend.web import queries

    with world.sessions() as db:
        got = [(r.dev, r.since, r.until, r.seconds) for r in queries.offline_periods(db, MAR + 30 * DAY, 1800)]
    assert got == [(BILLED, MAR + 2 * 3600, MAR + 5 * 3600, 10800), ("ev-2", MAR + 3 * DAY, MAR + 3 * DAY + 7200, 7200),
                   (BILLED, MAR + DAY, MAR + DAY + 1800, 1800)]


def test_statuses_are_stored_and_online_changes_logged(tmp_path):
    """backend/converge.py keeps the last status as received and logs only changes of online; a
    charger still offline has an open period up to now."""
    from sqlalchemy import select

    from backend.db import open_db
    from backend.models import Device, DevicePresence, DeviceState
    from backend.web import queries

    sessions = open_db(str(tmp_path / "s.db"))
    with sessions.begin() as db:
        db.add(Device(id="c1", pubkey=b"-", added_at=0, head_seq=0, head_hash=""))
    on = {"online": True, "state": "idle", "versions": {"tariff": 2, "authlist": 3}}
    fault = {"online": True, "state": "fault", "fault": "DeviceKeyError: 10 bytes", "fw": "0.1.0"}
    send_statuses(sessions, tmp_path / "keys", [(100, "c1", on), (160, "c1", on), (200, "c1", WILL), (260, "c1", WILL),
                                                (5000, "c1", on), (9000, "c1", fault), (9100, "c1", fault),
                                                (20000, "nobody", on)])
    with sessions() as db:
        log = [(p.at, p.online) for p in db.scalars(select(DevicePresence).order_by(DevicePresence.id))]
        st = db.get(DeviceState, "c1")
        assert db.get(DeviceState, "nobody") is None  # not registered: nothing kept
        periods = [(r.since, r.until, r.seconds) for r in queries.offline_periods(db, 10_000, 60)]
    assert log == [(100, True), (200, False), (5000, True), (9000, False)]  # a fault state counts as offline
    assert json.loads(st.status) == fault and st.seen_at == 9100 and (st.tariff_ver, st.list_ver) == (2, 3)
    assert periods == [(200, 5000, 4800), (9000, None, 1000)]
    live = queries.live(st.status)
    assert (live["online"], live["state"], live["fault"], live["w"]) == (True, "fault", "DeviceKeyError: 10 bytes", None)
    assert queries.live('{"online": true, "state": "charging", "w": "7 kW", "wh": true}')["w"] is None
    assert queries.live("not json")["state"] is None and queries.live(None)["online"] is False
