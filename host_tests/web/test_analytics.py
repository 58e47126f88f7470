"""Analytics figures against hand-computed values of the March 2026 rows (host_tests/web/conftest.py
MADE), through the SQL aggregations and through the charts' CSV; the SVGs render."""
from __future__ import annotations

import csv
import io

from host_tests.web.conftest import DAY, MAR, TOK_A, login

WINDOW = {"start": "2026-03-02", "end": "2026-03-15"}  # the 14 days of the March rows
SPAN = 14 * DAY


def rows_of(client, name: str, **params) -> list[list[str]]:
    r = client.get(f"/charts/{name}.csv", params={**WINDOW, **params})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv"), r.text[:300]
    return list(csv.reader(io.StringIO(r.text)))


def test_trend_per_day_week_and_month(client, world):
    login(client)
    assert rows_of(client, "trend-energy", period="day") == [
        ["period", "currency", "sessions", "energy_wh", "revenue"],
        ["2026-03-02", "EUR", "3", "23000", "1000"],
        ["2026-03-03", "EUR", "1", "10000", "400"],
        ["2026-03-11", "EUR", "2", "20000", "900"]]
    assert rows_of(client, "trend-sessions", period="week")[1:] == [
        ["2026-03-02", "EUR", "4", "33000", "1400"], ["2026-03-09", "EUR", "2", "20000", "900"]]
    assert rows_of(client, "trend-revenue", period="month")[1:] == [["2026-03", "EUR", "6", "53000", "2300"]]
    # without a window the billed November records come in too, in their own month
    r = client.get("/charts/trend-revenue.csv", params={"period": "month"})
    assert r.text.splitlines()[1:] == ["2026-03,EUR,6,53000,2300", "2026-11,EUR,3,15000,3927"]


def test_heat_map_per_weekday_and_hour(client, world):
    login(client)
    grid = {row[0]: [int(v) for v in row[1:]] for row in rows_of(client, "heatmap")[1:]}
    assert list(grid) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    expected = {("Mon", 8): 3, ("Tue", 18): 1, ("Wed", 10): 1, ("Wed", 22): 1}
    for day, hours in grid.items():
        for h, n in enumerate(hours):
            assert n == expected.get((day, h), 0), (day, h)


