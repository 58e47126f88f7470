"""The network link on the ESP32 board layer: firmware/hal/net.py driving what boards/esp32/board.py
network_link() builds, under MicroPython, on the stand-ins for `machine` and `network`
(host_tests/flash/mp/). WLAN: connect, a wrong password, the AP going away and coming back (backoff,
a bounded number of log lines); Ethernet on the Olimex ESP32-POE (the documented LAN8720 call)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sim import mpy

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ESP32 = REPO / "boards" / "esp32"
FIRMWARE = REPO / "firmware"

# short waits so that a test sees several attempts in a few seconds of wire time
NET = {"iface": "auto", "wifi": {"ssid": "shop", "password": "correct horse"}, "timeout_ms": 400,
       "backoff_min_ms": 100, "backoff_max_ms": 800}

PRELUDE = """
import asyncio
import network
from app import log
from hal import clock, net

trace = []  # [ms since start, state] at each change of the link's state
T0 = clock.io_ms()


async def watch(link, ms, until=None):
    # sample the state every 20 ms for ms (or until until() holds)
    t0 = clock.io_ms()
    while clock.io_ms() - t0 < ms:
        if not trace or link.state != trace[-1][1]:
            trace.append([clock.io_ms() - T0, link.state])
        if until is not None and until():
            return True
        await asyncio.sleep_ms(20)
    return False


def lines():
    return [l.split(" ", 1)[1] for l in log.recent() if " net: " in l]
"""


def run_net(tmp_path, board: str, body: str, cfg: dict | None = None):
    """Run body on a root laid out as deploy leaves an ESP32, the firmware mounted at /fw;
    LINK is a hal.net.Link on cfg (NET by default)."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for src in [*ESP32.glob("*.py"), HERE / "mp" / "machine.py", HERE / "mp" / "network.py"]:
        shutil.copy(src, root / src.name)
    (root / "board.txt").write_text(board + "\n")
    code = f"""
import vfs, os, sys
vfs.umount("/")
vfs.mount(vfs.VfsPosix({str(root)!r}), "/")
vfs.mount(vfs.VfsPosix({str(FIRMWARE)!r}), "/fw")
os.chdir("/")
sys.path.insert(0, "")
sys.path.append("/fw")
import json
import machine
import board
CFG = json.loads({json.dumps(json.dumps(cfg or NET))})
""" + PRELUDE + "LINK = net.Link(CFG)\n" + body
    return mpy.run(code, timeout=60).value


def test_wlan_connects_and_reports_ip_and_rssi(tmp_path):
    out = run_net(tmp_path, "esp32-devkitc", """
network.aps["shop"] = ["correct horse", -61]
async def main():
    asyncio.create_task(LINK.run())
    await asyncio.sleep_ms(0)
    first = LINK.state
    ok = await watch(LINK, 3000, LINK.up)
    rep = {}
    LINK.report(rep)
    emit({"first": first, "ok": ok, "kind": LINK.kind, "report": rep, "calls": network.calls, "lines": lines()})
asyncio.run(main())
""")
    assert out["ok"] and out["kind"] == "wlan" and out["first"] == "connecting"
    assert out["report"] == {"link": "up", "ip": "192.168.4.23", "rssi": -61}
    assert ["WLAN", 0] in out["calls"] and ["active", True] in out["calls"] and ["connect", "shop"] in out["calls"]
    assert out["lines"] == ["I net: up: wlan 192.168.4.23 rssi -61 dBm"], out["lines"]


def test_wrong_password_backs_off_with_few_log_lines_then_connects(tmp_path):
    out = run_net(tmp_path, "esp32-devkitc", """
network.aps["shop"] = ["another password", -70]
async def main():
    asyncio.create_task(LINK.run())
    await watch(LINK, 4000)
    during = LINK.state
    connects = sum(1 for c in network.calls if c[0] == "connect")
    before = lines()
    network.aps["shop"][0] = "correct horse"  # the technician fixes the access point
    ok = await watch(LINK, 3000, LINK.up)
    emit({"during": during, "connects": connects, "fails": LINK.fails, "before": before, "ok": ok,
          "after": lines()[len(before):]})
asyncio.run(main())
""")
    assert out["during"] in ("down", "connecting")
    # 400 ms attempts, then 100, 200, 400, 800, 800 ms backoff (50..100 %): 4..6 tries in 4 s
    assert 3 <= out["connects"] <= 7, out
    warns = [line for line in out["before"] if line.startswith("W net: wlan not up: wrong password within 400 ms")]
    # a warning for the 1st, 2nd and 4th failure in a row only, nothing else logged
    assert len(warns) == len(out["before"]) == (3 if out["fails"] >= 4 else 2), out["before"]
    delays = [int(w.rsplit("next try in ", 1)[1].split()[0]) for w in warns]
    assert 50 <= delays[0] <= 100 and 100 <= delays[1] <= 200, delays
    if len(delays) == 3:
        assert 400 <= delays[2] <= 800, delays
    assert out["ok"] and out["after"] == ["I net: up: wlan 192.168.4.23 rssi -70 dBm"], out


