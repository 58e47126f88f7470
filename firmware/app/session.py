# The session controller: one connector's state machine, from tap to signed record.
#
#   idle -> authorizing -> charging <-> suspended -> finishing -> idle
#   any state -> faulted (relay open) while the meter gives no valid reading; back to idle when it does
#
# Rules that protect the money:
# - the relay closes only after the session start is on flash, and opens on every stop and fault;
# - a session starts only from a fresh meter reading and is billed only from fresh readings
#   (a silent meter stops it at the last good reading, flagged meter-fault);
# - durations come from the monotonic clock: a sample's time is start + elapsed, so setting the
#   wall clock mid-session changes no bill;
# - a prepaid session stops before the next interval could take it past the available balance;
#   on any limit the relay opens at once, the record follows at the next tick;
# - a close that fails half-way (heap, flash) is retried with the stop point fixed the first time.
import gc

from app import log
from app.version import FW_VERSION
from billing import record
from billing.pricing import Pricer
from hal import clock

IDLE = "idle"
AUTHORIZING = "authorizing"
CHARGING = "charging"
SUSPENDED = "suspended"
FINISHING = "finishing"
FAULTED = "faulted"


class Session:
    """The running session. `doc` is its start as journaled (and as read back after a power cut)."""

    def __init__(self, sid, doc, tariff, baseline, mono):
        self.sid = sid
        self.doc = doc
        self.token = doc["token"]
        self.auth = doc["auth"]
        self.contract = doc.get("contract")
        self.available = doc.get("available")  # prepaid: minor units it may spend, else None
        self.rsv = doc.get("rsv")  # the backend reservation paying for it (its exp), else None
        self.cap_wh = doc.get("cap_wh", 0)
        self.cap_cost = doc.get("cap_cost", 0)
        self.tariff = tariff
        self.tariff_ver = doc["tariff_ver"]
        self.start_t = doc["t"]
        self.start_tq = doc["tq"]
        self.start_wh = doc["wh"]
        self.meter_model = doc["model"]
        self.meter_serial = doc.get("serial")
        self.baseline = baseline
        self.mono = mono
        self.last_wh = self.start_wh
        self.last_w = 0  # the last reading's power, W: the status shows it
        self.last_mono = mono
        self.last_good_mono = mono
        self.idle_since = None  # monotonic ms since power is below the unplug threshold
        self.checkpoint_mono = mono
        self.pricer = None
        self.step_cost = 0  # incl-VAT cost of the last interval: the projection for limits
        # closing: the stop point once fixed; fields: the record's fields once priced;
        # committed/booked: the record is journaled / the prepaid spend is in the ledger (before it)
        self.closing = None
        self.fields = None
        self.committed = False
        self.booked = False

    def epoch_at(self, mono):
        """Wall time of a monotonic instant: the start plus elapsed time, never before the start
        (the start reading itself may be a little older than the start)."""
        elapsed = mono - self.mono
        return self.start_t + (elapsed // 1000 if elapsed > 0 else 0)


def worse_quality(a, b):
    """The lower of two OCMF time qualities (U < I < S)."""
    return a if "UIS".index(a) < "UIS".index(b) else b


def start_doc(token, decision, tariff, tariff_ver, t, tq, reading):
    return {"token": token, "auth": decision.how, "contract": decision.contract, "available": decision.available,
            "rsv": decision.rsv, "cap_wh": decision.cap_wh, "cap_cost": decision.cap_cost, "tariff": tariff.id,
            "tariff_ver": tariff_ver, "t": t, "tq": tq, "wh": reading.energy_wh, "model": reading.model,
            "serial": reading.serial}


def _zero_tariffs(start, currency):
    """A tariff set that prices nothing, for closing a recovered session whose tariff is gone."""
    from billing.tariff import TariffSet

    tid = start.get("tariff") or "none"
    return TariffSet.from_doc({"v": 1, "ver": 0, "tz": "UTC0", "default": tid, "contracts": {},
                               "tariffs": {tid: {"id": tid, "currency": currency, "minor": 2,
                                                 "elements": [{"c": [["FLAT", 0, None, 1]]}]}}})


class Controller:
    def __init__(self, dev, cfg, meter, authorizer, tariffs, journal, key, relay, feedback=None, plug=None,
                 ledger=None, on_event=None, on_record=None):
        self.dev = dev
        self.cfg = cfg
        self.s_cfg = cfg["session"]
        self.meter = meter
        self.auth = authorizer
        self.tariffs = tariffs  # () -> TariffSet (the current one; may change between sessions)
        self.journal = journal
        self.key = key
        self.relay = relay
        self.feedback = feedback
        self.plug = plug  # input pin: 1 = EV plugged in; None = judge by power
        self.ledger = ledger
        self.on_event = on_event or (lambda kind, data: None)
        self.on_record = on_record or (lambda seq: None)
        self.heap_at_seal = 0
        self.currency = cfg.get("currency", "EUR")
        self.state = IDLE
        self.session = None
        self.refusal = None  # why new sessions are refused (journal full), for status
        self.hold = None  # why no session may start yet ("recovering": sessions of a power cut still open)
        self._stop_request = None
        self.adhoc_start = None  # (token, Decision): a paid ad-hoc start the next tick performs (app/adhoc.py)
        self.relay.off()

    # ---- state --------------------------------------------------------------------------
    def _set_state(self, state):
        if state != self.state:
            log.info("session", "state %s -> %s" % (self.state, state))
            self.state = state
            if self.feedback is not None:
                self.feedback.steady(state)

    def _feedback(self, name):
        if self.feedback is not None:
            self.feedback.event(name)

    def status(self):
        s = self.session
        out = {"state": self.state}
        if s is not None and s.pricer is not None:
            excl, incl = s.pricer.running_cost()
            out.update({"wh": s.last_wh - s.start_wh, "w": s.last_w, "cost": incl, "since": s.start_t})
        refusal = self._not_ready() or self.refusal
        if refusal:
            out["refusal"] = refusal
        return out

    # ---- inputs -------------------------------------------------------------------------
    async def on_tap(self, token):
        """A card was presented (once per presentation)."""
        s = self.session
        if s is not None:
            if token == s.token or self.auth.is_master(token):
                await self.stop("card")
            else:
                log.info("session", "tap by another card ignored while charging")
                self._feedback("rejected")
                self.on_event("tap-ignored", {"reason": "busy"})
            return
        if self.state in (AUTHORIZING, FINISHING):
            return
        await self._try_start(token)

    def start_paid(self, token, decision):
        """An ad-hoc start (a confirmed card hold): taken by the next tick, like a tap."""
        self.adhoc_start = (token, decision)

    def remote_stop(self):
        if self.session is not None:
            self._request_stop("remote")
            return True
        return False

    def on_reading(self, reading):
        """A fresh, plausible meter reading (from the meter task)."""
        s = self.session
        if self.state == FAULTED and s is None:
            self._set_state(IDLE)
        if s is None or s.pricer is None or s.closing is not None:
            return  # no session, or its stop point is fixed
        if reading.baseline != s.baseline:
            # the meter was swapped: no energy difference may span two meters
            self._request_stop("meter-fault")
            return
        now = reading.t_ms
        epoch = s.epoch_at(now)
        before = s.pricer.running_cost()[1]
        s.pricer.add_sample(epoch, reading.energy_wh, reading.power_w)
        after = s.pricer.running_cost()[1]
        s.step_cost = max(s.step_cost, after - before) if now - s.last_mono < 60000 else after - before
        s.last_wh = reading.energy_wh
        s.last_w = reading.power_w
        s.last_mono = now
        s.last_good_mono = now
        threshold = self.s_cfg["unplug_power_w"]
        if reading.power_w < threshold:
            if s.idle_since is None:
                s.idle_since = now
            if self.state == CHARGING:
                self._set_state(SUSPENDED)
        else:
            s.idle_since = None
            if self.state == SUSPENDED:
                self._set_state(CHARGING)
        self._check_limits(s, after, now)

    def _request_stop(self, reason):
        # The relay opens at once: no energy flows past a limit while the tick finishes the record.
        if not self._stop_request:
            self._stop_request = reason
            self.relay.off()

    def _check_limits(self, s, cost_incl, now):
        energy = s.last_wh - s.start_wh
        c = self.s_cfg
        projected = cost_incl + s.step_cost  # the cost after one more interval like the last ones
        if s.available is not None and projected >= s.available:
            self._request_stop("balance")
        elif s.cap_wh and energy >= s.cap_wh or s.cap_cost and projected >= s.cap_cost:
            self._request_stop("limit")
        elif c["max_energy_wh"] and energy >= c["max_energy_wh"]:
            self._request_stop("limit")
        elif c["max_cost"] and projected >= c["max_cost"]:
            self._request_stop("limit")
        elif c["max_duration_s"] and (now - s.mono) // 1000 >= c["max_duration_s"]:
            self._request_stop("limit")

    async def tick(self):
        """Periodic checks (about once a second): stop requests, unplug, meter fault, checkpoints."""
        s = self.session
        now = clock.monotonic_ms()
        if s is not None and self.adhoc_start is not None:  # a tapped card came first: the paid start is off
            self.on_event("refused", {"token": self.adhoc_start[0], "reason": "busy"})
            self.adhoc_start = None
        if s is None:
            if self.adhoc_start is not None and self.state in (IDLE, FAULTED):
                token, decision = self.adhoc_start
                self.adhoc_start = None
                await self._try_start(token, decision)
                return
            if self.state == IDLE and self.meter.fresh() is None and self.meter.last is not None:
                self._set_state(FAULTED)
            return
        if self._stop_request:
            await self.stop(self._stop_request)
            return
        c = self.s_cfg
        if self.plug is not None and not self.plug.value():
            await self.stop("unplugged")
            return
        if c["unplug_after_s"] and s.idle_since is not None and now - s.idle_since >= c["unplug_after_s"] * 1000:
            await self.stop("unplugged")
            return
        if now - s.last_good_mono >= c["meter_fault_s"] * 1000:
            log.error("session", "no valid meter reading for %d s: stopping" % c["meter_fault_s"])
            await self.stop("meter-fault")
            return
        if now - s.checkpoint_mono >= self.cfg["journal"]["checkpoint_s"] * 1000:
            s.checkpoint_mono = now
            excl, incl = s.pricer.running_cost()
            t = s.epoch_at(s.last_mono)
            self.journal.checkpoint(s.sid, {"t": t, "wh": s.last_wh, "cost": incl})

    # ---- start --------------------------------------------------------------------------
    def _not_ready(self):
        # a reason every card is refused for now, whoever taps: checked before asking anybody
        if self.hold:
            return self.hold
        if self.tariffs() is None:
            return "tariff-missing"
        return None

    async def _try_start(self, token, decision=None):
        why = self._not_ready()
        if why:
            log.warn("session", "not starting: %s" % why)
            self._feedback("rejected")
            self.on_event("refused", {"token": token, "reason": why})
            return
        before = self.state
        self._set_state(AUTHORIZING)
        try:
            epoch, tq = clock.now()
            if decision is None:  # a paid ad-hoc start comes decided
                decision = await self.auth.decide(token, epoch, tq != "U", self.journal.next_seq())
            if not decision.ok:
                log.info("session", "card rejected: %s" % decision.reason)
                self._feedback("rejected")
                self.on_event("rejected", {"token": token, "reason": decision.reason})
                return
            if not self.journal.can_start_session():
                self.refusal = "journal-full"
                log.error("session", "journal full: new sessions refused until the backend acknowledges records")
                self._feedback("rejected")
                self.on_event("refused", {"token": token, "reason": "journal-full"})
                return
            self.refusal = None
            if self.plug is not None and not self.plug.value():
                log.info("session", "no EV plugged in: not starting")
                self._feedback("rejected")
                self.on_event("refused", {"token": token, "reason": "unplugged"})
                return
            reading = self.meter.fresh()
            if reading is None:
                log.error("session", "no fresh meter reading: cannot start")
                self._feedback("fault")
                self.on_event("refused", {"token": token, "reason": "meter-fault"})
                return
            tset = self.tariffs()
            tariff = tset.select(decision.contract)
            epoch, tq = clock.now()
            mono = clock.monotonic_ms()  # durations count from now, not from the start reading's age
            sid = "%d-%d" % (epoch, self.journal.next_seq())
            doc = start_doc(token, decision, tariff, tset.ver, epoch, tq, reading)
            s = Session(sid, doc, tariff, reading.baseline, mono)
            s.pricer = Pricer(tariff, tset.tz, epoch, reading.energy_wh, tq, self.s_cfg["unplug_power_w"])
            if s.auth == "adhoc" and s.pricer.running_cost()[1] >= s.cap_cost:
                log.info("session", "ad-hoc start refused: the hold does not cover the session fee")
                self.on_event("refused", {"token": token, "reason": "hold"})
                return
            if s.available is not None and s.pricer.running_cost()[1] >= s.available:
                # the session fee alone would take the prepaid balance past zero
                log.info("session", "card rejected: balance")
                self._feedback("rejected")
                self.on_event("rejected", {"token": token, "reason": "balance"})
                return
            self.journal.open_session(sid, doc)  # on flash before the relay closes
            self.session = s
            self._stop_request = None
            self.relay.on()
            log.info("session", "started %s auth=%s tariff=%s at %d Wh" % (sid, s.auth, tariff.id, s.start_wh))
            self._feedback("accepted")
            self._set_state(CHARGING)
            if s.auth == "adhoc":  # the backend's payment waits for this (backend/payments/)
                self.on_event("started", {"token": token, "auth": "adhoc", "cap": s.cap_cost})
        finally:
            if self.session is None and self.state == AUTHORIZING:
                # a refused tap does not clear a meter fault: the meter does (on_reading)
                self._set_state(FAULTED if before == FAULTED and self.meter.fresh() is None else IDLE)

    # ---- stop ---------------------------------------------------------------------------
    async def stop(self, reason):
        s = self.session
        if s is None:
            return
        self.relay.off()
        self._set_state(FINISHING)
        if s.closing is None:
            # The stop point is fixed once: a retry after a failed close (flash, memory) bills the same.
            self._stop_request = reason  # the next tick retries when closing fails
            flags = []
            reading = self.meter.fresh()
            if reason == "meter-fault" or reading is None or reading.baseline != s.baseline:
                stop_wh, stop_mono = s.last_wh, s.last_mono  # never bill stale or other-meter energy
                flags.append("meter-fault")
            else:
                stop_wh, stop_mono = reading.energy_wh, reading.t_ms
            # the stop time is reckoned from the start time: it is no better than the start's quality
            s.closing = (reason, s.epoch_at(stop_mono), worse_quality(s.start_tq, clock.now()[1]), stop_wh, flags)
        self._close(s, *s.closing)
        self.session = None
        self._stop_request = None
        self._feedback("stopped")
        self._set_state(IDLE)

    def _close(self, s, reason, stop_t, stop_tq, stop_wh, flags):
        """Price, sign and journal the record of s. Safe to call again after it raised."""
        f = s.fields
        if f is None:
            f = s.fields = self._record_fields(s, reason, stop_t, stop_tq, stop_wh, flags)
        seq = f["seq"]
        if not s.committed:
            gc.collect()  # sealing allocates small blocks only (the record is built in canon's kept buffer)
            self.heap_at_seal = gc.mem_alloc()  # live heap just before signing (logged, benchmarked)

            def commit(payload, signed):  # views of the sealing buffer: journaled, never copied
                if s.available is not None and self.ledger is not None and not s.booked:
                    # booked first: a power cut before the commit re-closes the session under
                    # this seq at boot, and that booking replaces this one (never a spend lost)
                    self.ledger.record(s.token, seq, f["charged"])
                    s.booked = True
                self.journal.commit_record(seq, payload, signed, s.sid)
                s.committed = True

            record.seal(self.key, f, commit)
        cost = f["cost"]
        log.info("session", "record %d: %s %d Wh %d %s minor units incl (%s) heap=%d flags=%s"
                 % (seq, reason, f["stop"]["wh"] - f["start"]["wh"], cost["incl"], cost["currency"], s.sid,
                    self.heap_at_seal, ",".join(f["flags"])))
        self.on_record(seq)

    def _record_fields(self, s, reason, stop_t, stop_tq, stop_wh, flags):
        cost = s.pricer.finish(stop_t, stop_wh, 0 if reason == "power-loss" else None)
        for flag in cost.get("flags", ()):
            if flag not in flags:
                flags.append(flag)
        lines = cost["lines"]
        excl, incl = cost["excl"], cost["incl"]
        if stop_wh - s.start_wh < self.s_cfg["min_energy_wh"]:
            flags.append("void")
            excl = incl = 0
            lines = []
        fields = {
            "dev": self.dev, "seq": self.journal.next_seq(), "prev": self.journal.prev_hash(), "token": s.token,
            "auth": s.auth, "contract": s.contract, "tariff": {"id": s.tariff.id, "ver": s.tariff_ver},
            "start": {"t": s.start_t, "tq": s.start_tq, "wh": s.start_wh},
            "stop": {"t": stop_t, "tq": stop_tq, "wh": stop_wh, "reason": reason},
            "meter": {"model": s.meter_model, "serial": s.meter_serial or "unknown"},
            "cost": {"currency": cost["currency"], "excl": excl, "incl": incl, "lines": lines},
            "flags": flags, "fw": FW_VERSION,
            # time in the session without energy flowing (power under unplug_power_w), priced or
            # not: the backend's idle-while-plugged figure (docs/records.md)
            "parking_s": cost["parking_s"] if "parking_s" in cost else cost["parking_ms"] // 1000,
        }
        if s.available is not None:
            fields["charged"] = min(incl, max(0, s.available))  # what the prepaid balance pays
            if s.rsv:
                fields["rsv"] = s.rsv  # the backend settles this reservation with `charged`
        return fields

    # ---- boot recovery ------------------------------------------------------------------
    def recover(self, open_sessions, reading):
        """Close sessions the journal found open at boot (the power went): stop reason power-loss.

        The stop time is the last checkpoint's (the charger was off after the cut, and a driver
        pays no time for it); the energy is the meter register read now (it kept counting while
        the relay was closed), or the last checkpoint's when the meter is silent or was swapped.
        """
        tset = self.tariffs()
        for sid, item in open_sessions.items():
            st, last = item["start"], item["last"] or {}
            flags = ["power-loss"]
            if tset is None:  # the tariff document went with the cut: closed unpriced, flagged
                tset = _zero_tariffs(st, self.currency)
                flags.append("tariff-missing")
            stop_wh = last.get("wh", st["wh"])
            if reading is not None and reading.serial == st.get("serial") and reading.energy_wh >= stop_wh:
                stop_wh = reading.energy_wh
            else:
                flags.append("meter-fault")
            stop_t = last.get("t", st["t"])
            # the tariff the session started with, when the document still has it
            tariff = tset.tariffs.get(st["tariff"]) or tset.select(st.get("contract"))
            s = Session(sid, st, tariff, 0, 0)
            s.pricer = Pricer(tariff, tset.tz, st["t"], st["wh"], st["tq"], self.s_cfg["unplug_power_w"])
            if last.get("wh") is not None and last.get("t", st["t"]) >= st["t"]:
                s.pricer.add_sample(last["t"], last["wh"], self.s_cfg["unplug_power_w"] + 1)
            tq = worse_quality(st["tq"], clock.now()[1])  # stop_t comes from a checkpoint of that clock
            log.warn("session", "closing session %s left open by a power loss" % sid)
            self._close(s, "power-loss", stop_t, tq, stop_wh, flags)
            del open_sessions[sid]  # closed: a retry after a failure (memory, flash) goes on with the rest