def test_utilization_per_charger(client, world):
    """Plugged = stop - start; idle while plugged = the record's parking_s (conftest PARKING_S), else
    its PARKING_TIME lines' qty (PARKING); charging = plugged - idle; per mille of the 14-day window."""
    login(client)
    rows = rows_of(client, "utilization")
    assert rows[0] == ["charger", "sessions", "plugged_s", "charging_s", "idle_s", "idle_sessions", "energy_wh",
                       "plugged_permille", "charging_permille", "idle_permille"]
    rows = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    plugged1, idle1 = 3600 + 1800 + 7200, 700 + 1200  # parking_s on seq 1 (not its 600 s line) and seq 3
    plugged2, idle2 = 3600 + 600 + 3600, 900 + 300 + 1800  # two lines on seq 1, one in ms on seq 3
    assert rows["ev-1"] == [3, plugged1, plugged1 - idle1, idle1, 2, 38000,
                            plugged1 * 1000 // SPAN, (plugged1 - idle1) * 1000 // SPAN, idle1 * 1000 // SPAN]
    assert rows["ev-1"][6:] == [10, 8, 1]  # 12,600 s, 10,700 s and 1,900 s of 1,209,600
    assert rows["ev-2"] == [3, plugged2, plugged2 - idle2, idle2, 2, 15000, 6, 3, 2]
    assert rows["evc-w1"] == [0] * 9  # registered, no session in the window


def test_power_per_charger(client, world):
    """avg_w = Wh * 3600 / charging s over the charger's sessions; max_w: the highest session's."""
    login(client)
    rows = rows_of(client, "power")
    assert rows[0] == ["charger", "sessions", "energy_wh", "charging_s", "avg_w", "max_w"]
    rows = {r[0]: [int(v) for v in r[1:]] for r in rows[1:]}
    # ev-1: 38,000 Wh in 10,700 s; sessions 11,000 Wh / 2,900 s, 7,000 / 1,800, 20,000 / 6,000
    assert rows["ev-1"] == [3, 38000, 10700, 38000 * 3600 // 10700, 14000]
    # ev-2: 15,000 Wh in 4,800 s; sessions 5,000 Wh / 2,400 s, 10,000 / 600 (60 kW: also an anomaly), 0 / 1,800
    assert rows["ev-2"] == [3, 15000, 4800, 11250, 60000]
    assert rows["evc-w1"] == [0, 0, 0, 0, 0]


def test_usage_in_sql(world):
    from backend.web import queries

    with world.sessions() as db:
        got = {r.id: r for r in queries.usage(db, MAR, MAR + 14 * DAY)}
        assert (got["ev-2"].idle_s, got["ev-2"].idle_sessions, got["ev-2"].max_w) == (3000, 2, 60000)
        # one day: ev-1's first two sessions, ev-2's first
        day = {r.id: (r.sessions, r.plugged_s, r.idle_s, r.charging_s, r.avg_w) for r in queries.usage(db, MAR, MAR + DAY)}
        assert day["ev-1"] == (2, 5400, 700, 4700, 18000 * 3600 // 4700)  # parking_s 700 over its 600 s line
        assert day["ev-2"] == (1, 3600, 1200, 2400, 7500)


def test_revenue_per_contract_and_tariff(client, world):
    login(client)
    assert rows_of(client, "revenue-contract")[1:] == [["", "EUR", "4", "37000", "1600"],
                                                       ["fleet", "EUR", "2", "16000", "700"]]
    assert rows_of(client, "revenue-tariff")[1:] == [["std", "EUR", "4", "48000", "2100"],
                                                     ["night", "EUR", "2", "5000", "200"]]


def test_averages_and_detections_on_the_page(client, world):
    login(client)
    r = client.get("/analytics", params={**WINDOW, "period": "week"})
    assert r.status_code == 200
    # 6 sessions, 20,400 s and 53,000 Wh: 56 min and 8.833 kWh on average
    assert "6 sessions: on average 56 min and 8.833 kWh each" in r.text
    assert "energy above the charger&#39;s power (22000 W): 1" in r.text and "/sessions/ev-2/2" in r.text
    assert "void or meter fault: 2" in r.text and "time not synchronized: 1" in r.text
    assert "Cards on several chargers at once: 1" in r.text


def test_detections_in_sql(world):
    from backend.web import queries

    with world.sessions() as db:
        assert [(r.dev, r.seq) for r in queries.overpowered(db, 22_000)] == [("ev-2", 2)]
        assert [(r.dev, r.seq) for r in queries.overpowered(db, 10_000)] == [("ev-2", 2), ("ev-1", 2), ("ev-1", 1)]
        assert sorted((r.dev, r.seq) for r in queries.faulty(db)) == [("ev-1", 3), ("ev-2", 3)]
        assert [(r.dev, r.seq) for r in queries.unsynced(db)] == [("ev-1", 3)]
        assert [(r.token, r.dev_a, r.seq_a, r.dev_b, r.seq_b) for r in queries.concurrent_cards(db)] == [
            (TOK_A, "ev-1", 1, "ev-2", 1)]
        avg = queries.averages(db, MAR, MAR + 14 * DAY)
        assert (avg.sessions, avg.seconds, avg.energy_wh) == (6, 20400, 53000)


def test_every_chart_renders_as_svg(client, world):
    from backend.web.app import CHARTS

    login(client)
    page = client.get("/analytics", params={"period": "day"}).text
    for name in CHARTS:
        assert f'src="/charts/{name}.svg?period=day"' in page
        r = client.get(f"/charts/{name}.svg", params={"period": "day"})
        assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
        assert r.text.lstrip().startswith("<?xml") and "<svg" in r.text and "</svg>" in r.text


def test_bad_analytics_input_is_refused(client, world):
    login(client)
    assert client.get("/analytics", params={"period": "year"}).status_code == 400
    assert client.get("/charts/trend-energy.csv", params={"start": "03/02/2026"}).status_code == 400
    assert client.get("/charts/nothing.svg").status_code == 404
