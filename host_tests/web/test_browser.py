"""A real headless Chromium (Debian's chromium + chromium-driver, through Selenium) on the dashboard
served by uvicorn: logs in, browses every page (tools/dashboard_shots.py shoot(), the command that
makes docs/img/dashboard-*.png), sees the chargers' live state and past offline periods, uploads a tariff, previews and pushes it, filters sessions, blocks a card (pushed through a real broker),
downloads an invoice; a viewer gets no admin buttons and is refused when it posts anyway."""
from __future__ import annotations

import json
import shutil

import pytest
from sqlalchemy import select

from backend.models import Card, ListEntry
from host_tests.web.conftest import ADMIN, PASSWORD, TOK_C, VIEWER
from host_tests.web.test_tariffs import TARIFF
from tools import dashboard_shots as shots

pytestmark = pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the browser once; SQL runs on both elsewhere


@pytest.fixture
def chromium(tmp_path):
    if not shots.CHROMIUM.exists() or not shots.CHROMEDRIVER.exists():
        pytest.skip("no Chromium: apt-get install chromium chromium-driver (.ci/run installs them as root)")
    drivers = []

    def start(name: str, downloads=None):
        d = shots.browser(tmp_path / f"profile-{name}", downloads)
        drivers.append(d)
        return d

    yield start
    for d in drivers:
        d.quit()
    for p in tmp_path.glob("profile-*"):
        shutil.rmtree(p, ignore_errors=True)


def test_an_operator_works_through_every_page(world, chromium, broker, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from backend.keys import Keys
    from backend.web import create_app

    keys = Keys(tmp_path / "keys")
    keys.init(site_secret="33" * 32)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    app = create_app(world.db, broker=broker.url, keys=keys.folder)
    with shots.serving(app) as base:
        b = chromium("admin", downloads)
        tariff = tmp_path / "tariff.json"
        tariff.write_text(json.dumps(TARIFF))
        files = shots.shoot(b, base, ADMIN, PASSWORD, tmp_path / "shots", "evc-w1/2", "period=day", tariff)
        assert [f.name for f in files] == [f"dashboard-{n}.png" for n in (
            "login", "sessions", "session", "chargers", "cards", "tariffs", "invoices", "anomalies", "analytics",
            "audit")]
        assert all(f.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and f.stat().st_size > 5000 for f in files)

        # the chargers' live state from their statuses (conftest STATUSES), and the past offline periods
        b.get(f"{base}/chargers")
        live = {dev: {c: b.find_element(By.CSS_SELECTOR, f"#charger-{dev} td.{c}").text
                      for c in ("state", "power", "energy", "cost")} for dev in ("ev-2", "evc-w1")}
        assert live == {"ev-2": {"state": "charging", "power": "7200", "energy": "3.250", "cost": "1.46 EUR"},
                        "evc-w1": {"state": "charging", "power": "—", "energy": "1.500", "cost": "0.59 EUR"}}
        b.get(f"{base}/anomalies")
        assert len(b.find_elements(By.CSS_SELECTOR, "#offline-periods tr")) == 3  # the header and two periods

        # upload a tariff and preview it (the device engine's price), then push it to ev-2
        b.get(f"{base}/tariffs")
        b.find_element(By.ID, "tariff-file").send_keys(str(tariff))
        b.find_element(By.ID, "p-kwh").clear()
        b.find_element(By.ID, "p-kwh").send_keys("10")
        b.find_element(By.ID, "preview").click()
        result = shots.wait(lambda: b.find_elements(By.ID, "result"), "the preview", 60)[0].text
        assert result == "WEB-1: 5.71 EUR incl. VAT (4.80 excl.)"  # 3.00 + 1.80 excl.; 3.57 + 2.14 incl.
        Select(b.find_element(By.ID, "push-device")).select_by_visible_text("ev-2")
        b.find_element(By.ID, "push").click()
        shots.wait(lambda: "tariff pushed to 1 chargers" in b.find_element(By.TAG_NAME, "body").text, "the push")
        assert "(default): WEB-1" in b.find_element(By.ID, "holdings").text

        # filter the sessions by charger and flag
        b.get(f"{base}/sessions")
        Select(b.find_element(By.ID, "f-dev")).select_by_visible_text("ev-1")
        b.find_element(By.ID, "f-apply").click()
        shots.wait(lambda: "dev=ev-1" in b.current_url, "the filtered page")
        rows = b.find_elements(By.CSS_SELECTOR, "#sessions tr")[1:]
        assert [r.find_elements(By.TAG_NAME, "td")[1].text for r in rows] == ["3", "2", "1"]
        Select(b.find_element(By.ID, "f-flag")).select_by_visible_text("void")
        b.find_element(By.ID, "f-apply").click()
        shots.wait(lambda: "flag=void" in b.current_url, "the filtered page")
        assert len(b.find_elements(By.CSS_SELECTOR, "#sessions tr")) == 2
        b.find_element(By.LINK_TEXT, "3").click()
        assert "does NOT verify" in b.find_element(By.ID, "verdict").text  # a hand-made row

        # the detail of a real record, then its invoice, downloaded
        b.get(f"{base}/sessions/evc-w1/2")
        assert b.find_element(By.ID, "verdict").text.startswith("signature verified")
        b.find_element(By.ID, "invoice").click()
        pdf = downloads / f"{world.invoice}.pdf"
        shots.wait(lambda: pdf.exists() and pdf.stat().st_size > 0 and not list(downloads.glob("*.crdownload")),
                   "the invoice download", 60)
        assert pdf.read_bytes().startswith(b"%PDF")

        # block a card
        b.get(f"{base}/cards")
        b.find_element(By.ID, f"block-{TOK_C}").click()
        shots.wait(lambda: "card blocked and pushed" in b.find_element(By.TAG_NAME, "body").text, "the block")
        assert b.find_element(By.ID, f"status-{TOK_C}").text == "blocked"
        with world.sessions() as db:
            assert db.get(Card, TOK_C).status == "blocked"
            assert len(list(db.scalars(select(ListEntry).where(ListEntry.token == TOK_C)))) == 3
        b.get(f"{base}/audit")
        assert "card-block" in b.find_element(By.ID, "audit").text

        # a viewer: no buttons, and a forged post is refused
        v = chromium("viewer")
        shots.log_in(v, base, VIEWER, PASSWORD)
        v.get(f"{base}/cards")
        assert not v.find_elements(By.CSS_SELECTOR, "button[id^=block-]")
        v.execute_script("""const f = document.createElement('form'); f.method = 'post';
            f.action = '/chargers/ev-1/stop'; const i = document.createElement('input'); i.name = 'csrf';
            i.value = document.querySelector('input[name=csrf]').value; f.appendChild(i);
            document.body.appendChild(f); f.submit();""")
        shots.wait(lambda: v.find_elements(By.ID, "error"), "the refusal")
        assert "needs an admin" in v.find_element(By.ID, "error").text
