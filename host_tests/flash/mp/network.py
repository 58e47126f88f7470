# A stand-in for the ESP32 port's `network` module, so boards/esp32/board.py and firmware/hal/net.py
# run on the unix port. It follows the documented API (docs.micropython.org: network.WLAN,
# network.LAN, the esp32 quickref's "LAN" section) and the ESP32 port's behaviour:
#   - WLAN.status() codes: STAT_IDLE, STAT_CONNECTING, STAT_GOT_IP, and the ESP-IDF disconnect
#     reasons the port exports as STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD, STAT_BEACON_TIMEOUT,
#     STAT_ASSOC_FAIL, STAT_HANDSHAKE_TIMEOUT (values as in ports/esp32; no STAT_CONNECT_FAIL there);
#   - after connect() the driver retries on its own until disconnect(); status() reports the
#     last failure reason meanwhile; status("rssi") raises OSError when not associated;
#   - LAN(...) takes keyword arguments only from the port's list and rejects any other;
#     isconnected() is the PHY link, the address comes later from DHCP.
# The world is module state the tests change: aps (SSID -> [password, rssi]), cable, dhcp.
# calls records what the code under test did. Only for host_tests/flash.
import time

import machine

STA_IF = 0
AP_IF = 1
STAT_IDLE = 1000
STAT_CONNECTING = 1001
STAT_GOT_IP = 1010
STAT_BEACON_TIMEOUT = 200
STAT_NO_AP_FOUND = 201
STAT_WRONG_PASSWORD = 202
STAT_ASSOC_FAIL = 203
STAT_HANDSHAKE_TIMEOUT = 204
ETH_INITIALIZED = 0
ETH_STARTED = 1
ETH_STOPPED = 2
ETH_CONNECTED = 3
ETH_DISCONNECTED = 4
ETH_GOT_IP = 5
PHY_LAN8710 = 0
PHY_LAN8720 = 1
PHY_IP101 = 2
PHY_RTL8201 = 3
PHY_DP83848 = 4
PHY_KSZ8041 = 5
PHY_KSZ8081 = 6

JOIN_MS = 100  # association + DHCP once the AP answers
aps = {}  # ssid -> [password, rssi dBm]
cable = True  # Ethernet cable plugged in (PHY link): change it with plug()
dhcp = True  # a DHCP server answers
calls = []  # ("WLAN"|"LAN"|"active"|"connect"|"disconnect", ...) in order

_NO_IP = ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")
_plugged_at = 0


def plug(on):
    """Plug the Ethernet cable in (True) or pull it (False); DHCP answers JOIN_MS after plugging."""
    global cable, _plugged_at
    cable = bool(on)
    _plugged_at = time.ticks_ms()


def _now():
    return time.ticks_ms()


class WLAN:
    _sta = None

    def __new__(cls, interface=STA_IF):
        if interface != STA_IF:
            raise ValueError("only the station interface is simulated")
        if WLAN._sta is None:  # the port returns one object per interface
            WLAN._sta = object.__new__(cls)
            WLAN._sta._init()
            calls.append(("WLAN", interface))
        return WLAN._sta

    def __init__(self, interface=STA_IF):
        pass

    def _init(self):
        self._active = False
        self._ssid = None
        self._key = None
        self._requested = False
        self._since = 0
        self._reason = 0  # last disconnect reason (0: none)
        self._up = False

    def active(self, on=None):
        if on is not None:
            calls.append(("active", bool(on)))
            self._active = bool(on)
            if not on:
                self._requested = self._up = False
        return self._active

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")  # ESP_ERR_WIFI_NOT_STARTED
        calls.append(("connect", ssid))
        self._ssid, self._key = ssid, key
        self._requested = True
        self._since = _now()

    def disconnect(self):
        calls.append(("disconnect",))
        self._requested = self._up = False
        self._reason = 8  # WIFI_REASON_ASSOC_LEAVE: status() says STAT_IDLE

    def _step(self):
        # what the driver would have done by now
        ap = aps.get(self._ssid)
        if self._up:
            if ap is None:  # the AP went away: beacons stop, the driver retries on its own
                self._up = False
                self._reason = STAT_BEACON_TIMEOUT
                self._since = _now()
            return
        if not self._requested or time.ticks_diff(_now(), self._since) < JOIN_MS:
            return
        if ap is None:
            self._reason = STAT_NO_AP_FOUND
        elif ap[0] is not None and ap[0] != self._key:
            self._reason = STAT_WRONG_PASSWORD
        else:
            self._up = True
            self._reason = 0
        self._since = _now()  # the next retry

    def isconnected(self):
        self._step()
        return self._up

    def status(self, param=None):
        self._step()
        if param is not None:
            if param != "rssi":
                raise ValueError("unknown status param")
            if not self._up:
                raise OSError("Wifi Not Connected")
            return aps[self._ssid][1]
        if self._up:
            return STAT_GOT_IP
        if self._reason in (STAT_NO_AP_FOUND, STAT_WRONG_PASSWORD):
            return self._reason
        if self._reason == 8:
            return STAT_IDLE
        return STAT_CONNECTING if self._requested else STAT_IDLE

    def ifconfig(self):
        return ("192.168.4.23", "255.255.255.0", "192.168.4.1", "192.168.4.1") if self.isconnected() else _NO_IP

    def ipconfig(self, key):
        if key != "addr4":
            raise ValueError("unexpected key")
        return self.ifconfig()[:2]

    def config(self, *args, **kw):
        if args == ("mac",):
            return b"\x24\x6f\x28\x01\x02\x03"
        if args:
            raise ValueError("unknown config param")


