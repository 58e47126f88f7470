"""The Tariffs page: an uploaded OCPI tariff priced for an example session by the chargers' own
engine (figures computed by hand), bad input refused, and the push (admin) signed through a real
broker, after which the page shows the version pushed."""
from __future__ import annotations

import json

import pytest

from host_tests.web.conftest import VIEWER, csrf_of, login
from host_tests.web.test_push import Listener, keys, pushing_client  # noqa: F401 - keys: the fixture

pytestmark = pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the tariff tables: test_push on both

# 0.30 EUR/kWh excl. VAT, 19 % VAT, and 1.20 EUR per hour of charging
TARIFF = {"country_code": "DE", "party_id": "EVC", "id": "WEB-1", "currency": "EUR",
          "last_updated": "2026-01-01T00:00:00Z",
          "elements": [{"price_components": [{"type": "ENERGY", "price": 0.30, "vat": 19, "step_size": 1},
                                             {"type": "TIME", "price": 1.20, "vat": 19, "step_size": 60}]}]}


def preview(client, csrf: str, tariff: bytes, **form):
    data = {"csrf": csrf, "start": "2026-03-02T18:00", "minutes": "90", "kwh": "20", **form}
    return client.post("/tariffs/preview", data=data, files={"tariff": ("t.json", tariff, "application/json")})


def test_preview_prices_with_the_device_engine(client, world):
    csrf = login(client, VIEWER)  # looking at a price is not an admin action
    r = preview(client, csrf, json.dumps(TARIFF).encode())
    assert r.status_code == 200, r.text[-2000:]
    # 20 kWh x 0.30 = 6.00; 1.5 h x 1.20 = 1.80; 7.80 excl.; 19 % VAT per dimension: 7.14 + 2.14 = 9.28
    assert "WEB-1: 9.28 EUR incl. VAT (7.80 excl.)" in r.text
    assert "<td>ENERGY</td><td class=\"n\">20</td><td class=\"n\">20</td><td class=\"n\">6.00</td><td class=\"n\">7.14</td>" in r.text
    assert "<td>TIME</td><td class=\"n\">1.5</td><td class=\"n\">1.5</td><td class=\"n\">1.80</td><td class=\"n\">2.14</td>" in r.text
    assert 'action="/tariffs/push"' not in r.text  # a viewer gets no push form


def test_bad_tariff_input_is_refused(client, world):
    csrf = login(client)
    for tariff, form, why in ((b"{not json", {}, "not JSON"), (b"[1]", {}, "Tariff object expected"),
                              (json.dumps(TARIFF).encode(), {"start": "tomorrow"}, "not a date and time"),
                              (json.dumps(TARIFF).encode(), {"kwh": "-1"}, "kWh: 0 to 1000"),
                              (json.dumps({**TARIFF, "currency": 5}).encode(), {}, "currency")):
        r = preview(client, csrf, tariff, **form)
        assert r.status_code == 400 and why in r.text, (why, r.text[-1500:])
    r = client.post("/tariffs/preview", data={"start": "2026-03-02T18:00"},
                    files={"tariff": ("t.json", b"{}", "application/json")})
    assert r.status_code == 403  # no CSRF token


def test_push_without_a_broker_is_refused_and_a_viewer_cannot_push(client, world):
    csrf = login(client)
    r = client.post("/tariffs/push", data={"csrf": csrf, "ocpi": json.dumps(TARIFF)})
    assert r.status_code == 409 and "without a broker" in r.text
    client.cookies.clear()
    csrf = login(client, VIEWER)
    r = client.post("/tariffs/push", data={"csrf": csrf, "ocpi": json.dumps(TARIFF)})
    assert r.status_code == 403 and "needs an admin" in r.text


def test_push_publishes_a_signed_tariff(world, keys, broker):  # noqa: F811
    from evc.verify import verify_jws

    listener = Listener(broker.url)
    try:
        with pushing_client(world, keys, broker.url) as client:
            csrf = login(client)
            r = preview(client, csrf, json.dumps(TARIFF).encode())
            assert 'id="push"' in r.text and 'id="push" disabled' not in r.text
            r = client.post("/tariffs/push", data={"csrf": csrf_of(r.text), "ocpi": json.dumps(TARIFF),
                                                   "device": "ev-1", "contract": "", "rule": "CET-1CEST,M3.5.0,M10.5.0/3"})
            assert r.status_code == 200 and "tariff pushed to 1 chargers" in r.text, r.text[-1500:]
            (topic, doc), = listener.wait(1)
            body = json.loads(verify_jws(doc, keys.public_hex(), kid="backend")[1])
            assert topic == "evc/ev-1/tariff" and body["type"] == "tariff" and body["dev"] == "ev-1"
            page = client.get("/tariffs").text
            assert f'<td>ev-1</td><td class="n">never reported</td><td class="n">{body["ver"]}</td>' \
                   f"\n<td>(default): WEB-1</td>" in page
            r = client.post("/tariffs/push", data={"csrf": csrf, "ocpi": json.dumps(TARIFF), "device": "nope"})
            assert r.status_code == 400 and "not registered" in r.text
    finally:
        listener.close()
