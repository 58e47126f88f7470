# The charger's display: what the controller's state says, drawn when something shown changes
# (at most once a second while charging, when the running cost and the time move).
#
# The panel reads the controller (state, status(), the running session's start) and is told of
# refusals (the controller's events) and of each finished session's record (its seq and total).
from app import log
from display import prices, render, screens
from hal import clock

_POLL_MS = 250  # how often the panel looks at the state (real time: see _poll_ms)
_CHARGING_FRAME_MS = 1000  # at most one frame a second while the numbers run
_REFUSED_MS = 6000  # how long a refusal stays on screen
_PRICES_MS = 60000  # idle prices are looked up again (time-of-day tariffs) this often
_DEFAULT_ADDR = {"ssd1306": 0x3C, "sh1106": 0x3C, "hd44780": 0x27}


def open_driver(kind, i2c, addr=None):
    """The driver for a display type on an I2C bus (display.type in the config)."""
    addr = addr if addr is not None else _DEFAULT_ADDR.get(kind)
    if kind == "ssd1306":
        from display.ssd1306 import Ssd1306

        return Ssd1306(i2c, addr)
    if kind == "sh1106":
        from display.sh1106 import Sh1106

        return Sh1106(i2c, addr)
    if kind == "hd44780":
        from display.hd44780 import Hd44780

        return Hd44780(i2c, addr)
    raise ValueError("unknown display type %r: ssd1306, sh1106 or hd44780" % (kind,))


class Panel:
    def __init__(self, driver, ctl, tariffs, dev, cfg, frames=None):
        """cfg: the config's "display" section; frames: the host board's frame files (or None)."""
        self.driver = driver
        self.graphic = hasattr(driver, "fb")
        self.ctl = ctl
        self.tariffs = tariffs
        self.dev = dev
        self.base_url = cfg["receipt_url"]
        self.final_ms = cfg["final_s"] * 1000
        self.frames = frames
        self.shown = None  # the (lines, link) on screen
        self.frame_at = None  # when the last charging frame was drawn
        self.frames_drawn = 0
        self._refusal = None  # (reason, until)
        self._final = None  # (lines args, until)
        self._prices = None  # (tariff set, until, components)

    # ---- told by the charger ----------------------------------------------------------
    def event(self, kind, data):
        if kind in ("refused", "rejected", "tap-ignored"):
            # at least two looks long: under a fast clock 6 device seconds pass between two looks
            self._refusal = (data.get("reason", kind), clock.monotonic_ms() + max(_REFUSED_MS, 2 * _poll_ms()))

    def finished(self, seq, fields):
        """A session's record is journaled: show its total and the receipt link."""
        if not fields:
            return
        cost = fields["cost"]
        minor = self._minor(cost["currency"])
        wh = fields["stop"]["wh"] - fields["start"]["wh"]
        link = screens.receipt_link(self.base_url, self.dev, seq)
        self._final = ((cost["incl"], cost["currency"], minor, wh, link), clock.monotonic_ms() + self.final_ms)
        self._refusal = None

    def _minor(self, currency):
        s = self.ctl.session
        if s is not None and s.tariff.currency == currency:
            return s.tariff.minor
        tset = self.tariffs()
        if tset is not None:
            t = tset.tariffs[tset.default]
            if t.currency == currency:
                return t.minor
        return 2

    # ---- what to show -----------------------------------------------------------------
    def _cols_rows(self):
        d = self.driver
        if self.graphic:
            return d.width // render.CHAR, d.height // render.CHAR
        return d.cols, d.rows

    def screen(self, now):
        cols, rows = self._cols_rows()
        ctl = self.ctl
        state = ctl.state
        if state in ("charging", "suspended"):
            st = ctl.status()
            s = ctl.session
            t = s.tariff if s is not None else None
            seconds = (now - s.mono) // 1000 if s is not None else 0
            return screens.charging(st.get("wh", 0), max(0, seconds), st.get("cost", 0),
                                    t.currency if t else "", t.minor if t else 2, state == "suspended", cols, rows)
        if state == "authorizing":
            return screens.authorizing(cols, rows)
        if state == "finishing":
            return screens.finishing(cols, rows)
        if state == "faulted":
            return screens.faulted(cols, rows)
        if self._refusal is not None:
            if (self._refusal[1] - now) > 0:
                return screens.refused(self._refusal[0], cols, rows)
            self._refusal = None
        if self._final is not None:
            if (self._final[1] - now) > 0:
                args = self._final[0]
                if self.graphic:
                    cols = render.text_cols(self.driver.width, self.driver.height, args[4])
                return screens.final(*args, cols=cols, rows=rows)
            self._final = None
        return self._idle(now, cols, rows)

    def _idle(self, now, cols, rows):
        tset = self.tariffs()
        not_ready = ctl_refusal(self.ctl)
        if tset is None or not_ready:
            return screens.idle((), "", 2, cols, rows, not_ready or "tariff-missing")
        p = self._prices
        if p is None or p[0] is not tset or (p[1] - now) <= 0:
            epoch, quality = clock.now()
            p = self._prices = (tset, now + _PRICES_MS, prices.components(tset, epoch, quality != "U"))
        t = tset.tariffs[tset.default]
        # the ad-hoc payment link (pay_url/DEV/CODE): a new code after each session, so a new frame
        adhoc = getattr(self.ctl, "adhoc", None)
        link = adhoc.link() if self.graphic and adhoc is not None else None
        if link:
            cols = render.text_cols(self.driver.width, self.driver.height, link)
        return screens.idle(p[2], t.currency, t.minor, cols, rows, link=link)

    # ---- drawing ----------------------------------------------------------------------
    def refresh(self, now=None):
        """Draw the current screen when it differs from the one shown; True when it drew."""
        now = clock.monotonic_ms() if now is None else now
        charging = self.ctl.state in ("charging", "suspended")
        # a frame a second as people see it: under the simulator's fast clock (clock.SPEED) one per
        # real second, not per device second (the figures then step by SPEED seconds)
        if charging and self.frame_at is not None and now - self.frame_at < _CHARGING_FRAME_MS * clock.SPEED:
            return False  # the running numbers: at most a frame a second (and no status() between)
        content = self.screen(now)
        if content == self.shown:
            return False
        self.draw(content)
        self.frame_at = now if charging else None
        return True

    def draw(self, content):
        lines, link = content
        d = self.driver
        if self.graphic:
            # the QR code lives only while it is drawn: the framebuffer keeps its pixels
            render.draw(d.fb, d.width, d.height, lines, render.encode(link) if link else None)
            d.show()
            if self.frames is not None:
                self.frames.graphic(d.buf, d.width, d.height)
        else:
            d.text(lines)
            if self.frames is not None:
                self.frames.text(lines, d.cols)
        self.shown = content
        self.frames_drawn += 1

    async def run(self, sup):
        faults = 0
        while True:
            try:
                self.refresh()
                faults = 0
            except OSError as exc:  # the display's bus: the charger charges on without its screen
                faults += 1
                self.shown = None  # drawn again when it answers
                if faults & (faults - 1) == 0:
                    log.warn("display", "display not answering: %s (%d in a row)" % (exc, faults))
            sup.progress("display")
            await clock.sleep_ms(_poll_ms())


def _poll_ms():
    # device ms between looks: 250 ms as people see it, also under the simulator's fast clock
    # (clock.SPEED device ms per ms), where 250 device ms would be 60 looks per frame a second
    return _POLL_MS * clock.SPEED


def ctl_refusal(ctl):
    # why every tap is refused now (recovering, tariff-missing, journal-full): shown while idle
    return ctl.status().get("refusal")