# The keyword arguments the ESP32 port's LAN constructor accepts (ports/esp32/network_lan.c).
_LAN_KW = ("mdc", "mdio", "power", "reset", "phy_addr", "phy_type", "spi", "cs", "int", "ref_clk_mode", "ref_clk")
_PHYS = (PHY_LAN8710, PHY_LAN8720, PHY_IP101, PHY_RTL8201, PHY_DP83848, PHY_KSZ8041, PHY_KSZ8081)


def _gpio(p):
    return p if p is None or isinstance(p, int) else p.gpio


class LAN:
    _lan = None

    def __new__(cls, id=None, **kw):
        for k in kw:
            if k not in _LAN_KW:
                raise TypeError("unexpected keyword argument '%s'" % k)
        if LAN._lan is not None:  # initialised once; later calls return it
            return LAN._lan
        if id not in (None, 0):
            raise ValueError("invalid LAN interface identifier")
        if "phy_addr" not in kw or "phy_type" not in kw:
            raise TypeError("phy_addr and phy_type are required")
        if not 0 <= kw["phy_addr"] <= 0x1F:
            raise ValueError("invalid phy address")
        if kw["phy_type"] not in _PHYS:
            raise ValueError("invalid phy type")
        if kw.get("mdc") is None or kw.get("mdio") is None:
            raise ValueError("mdc and mdio must be specified")
        if kw.get("ref_clk_mode") not in (None, machine.Pin.IN, machine.Pin.OUT):
            raise ValueError("invalid ref_clk_mode")
        lan = object.__new__(cls)
        lan.args = {k: _gpio(v) if k in ("mdc", "mdio", "power", "reset", "ref_clk", "cs", "int") else v
                    for k, v in kw.items()}
        lan._active = False
        lan._since = 0
        calls.append(("LAN", lan.args))
        LAN._lan = lan
        return lan

    def __init__(self, id=None, **kw):
        pass

    def active(self, on=None):
        if on is not None:
            calls.append(("active", bool(on)))
            self._active = bool(on)
            self._since = _now()
        return self._active

    def isconnected(self):
        return self._active and cable

    def _has_ip(self):
        now = _now()
        return (self.isconnected() and dhcp and time.ticks_diff(now, self._since) >= JOIN_MS
                and time.ticks_diff(now, _plugged_at) >= JOIN_MS)

    def status(self):
        if not self._active:
            return ETH_STOPPED
        if not cable:
            return ETH_DISCONNECTED
        return ETH_GOT_IP if self._has_ip() else ETH_CONNECTED

    def ifconfig(self):
        return ("10.0.0.42", "255.255.255.0", "10.0.0.1", "10.0.0.1") if self._has_ip() else _NO_IP

    def ipconfig(self, key):
        if key != "addr4":
            raise ValueError("unexpected key")
        return self.ifconfig()[:2]

    def config(self, *args, **kw):
        if args == ("mac",):
            return b"\x24\x6f\x28\x01\x02\x04"
        if args:
            raise ValueError("unknown config param")