def test_access_point_goes_away_and_comes_back(tmp_path):
    out = run_net(tmp_path, "esp32-devkitc", """
network.aps["shop"] = ["correct horse", -55]
async def main():
    asyncio.create_task(LINK.run())
    await asyncio.sleep_ms(0)
    await watch(LINK, 2000, LINK.up)
    ap = network.aps.pop("shop")  # power cut at the access point
    await watch(LINK, 4000)
    away = LINK.state
    no_ap = [c for c in network.calls if c[0] == "connect"]
    network.aps["shop"] = ap
    ok = await watch(LINK, 3000, LINK.up)
    emit({"away": away, "ok": ok, "trace": trace, "lines": lines(), "connects": len(no_ap), "rssi": LINK.rssi})
asyncio.run(main())
""")
    states = [s for _, s in out["trace"]]
    assert states[:3] == ["connecting", "up", "down"] and states[-1] == "up" and out["ok"], states
    assert out["away"] in ("down", "connecting") and out["rssi"] == -55
    assert states.count("up") == 2  # down once, up again once: no flapping
    lines = out["lines"]
    assert [line for line in lines if line.startswith("I net: up")] == ["I net: up: wlan 192.168.4.23 rssi -55 dBm"] * 2
    assert len([line for line in lines if line.startswith("I net: down: wlan link lost")]) == 1
    # 4 s without the AP: a handful of attempts with growing pauses, a warning for the 2nd, 4th...
    # failure in a row only (the loss after a short time up, logged as such, counts as the 1st)
    assert 3 <= out["connects"] <= 9, out
    warns = [line for line in lines if line.startswith("W net: wlan not up:")]
    assert 1 <= len(warns) <= 3 and len(lines) == len(warns) + 3, lines
    assert "(2 in a row)" in warns[0], warns
    assert any("no ap found within 400 ms" in w for w in warns), warns


def test_lan_on_the_olimex_poe_board(tmp_path):
    out = run_net(tmp_path, "olimex-esp32-poe", """
async def main():
    asyncio.create_task(LINK.run())
    await asyncio.sleep_ms(0)
    t0 = clock.io_ms()
    ok = await watch(LINK, 2000, LINK.up)
    up_at = clock.io_ms() - t0
    rep = {}
    LINK.report(rep)
    network.plug(False)  # cable pulled
    await watch(LINK, 1500, lambda: LINK.state != "up")
    pulled = LINK.state
    network.plug(True)
    back = await watch(LINK, 3000, LINK.up)
    try:
        network.LAN(mdc=machine.Pin(23), mdio=machine.Pin(18), phy_type=network.PHY_LAN8720, phy_addr=0,
                    clock_mode=1)  # the pre-1.20 name: the port rejects it
        rejected = None
    except TypeError as e:
        rejected = str(e)
    emit({"ok": ok, "back": back, "kind": LINK.kind, "report": rep, "pulled": pulled, "up_at": up_at,
          "lan": [c for c in network.calls if c[0] == "LAN"], "trace": trace, "lines": lines(), "rejected": rejected})
asyncio.run(main())
""")
    assert out["ok"] and out["back"] and out["kind"] == "lan"
    assert out["report"] == {"link": "up", "ip": "10.0.0.42"}  # no RSSI on a cable
    (_, args), = out["lan"]
    # the documented ESP32 call for this board (docs.micropython.org, esp32 quickref "LAN")
    assert args == {"mdc": 23, "mdio": 18, "power": 12, "phy_type": 1, "phy_addr": 0, "ref_clk": 17,
                    "ref_clk_mode": 3}, args
    assert out["up_at"] >= 100  # the PHY link came first, the address (DHCP) JOIN_MS later
    assert out["pulled"] != "up" and "unexpected keyword argument 'clock_mode'" in out["rejected"]
    assert out["lines"][0] == "I net: up: lan 10.0.0.42" and out["lines"][-1] == "I net: up: lan 10.0.0.42"


@pytest.mark.parametrize("board,net,kind,error", [
    ("olimex-esp32-poe", {"iface": "wlan"}, "wlan", None),
    ("esp32-devkitc", {"iface": "lan"}, None, "E net: no network interface: board esp32-devkitc has no Ethernet: "
                                              "set net.iface to wlan or auto"),
    ("esp32-devkitc", {"wifi": {"ssid": None, "password": None}}, "wlan",
     "E net: WLAN without an SSID (net.wifi.ssid): the charger stays offline"),
])
def test_interface_choice_and_a_link_that_cannot_come_up(tmp_path, board, net, kind, error):
    network = {**NET, **net}
    out = run_net(tmp_path, board, """
network.aps["shop"] = ["correct horse", -40]
async def main():
    asyncio.create_task(LINK.run())
    await watch(LINK, 1500, LINK.up)
    emit({"kind": LINK.kind, "state": LINK.state, "lines": lines()})
asyncio.run(main())
""", network)
    assert out["kind"] == kind
    if error is None:
        assert out["state"] == "up"
    else:  # one line, no retry loop: the link stays down
        assert out["state"] == "down" and out["lines"] == [error], out


def test_flash_tool_checks_the_interface_against_the_board(tmp_path, capsys):
    from tools import flash
    from tools.flashkit import checks

    wifi = {"net": {"wifi": {"ssid": "workshop", "password": "correct horse"}}}
    assert checks.validate(wifi, "esp32-devkitc")["net"]["wifi"]["ssid"] == "workshop"
    assert checks.validate({"net": {"iface": "lan"}}, "olimex-esp32-poe")["net"]["iface"] == "lan"
    with pytest.raises(checks.ConfigProblem, match=r"^net\.iface: board esp32-devkitc has no Ethernet"):
        checks.validate({"net": {"iface": "lan"}}, "esp32-devkitc")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"net": {"wifi": {"ssid": "workshop", "password": "short"}}}))
    assert flash.main(["config", "validate", str(bad), "--board", "esp32-devkitc"]) == 2
    assert "net.wifi.password" in capsys.readouterr().out
