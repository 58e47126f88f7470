# The composition root: builds the charger from config and runs its tasks under the
# supervisor. Nothing else knows how the parts are wired; each part takes plain arguments.
import gc
import json
import os

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import board

from app import log
from app.feedback import Feedback
from app.session import Controller
from app.supervisor import Supervisor
from app.version import FW_VERSION
from billing.authcache import AuthCache
from billing.authlist import AuthList, downlink_handler
from billing.authorize import Authorizer
from billing.prepaid import Ledger
from billing.tariff import TariffSet
from hal import clock

_STATUS_MS = getattr(board, "STATUS_MS", 10000)  # the host board lets tests shorten it
_HEAP_REPORT = getattr(board, "HEAP_REPORT", 0)  # the host board's heap tests read mem_info's block counts
# Collect after this many bytes allocated, not only when the heap is full: the allocator is first-fit
# from the lowest free block after a collection, so objects that outlive a session (cache entries,
# the uplink's state) then land low, beside the boot-time ones, instead of wherever a full heap's
# garbage left the allocation point; the free space stays in large blocks (docs/benchmarks.md).
_GC_THRESHOLD = getattr(board, "GC_THRESHOLD", 8192)
_CONTROL_MS = 1000
_RECORD_BYTES = 4096  # a record's OCMF string, payload and JWS, side by side (measured: docs/records.md)
_BOOT_METER_MS = 10000  # how long boot recovery waits for the meter before closing at the checkpoint


class Tariffs:
    """The current tariff document, kept on flash (written atomically) across reboots.

    Missing or damaged, it never means free charging: current is the config's explicit
    `fallback_tariff` document, or None, and then new sessions are refused ("tariff-missing")
    until the backend's document arrives (the uplink is told to apply even the version it had).
    """

    def __init__(self, path, cfg):
        self.path = path
        self.current = None
        self.missing = None  # why the stored document is not in use ("absent", "damaged")
        try:
            with open(path) as f:
                self.current = TariffSet.from_doc(json.load(f))
        except OSError:
            self.missing = "absent"
        except Exception as exc:
            self.missing = "damaged"
            log.error("tariff", "stored tariff unusable (%s); waiting for the backend's" % exc)
        if self.current is None and cfg.get("fallback_tariff"):
            self.current = TariffSet.from_doc(cfg["fallback_tariff"])  # validated with the config
            log.warn("tariff", "no stored tariff: the configured fallback_tariff prices sessions")

    def __call__(self):
        return self.current

    def apply(self, doc):
        tset = TariffSet.from_doc(doc)  # raises on a malformed document: nothing changes
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.rename(tmp, self.path)
        self.current = tset
        self.missing = None
        log.info("tariff", "tariff document version %d applied" % tset.ver)


def _pins(cfg):
    pins = {}
    for role, name in cfg["pins"].items():
        pins[role] = board.pin(name) if role == "plug" else board.pin(name, 0)
    if "relay" not in pins:
        pins["relay"] = board.pin("relay", 0)
    return pins


def _meter(cfg, on_event):
    from hal.stream import open_stream
    from meter import models
    from meter.meter import Meter
    from meter.modbus import ModbusMaster

    m = cfg["meter"]
    if not m["url"]:
        log.error("meter", "no meter configured (meter.url): sessions cannot start")
        return None
    stream = open_stream(m["url"], m["baud"], 8, m["parity"], m["stop"])
    de = board.pin(m["de_pin"], 0) if m["de_pin"] is not None else None
    master = ModbusMaster(stream, m["timeout_ms"], m["retries"], de)
    return Meter(master, models.get(m["model"], m["generic"]), m["unit"], m["max_power_w"], m["max_age_ms"],
                 m["margin_wh"], m["serial_every"], on_event=on_event)


def _reader(cfg):
    from nfc import open_driver
    from nfc.reader import Reader

    n = cfg["nfc"]
    if not n["url"]:
        log.warn("nfc", "no card reader configured (nfc.url)")
        return None
    if not cfg["site_secret"]:
        log.error("nfc", "no site_secret: card tokens cannot be derived; reader disabled")
        return None
    return Reader(open_driver(n["reader"], n["url"], n["bus"]), cfg["site_secret"], n["poll_ms"])


def _heap(part):
    # the host board's heap census (HEAP_REPORT): live heap after building each part of the charger
    if _HEAP_REPORT:
        gc.collect()
        log.info("heap", "%s %d" % (part, gc.mem_alloc()))


class _NoMeter:
    last = None

    def fresh(self, max_age_ms=None):
        return None


