# MicroPython side of the display tests: the firmware's Panel on a stand-in controller, so each
# screen can be drawn from a known state through a real driver on the I2C bridge.
from billing.tariff import TariffSet
from display.panel import Panel, open_driver
from hal import clock
from hosttest import emit


class Session:
    def __init__(self, tariff, mono, fields=None):
        self.tariff = tariff
        self.mono = mono
        self.fields = fields


class Controller:
    def __init__(self):
        self.state = "idle"
        self.session = None
        self.st = {"state": "idle"}

    def status(self):
        return self.st


class Adhoc:
    """The charger's ad-hoc payment code (app/adhoc.py) as the panel sees it: link()."""

    def __init__(self, link):
        self._link = link

    def link(self):
        return self._link


PAY_LINK = "https://pay.example/pay/chg-1/ABCD2345"


def panel(kind, bus, tariff_doc, dev="chg-1", url="https://receipts.example/r"):
    tset = TariffSet.from_doc(tariff_doc) if tariff_doc else None
    ctl = Controller()
    cfg = {"receipt_url": url, "final_s": 120}
    p = Panel(open_driver(kind, bus), ctl, lambda: tset, dev, cfg)
    return p, ctl, tset


def shot(p, name):
    # draw what the panel would show now, and tell the test what went out
    p.refresh(clock.monotonic_ms())
    d = p.driver
    if p.graphic:
        emit({"screen": name, "vlsb": bytes(d.buf).hex(), "lines": list(p.shown[0]), "link": p.shown[1]})
    else:
        emit({"screen": name, "lines": list(p.shown[0])})


def every_screen(kind, bus, tariff_doc):
    p, ctl, tset = panel(kind, bus, tariff_doc)
    shot(p, "idle")
    ctl.adhoc = Adhoc(PAY_LINK)  # pay_url configured: the payment QR code beside the prices
    shot(p, "idle-pay")
    ctl.adhoc = Adhoc(PAY_LINK[:-8] + "XYZ23456")  # the next idle period's code: a new frame
    shot(p, "idle-pay-next")
    ctl.adhoc = None
    ctl.st = {"state": "idle", "refusal": "tariff-missing"}
    shot(p, "not-ready")
    ctl.st = {"state": "authorizing"}
    ctl.state = "authorizing"
    shot(p, "authorizing")
    ctl.state = "idle"
    ctl.st = {"state": "idle"}
    p.event("rejected", {"token": "00", "reason": "unknown"})
    shot(p, "refused")
    p._refusal = None
    tariff = tset.tariffs[tset.default]
    now = clock.monotonic_ms()
    ctl.session = Session(tariff, now - 754000)  # 0:12:34 ago
    ctl.state = "charging"
    ctl.st = {"state": "charging", "wh": 12345, "cost": 567, "since": 0}
    shot(p, "charging")
    ctl.state = "suspended"
    p.frame_at = None  # the once-a-second limit is the refresh test's, not this one's
    shot(p, "suspended")
    ctl.state = "finishing"
    shot(p, "finishing")
    fields = {"cost": {"currency": "EUR", "incl": 1234, "excl": 1037, "lines": []},
              "start": {"wh": 1000000}, "stop": {"wh": 1012345}}
    p.finished(42, fields)
    ctl.session = None
    ctl.state = "idle"
    ctl.st = {"state": "idle"}
    shot(p, "final")
    ctl.state = "faulted"
    ctl.st = {"state": "faulted"}
    shot(p, "faulted")
