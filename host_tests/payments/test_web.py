"""The payment web app (backend/payments/web.py) on its own, through Starlette's test client: bad
links, unknown payments and forged webhooks get clear answers and change nothing."""
from __future__ import annotations

import json

import pytest
from backend.payments.web import create_app
from host_tests.payments.test_stripe_service import CODE, DEV, Rig


@pytest.fixture
def rig(stripe_emu, tmp_path):
    r = Rig(str(tmp_path / "backend.db"), stripe_emu, tmp_path)
    yield r
    r.close()


@pytest.mark.filterwarnings("ignore:Using `httpx`")  # starlette's test client still runs on httpx
def test_pages_and_bad_input(rig):
    from starlette.testclient import TestClient

    client = TestClient(create_app(rig.service))
    page = client.get(f"/{DEV}/{CODE}")
    assert page.status_code == 200 and "Pay by card" in page.text and "20.00 EUR" in page.text
    assert 'name="viewport"' in page.text  # made for a phone
    for path in (f"/{DEV}/AAAAAAA2", f"/nobody/{CODE}", f"/{DEV}/%3Cscript%3E"):
        r = client.get(path)
        assert r.status_code == 404 and "<script>" not in r.text, r.text
    assert client.get("/p/" + "0" * 32).status_code == 404
    assert client.get("/p/../../etc/passwd").status_code == 404
    assert client.get("/p/" + "0" * 32 + "/receipt.pdf").status_code == 404
    r = client.post(f"/{DEV}/{CODE}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith(rig.emu.url + "/emulator/pay/")
    pid = r.headers["location"].split("return_url=")[1].rsplit("%2F", 1)[1]
    state = client.get(f"/p/{pid}/state").json()
    assert state["state"] == "new" and state["held"] == 2000 and not state["final"]
    assert "Waiting for your card" in client.get(f"/p/{pid}").text
    forged = json.dumps({"id": "evt_x", "type": "payment_intent.amount_capturable_updated",
                         "data": {"object": {"id": "pi_x"}}}).encode()
    r = client.post("/webhook", content=forged, headers={"Stripe-Signature": rig.emu.sign(forged, secret="whsec_no")})
    assert r.status_code == 400 and "signature" in r.json()["error"]
    r = client.post("/webhook", content=b"not json", headers={"Stripe-Signature": rig.emu.sign(b"not json")})
    assert r.status_code == 400
    assert client.get(f"/p/{pid}/state").json()["state"] == "new" and rig.sent == []