async def run(cfg, dev, watchdog, root=None):
    from crypto import canon, keys, p256
    from journal.journal import Journal

    # first, while the heap is whole: the buffer every record is sealed in (billing/record.py)
    canon.reserve(_RECORD_BYTES)
    root = root or board.mount_flash()
    sup = Supervisor(watchdog)
    _heap("start")
    pins = _pins(cfg)
    relay = pins["relay"]
    relay.off()  # stays open until recovery has decided
    feedback = Feedback(pins)
    uplink = None
    display = None  # the screen's panel (display/panel.py), built after the controller
    from hal import net

    link = net.Link(cfg["net"])  # WLAN or Ethernet, as the board and net.iface say; its task starts below

    def event(kind, data):
        log.info("event", "%s %s" % (kind, json.dumps(data)))
        if uplink is not None:
            uplink.event(kind, **data)
        if display is not None:
            display.event(kind, data)  # refusals stay on screen a few seconds

    key = keys.load_or_create(root + "/" + cfg["key_path"])
    p256.comb_table()  # the signing table is built once, before the heap fragments
    _heap("key")
    max_bytes = cfg["journal"]["max_bytes"]
    # segments of at most a quarter of the journal: a small journal (config allows 16 KiB) still
    # holds the two segments the journal needs
    journal = Journal(root + "/journal", max_bytes=max_bytes, segment_bytes=min(32 * 1024, max_bytes // 4),
                      on_problem=lambda p: event("journal-problem", p))
    report = journal.recover()
    log.info("journal", "recovered: next seq %d, acked %d, %d pending, %d open sessions, %d problems"
             % (report.next_seq, report.acked_seq, report.pending, len(report.open_sessions), len(report.problems)))
    _heap("journal")
    try:
        os.mkdir(root + "/auth")
    except OSError:
        pass
    room = lambda need: journal.room(root, need)  # noqa: E731 - the journal's flash reserve, kept from lists
    authlist = AuthList(root + "/auth", room)
    cache = AuthCache(root + "/auth/cache.bin", cfg["auth"]["cache_size"])
    ledger = Ledger(root + "/auth/spent.bin")
    tariffs = Tariffs(root + "/tariff.json", cfg)
    _heap("auth+tariff")

    try:
        meter = _meter(cfg, event)
    except Exception as exc:
        log.exception("meter", exc)
        meter = None
    try:
        reader = _reader(cfg)
    except Exception as exc:
        log.exception("nfc", exc)
        reader = None
    _heap("meter+reader")

    authorizer = Authorizer(authlist, cache, ledger, cfg["auth"])
    ctl = Controller(dev, cfg, meter or _NoMeter(), authorizer, tariffs, journal, key, relay, feedback,
                     pins.get("plug"), ledger, on_event=event, on_record=lambda seq: on_record(seq))
    _heap("controller")

    def on_record(seq):
        adhoc.renew()  # a new idle period: a new payment code
        if uplink is not None:
            uplink.kick()
        if display is not None and ctl.session is not None:
            display.finished(seq, ctl.session.fields)  # the total and the receipt's QR code

    from app.adhoc import Adhoc

    # the one-time payment code (app/adhoc.py): in status while idle, on the display's payment link
    adhoc = Adhoc(cfg["pay_url"], dev, cfg["currency"], lambda: uplink is not None and uplink.kick())
    ctl.adhoc = adhoc

    pubkey_hex = key.public_hex()  # once: status goes out often, the key never changes

    def status():
        # the uplink adds seq, acked, pending, journal use and the time
        out = {"fw": FW_VERSION, "lag_max_ms": sup.max_lag_ms, "pubkey": pubkey_hex}
        out.update(ctl.status())
        if adhoc.code is not None and ctl.session is None:
            out["pay"] = adhoc.code  # the backend checks a driver's payment link against it
        link.report(out)  # link, ip, rssi
        return out

    # the uplink streams each verified part of a list version into the list, committed with its
    # version all or nothing, then the prepaid ledger is compacted (billing/authlist.py ListSink:
    # the tests wire their Downlink with it too)
    on_authlist = downlink_handler(authlist, ledger)

    def on_command(doc):
        if doc.get("cmd") == "stop":
            return ctl.remote_stop()
        if doc.get("cmd") == "start":  # a confirmed card hold (app/adhoc.py)
            ref, decision = adhoc.start(doc)
            if isinstance(decision, str) or ctl.session is not None or ctl.adhoc_start is not None:
                why = decision if isinstance(decision, str) else "busy"
                log.warn("adhoc", "start %s refused: %s" % (ref, why))
                event("refused", {"token": ref, "reason": why})  # the backend releases the hold
                return False
            ctl.start_paid(ref, decision)
            return True
        if doc.get("cmd") == "time":  # the backend's time: accepted while ours is unknown
            from hal import sntp

            return sntp.from_backend(doc)
        raise ValueError("unknown command %r" % (doc.get("cmd"),))

    gc.collect()  # the uplink's buffers are the largest long-lived blocks: into a heap without boot garbage
    uplink = _uplink(cfg, dev, journal, status, tariffs.apply, on_authlist, on_command, root, link.up, room)
    if uplink is not None:
        authorizer.ask_backend = uplink.authorize
        if tariffs.missing:
            uplink.downlink.forget("tariff")  # the retained document, even of the same version, comes again
    _heap("uplink")
    display = _display(cfg, dev, ctl, tariffs)  # after the uplink: its frame buffer is smaller
    _heap("display")
    if _GC_THRESHOLD > 0:
        gc.threshold(_GC_THRESHOLD)  # from here on: the long-lived buffers are in place
    # (built before recovery: its buffers are the largest, allocate them while the heap is whole)

    recovering = report.open_sessions
    if recovering:
        ctl.hold = "recovering"  # no new session until the power cut's sessions are closed

    async def meter_task():
        faults = 0
        while True:
            try:
                ctl.on_reading(await meter.poll())
                if faults:
                    log.info("meter", "meter back after %d failed polls" % faults)
                faults = 0
            except Exception as exc:  # MeterError, or a bug: the controller's timeout handles both
                faults += 1
                if faults & (faults - 1) == 0:  # log the 1st, 2nd, 4th, 8th... of a streak
                    log.warn("meter", "%s (%d in a row)" % (exc, faults))
            sup.progress("meter")
            await clock.sleep_ms(cfg["meter"]["poll_ms"])

    async def reader_task():
        await reader.run(lambda tap: ctl.on_tap(tap.token), lambda text: event("reader-fault", {"error": text}))

    async def control_task():
        if recovering:
            # under the supervisor (the watchdog fed): wait for the meter task's first reading, at
            # most _BOOT_METER_MS, then close at it, or at the last checkpoint when the meter is silent
            until = clock.deadline(_BOOT_METER_MS)
            while meter is not None and meter.fresh() is None and not clock.expired(until):
                sup.progress("control")
                await clock.sleep_ms(200)
            ctl.recover(recovering, meter.fresh() if meter is not None else None)
            recovering.clear()
            ctl.hold = None
            gc.collect()
        while True:
            await ctl.tick()
            sup.progress("control")
            await clock.sleep_ms(_CONTROL_MS)

    async def status_task():
        while True:
            gc.collect()  # heap= below is then the live heap (a few ms, once a status period)
            s = ctl.status()
            seq = journal.next_seq() - 1
            log.info("status", "dev=%s state=%s seq=%d pending=%d wh=%d cost=%d lag_max=%dms heap=%d net=%s"
                     % (dev, s["state"], seq, seq - journal.acked_seq(), s.get("wh", 0), s.get("cost", 0),
                        sup.max_lag_ms, gc.mem_alloc(), link.state))
            if uplink is not None and ctl.session is not None:
                uplink.kick()  # the running energy and cost in the status: the payment page's live progress
            if _HEAP_REPORT:
                import micropython

                micropython.mem_info()  # "max free sz": the largest free block, for fragmentation
            sup.progress("status")
            await clock.sleep_ms(_STATUS_MS)

    if meter is not None:
        sup.spawn("meter", meter_task, stall_ms=cfg["meter"]["poll_ms"] + 30000)
    if reader is not None:
        sup.spawn("reader", reader_task, vital=False)
    sup.spawn("control", control_task, stall_ms=30000)
    sup.spawn("status", status_task, stall_ms=3 * _STATUS_MS)
    sup.spawn("feedback", feedback.run, vital=False)
    if display is not None:
        sup.spawn("display", lambda: display.run(sup), vital=False)
    from hal import sntp

    sntp.start(sup, cfg["time"], link.up)  # the SNTP task (time.ntp) and the clock's time.max_age_s
    sup.spawn("net", link.run, vital=False)
    if uplink is not None:
        sup.spawn("uplink", uplink.run, vital=False)
    _heap("tasks")
    log.info("charger", "ready: %s" % dev)
    await sup.run()


def _display(cfg, dev, ctl, tariffs):
    kind = cfg["display"]["type"]
    if kind == "none":
        return None
    from display.panel import Panel, open_driver

    try:
        driver = open_driver(kind, board.display_bus(), cfg["display"]["addr"])
    except Exception as exc:  # no display answering: the charger works without one
        log.error("display", "%s display not usable: %s" % (kind, exc))
        return None
    return Panel(driver, ctl, tariffs, dev, cfg["display"], board.display_frames())


def _uplink(cfg, dev, journal, status, on_tariff, on_authlist, on_command, root, link_up, room=None):
    if not cfg["uplink"]["broker"]:
        log.warn("uplink", "no broker configured (uplink.broker): records stay in the journal")
        return None
    from uplink.service import Uplink

    return Uplink(cfg, dev, journal, on_tariff, on_authlist, on_command, status, state_dir=root, link_up=link_up,
                  room=room)
