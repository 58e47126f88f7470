"""Screenshots of every dashboard page (docs/img/dashboard-*.png, shown in docs/dashboard.md), taken
by a real headless Chromium (Debian's chromium + chromium-driver, through Selenium).

    .venv/bin/python tools/dashboard_shots.py                    # demo fleet -> docs/img/dashboard-*.png
    .venv/bin/python tools/dashboard_shots.py --out /tmp/shots   # elsewhere

The demo: a made-up fleet (backend/web/demo.py: 8 chargers, 1,000 sessions in March 2026) and one
charger whose three February records are sealed by the firmware itself under MicroPython
(sim/records.py), stored by backend.ingest and billed by the billing CLI, so the session detail shows
a verified signature and its invoice. host_tests/web/test_browser.py runs shoot() on its own world.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DEMO_DEV = "evc-demo"
USER, PASSWORD = "operator", "demo password 2026"
FEB = 1_769_904_000  # 2026-02-01 UTC
DEMO_TARIFF = {"country_code": "DE", "party_id": "EVC", "id": "DEMO-EVENING", "currency": "EUR",
               "last_updated": "2026-01-01T00:00:00Z",
               "elements": [{"price_components": [{"type": "ENERGY", "price": 0.42, "vat": 19, "step_size": 1}],
                             "restrictions": {"start_time": "17:00", "end_time": "21:00"}},
                            {"price_components": [{"type": "ENERGY", "price": 0.33, "vat": 19, "step_size": 1},
                                                  {"type": "PARKING_TIME", "price": 2.0, "vat": 19, "step_size": 300}]}]}


def browser(profile: Path, downloads: Path | None = None, size: str = "1280,900"):
    """A headless Chromium with a fresh profile (the caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--window-size={size}",
                 f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(60)
    if downloads is not None:
        driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


@contextlib.contextmanager
def serving(app, timeout: float = 30):
    """The app on a free loopback port (uvicorn in a thread): yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def log_in(driver, base: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/login")
    driver.find_element(By.ID, "user").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()
    wait(lambda: driver.current_url.endswith("/sessions"), "the sessions page after login")


def wait(pred, what: str, timeout: float = 30):
    """pred() once it is true; an element read while a form's submit replaced the page (stale) counts
    as not yet."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = pred()
        except (StaleElementReferenceException, NoSuchElementException):
            got = None
        if got:
            return got
        time.sleep(0.1)
    raise TimeoutError(f"waited {timeout} s for {what}")


def shoot(driver, base: str, user: str, password: str, out: Path, session: str, analytics: str = "",
          tariff: Path | None = None) -> list[Path]:
    """Log in and take one screenshot per page: dashboard-NAME.png in out. session: 'DEV/SEQ' of the
    detail page to show; analytics: its query string; tariff: an OCPI tariff file to upload and
    preview on the Tariffs page. Returns the files written."""
    from selenium.webdriver.common.by import By

    out.mkdir(parents=True, exist_ok=True)
    driver.get(f"{base}/login")
    shots = [out / "dashboard-login.png"]
    driver.save_screenshot(str(shots[0]))
    log_in(driver, base, user, password)
    for name, path in (("sessions", "/sessions"), ("session", f"/sessions/{session}"), ("chargers", "/chargers"),
                       ("cards", "/cards"), ("tariffs", "/tariffs"), ("invoices", "/invoices"), ("anomalies", "/anomalies"),
                       ("analytics", f"/analytics?{analytics}"), ("audit", "/audit")):
        driver.get(base + path)
        if name == "tariffs" and tariff is not None:
            driver.find_element(By.ID, "tariff-file").send_keys(str(tariff))
            driver.find_element(By.ID, "preview").click()
            wait(lambda: driver.find_elements(By.ID, "result") or driver.find_elements(By.ID, "error"), "the preview", 60)
        if name == "analytics":  # the charts are images: wait until each has loaded
            wait(lambda: driver.execute_script(
                "return Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)"), "the charts")
            driver.set_window_size(1280, 2400)
        shot = out / f"dashboard-{name}.png"
        driver.save_screenshot(str(shot))
        driver.set_window_size(1280, 900)
        shots.append(shot)
    return shots


def _fields(seq: int, tok: str, start: int, wh: int, incl: int) -> dict:
    excl = incl * 100 // 119
    return {"v": 1, "dev": DEMO_DEV, "seq": seq, "token": tok, "auth": "list", "contract": None,
            "tariff": {"id": "std", "ver": 1},
            "start": {"t": start, "tq": "S", "wh": 1_000_000 + seq * 100_000},
            "stop": {"t": start + 5400, "tq": "S", "wh": 1_000_000 + seq * 100_000 + wh, "reason": "card"},
            "meter": {"model": "sdm630", "serial": "M-1"},
            "cost": {"currency": "EUR", "excl": excl, "incl": incl,
                     "lines": [{"dim": "ENERGY", "el": 1, "qty": wh, "billed": wh, "unit": "Wh", "price": 33,
                                "vat": 1900, "from": start, "to": start + 5400, "excl": excl, "incl": incl}]},
            "flags": [], "fw": "0.1.0"}


def demo_world(folder: Path) -> str:
    """The demo database (see the module's docstring); returns its path."""
    import logging

    logging.disable(logging.INFO)  # alembic's chatter
    from backend.__main__ import main
    from backend.db import open_db
    from backend.ingest import Ingestor
    from backend.keys import load_public_key
    from backend.models import Device
    from backend.web import demo
    from backend.web.auth import Accounts
    from sim.records import make_records

    db = str(folder / "demo.db")
    sessions = open_db(db)
    demo.populate(sessions)
    fleet, driver = "%032x" % 0xF1EE7, "%032x" % 0xD71FE5
    pem, jws, _ = make_records(folder, DEMO_DEV, [_fields(1, fleet, FEB + 86400 + 8 * 3600, 22000, 726),
                                                  _fields(2, fleet, FEB + 3 * 86400 + 18 * 3600, 16500, 545),
                                                  _fields(3, driver, FEB + 5 * 86400 + 12 * 3600, 9000, 297)])
    with sessions.begin() as s:
        s.add(Device(id=DEMO_DEV, pubkey=load_public_key(pem), added_at=FEB, head_seq=0, head_hash=""))
    ingest = Ingestor(sessions)
    assert all(ingest.ingest(f"evc/{DEMO_DEV}/rec", r).kind == "stored" for r in jws)
    for argv in (["billing", "seller", "--name", "EVC Charging GmbH", "--country", "DE", "--vat-id", "DE123456789"],
                 ["customer", "add", "ACME", "--name", "ACME Fleet", "--kind", "company", "--country", "DE",
                  "--address", "Werkstr. 5", "--postcode", "80331", "--city", "Munich", "--vat-id", "DE999999999"],
                 ["contract", "add", "ACME-1", "--customer", "ACME", "--valid-from", "2026-01-01"],
                 ["card", "assign", "--token", fleet, "--customer", "ACME", "--contract", "ACME-1"],
                 ["billing", "run", "--period", "2026-02"]):
        if main([*argv, "--db", db, "--keys", str(folder / "keys")]) != 0:
            raise RuntimeError(f"demo: {' '.join(argv)} failed")
    Accounts(sessions).add_user(USER, PASSWORD, "admin")
    return db


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for dashboard-*.png")
    args = ap.parse_args(argv)
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        print("no Chromium: apt-get install chromium chromium-driver", file=sys.stderr)
        return 2
    from backend.web import create_app

    with tempfile.TemporaryDirectory() as tmp:
        db = demo_world(Path(tmp))
        app = create_app(db, clock=lambda: 1_772_409_600 + 28 * 86400)  # "now": the end of the demo month
        driver = browser(Path(tmp) / "profile")
        tariff = Path(tmp) / "tariff.json"
        tariff.write_text(json.dumps(DEMO_TARIFF))
        try:
            with serving(app) as base:
                shots = shoot(driver, base, USER, PASSWORD, args.out, f"{DEMO_DEV}/2",
                              "period=day&start=2026-03-02&end=2026-03-29", tariff)
        finally:
            driver.quit()
    for s in shots:
        print(s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
