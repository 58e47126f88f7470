"""The panel's drawing policy (firmware/display/panel.py under MicroPython): a frame only when
something shown changed, at most one a second while charging; refusals and the final screen
go back to idle by themselves. Times are the panel's `now` arguments, not waits."""
from __future__ import annotations

import json

from host_tests.display.conftest import TARIFF, run_mp

POLICY = """
import json
import display_rig
from hal import clock

class Bus:  # a display bus that takes every write
    def writeto(self, addr, buf, stop=True):
        return len(buf)

p, ctl, tset = display_rig.panel("ssd1306", Bus(), json.loads(TARIFF))
t = clock.monotonic_ms()
out = {}
out["first"] = p.refresh(t)
out["same"] = p.refresh(t + 250)
ctl.state = "charging"
ctl.session = display_rig.Session(tset.tariffs["std"], t)
ctl.st = {"state": "charging", "wh": 0, "cost": 60}
out["charging"] = p.refresh(t + 300)
ctl.st = {"state": "charging", "wh": 5, "cost": 61}
out["within_a_second"] = p.refresh(t + 900)
out["after_a_second"] = p.refresh(t + 1300)
out["nothing_new"] = p.refresh(t + 1310)
ctl.state = "idle"
ctl.session = None
ctl.st = {"state": "idle"}
p.finished(7, {"cost": {"currency": "EUR", "incl": 61, "excl": 51, "lines": []}, "start": {"wh": 0}, "stop": {"wh": 5}})
out["final"] = p.refresh(t + 1320)
out["final_link"] = p.shown[1]
out["final_later"] = p.screen(clock.monotonic_ms() + 119000)[1]
out["final_gone"] = p.screen(clock.monotonic_ms() + 121000)[0][0]
p.event("refused", {"token": "ab", "reason": "journal-full"})
out["refused"] = p.screen(clock.monotonic_ms())[0][2]
out["refused_gone"] = p.screen(clock.monotonic_ms() + 7000)[0][0]
out["frames"] = p.frames_drawn
emit(out)
"""


def test_frames_only_on_change_and_at_most_one_a_second_while_charging():
    out = run_mp(f"TARIFF = {json.dumps(json.dumps(TARIFF))}\n" + POLICY).value
    assert out["first"] is True and out["same"] is False
    assert out["charging"] is True
    assert out["within_a_second"] is False and out["after_a_second"] is True and out["nothing_new"] is False
    assert out["final"] is True and out["final_link"] == "https://receipts.example/r/chg-1/7"
    assert out["final_later"] == out["final_link"]  # still up just before final_s
    assert out["final_gone"] == "Price incl. VAT"  # idle again after final_s
    assert out["refused"] == "Storage full" and out["refused_gone"] == "Price incl. VAT"
    assert out["frames"] == 4
