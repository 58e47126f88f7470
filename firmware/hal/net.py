# The network link: brings up the interface the board chooses (board.network_link: the WLAN
# station, or Ethernet on a board that has it) and keeps it up. The uplink asks up() before it
# connects and drops its broker connection when the link goes; status carries state, IP, RSSI.
#
# A lost link is the normal case, not an error: one log line when it goes and one when it is
# back. Every connect attempt has a deadline (net.timeout_ms: association and DHCP); a failed
# attempt waits net.backoff_min_ms, doubling to net.backoff_max_ms, with jitter (50..100 %), and
# is logged as a warning for the 1st, 2nd, 4th, 8th... failure in a row only. A link lost after a
# minute or more up is tried again at once; one that was up for less (a flapping AP or cable)
# counts as a failure and backs off. While up the link is polled each second: isconnected() and,
# on WLAN, status("rssi"), which allocate nothing on the ESP32.
#
# The interface is MicroPython's network.WLAN / network.LAN (the host board has a stand-in):
# active(), isconnected(), ifconfig() or ipconfig("addr4"); WLAN also connect(), disconnect()
# and status(). WLAN status codes are matched by their names in `network`, never by number
# (the ESP32 port's failure codes are ESP-IDF reasons, other ports differ).
import random

import board
from micropython import const

from app import log
from hal import clock

_WATCH_MS = const(1000)  # link poll while up
_TRY_MS = const(250)  # status poll while an attempt runs
_STABLE_MS = const(60000)  # a link up this long was not flapping: after its loss, try at once


class Link:
    """Link(cfg["net"]); supervisor.spawn("net", link.run); link.up() -> bool."""

    def __init__(self, cfg_net):
        self.cfg = cfg_net
        self.state = "down"  # "connecting" while an attempt runs, "up"
        self.kind = None  # "wlan" or "lan", once the board built the interface
        self.ip = None
        self.rssi = None  # dBm, WLAN only
        self.fails = 0  # failed attempts in a row
        if getattr(board, "network_link", None) is None:
            self.state = "up"  # a board without a network layer: the OS keeps the link

    def up(self):
        return self.state == "up"

    def report(self, out):
        """Add the link's fields to a status dict (short names: it goes out often)."""
        out["link"] = self.state
        if self.ip is not None:
            out["ip"] = self.ip
        if self.rssi is not None:
            out["rssi"] = self.rssi

    async def run(self):
        """The link task: never returns."""
        nic = self._open()
        backoff = self.cfg["backoff_min_ms"]
        while nic is not None:
            self.state = "connecting"
            why = await self._attempt(nic)
            if why is None:
                if await self._hold(nic) >= _STABLE_MS:
                    self.fails = 0
                    backoff = self.cfg["backoff_min_ms"]
                    continue  # try again at once: most losses are short
                # up only briefly (a flapping AP or cable): back off as after a failed attempt;
                # _hold logged the loss, so no warning for it
            self.state = "down"
            self.fails += 1
            delay = backoff // 2 + random.getrandbits(24) % (backoff // 2 + 1)
            if why is not None and self.fails & (self.fails - 1) == 0:
                log.warn("net", "%s not up: %s (%d in a row); next try in %d ms" % (self.kind, why, self.fails, delay))
            await clock.io_sleep_ms(delay)
            backoff = min(backoff * 2, self.cfg["backoff_max_ms"])
        while True:  # no interface: the charger runs offline
            await clock.sleep_ms(3600000)

    async def _hold(self, nic):
        # the link is up: watch it until it goes; returns how long it was up (ms)
        self.state = "up"
        log.info("net", "up: %s %s%s" % (self.kind, self.ip, "" if self.rssi is None else " rssi %d dBm" % self.rssi))
        since = clock.io_ms()
        while nic.isconnected():
            if self.kind == "wlan":
                self.rssi = _rssi(nic)
            await clock.io_sleep_ms(_WATCH_MS)
        self.state = "down"
        self.ip = self.rssi = None
        lasted = clock.io_ms() - since
        log.info("net", "down: %s link lost after %d s" % (self.kind, lasted // 1000))
        return lasted

    def _open(self):
        if self.state == "up":
            return None
        try:
            self.kind, nic = board.network_link(self.cfg)
        except Exception as exc:  # no such interface on this board, a PHY that does not answer
            log.error("net", "no network interface: %s" % exc)
            return None
        if self.kind == "wlan" and not self.cfg["wifi"]["ssid"]:
            log.error("net", "WLAN without an SSID (net.wifi.ssid): the charger stays offline")
            return None
        return nic

    async def _attempt(self, nic):
        # One attempt, bounded by net.timeout_ms; None when up, else why not.
        wlan = self.kind == "wlan"
        at = clock.io_deadline(self.cfg["timeout_ms"])
        why = "not connected"
        try:
            if not nic.active():
                nic.active(True)
            if wlan:
                try:
                    nic.disconnect()  # ends the driver's own retries of the last attempt
                except OSError:
                    pass
                wifi = self.cfg["wifi"]
                nic.connect(wifi["ssid"], wifi["password"])
            while not clock.io_expired(at):
                if nic.isconnected():
                    try:
                        ip = nic.ipconfig("addr4")[0]
                    except AttributeError:  # before MicroPython 1.24
                        ip = nic.ifconfig()[0]
                    if ip != "0.0.0.0":  # a wired link is up before DHCP has answered
                        self.ip = ip
                        self.rssi = _rssi(nic) if wlan else None
                        return None
                    why = "no address (DHCP)"
                elif wlan:
                    # a failure status by its name ("wrong password"); the ESP32's are ESP-IDF reasons
                    import network

                    code = nic.status()
                    for name in ("STAT_WRONG_PASSWORD", "STAT_NO_AP_FOUND", "STAT_CONNECT_FAIL",
                                 "STAT_BEACON_TIMEOUT", "STAT_ASSOC_FAIL", "STAT_HANDSHAKE_TIMEOUT"):
                        if getattr(network, name, None) == code:
                            why = name[5:].lower().replace("_", " ")
                            break
                await clock.io_sleep_ms(max(0, min(_TRY_MS, at - clock.io_ms())))
        except (OSError, ValueError) as exc:  # the driver refused (not started, internal error): try again later
            why = str(exc)
        if wlan:
            try:
                nic.disconnect()
            except OSError:
                pass
        return "%s within %d ms" % (why, self.cfg["timeout_ms"])


def _rssi(nic):
    try:
        return nic.status("rssi")
    except (OSError, ValueError):  # not associated (any more)
        return None

