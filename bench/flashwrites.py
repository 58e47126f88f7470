"""Flash wear: block writes per device hour of an idle and of a charging charger (issue #17)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.common import Row
from evc.tariff import compile_doc
from sim.charger import Charger, authlist_doc, flat_tariff, token
from sim.flashfs import run_on_flash

TITLE = "Flash writes: LittleFS block writes per device hour, idle and charging (goal: under 10 idle)"

CARD = bytes.fromhex("04a1b2c3d4e5f6")
SPEED = 60  # device seconds per real second: a device hour in a minute
HOUR_S = 3600
# Device-time settings as a charger in the field has them (status line every 10 s, journal
# checkpoint every 60 s: the firmware's defaults); the meter is polled every 250 ms of real time
# (as in sim/world.py) so the pymodbus peer keeps up; polls do not write flash.
CONFIG = {
    "meter": {"poll_ms": 250 * SPEED, "max_age_ms": 2000 * SPEED, "max_power_w": 25000},
    "session": {"meter_fault_s": 3 * SPEED},
    "journal": {"checkpoint_s": 60},
}
STATUS_MS = 10000  # the host board's default (device ms)
SETTLE_S = 20 * 60  # device seconds after boot before the idle hour (app/log.py writes a batch within 15 min)


def _counts(stats: Path) -> tuple[int, int]:
    for _ in range(50):  # rewritten in place by the device: retry a torn read
        parts = stats.read_text().split()
        if len(parts) == 2:
            return int(parts[0]), int(parts[1])
        time.sleep(0.01)
    raise RuntimeError(f"unreadable {stats}")


def _device_hour(c: Charger, stats: Path) -> tuple[float, float]:
    """(writes, erases) per device hour over one device hour from now."""
    w0, e0 = _counts(stats)
    t0 = time.monotonic()
    time.sleep(HOUR_S / SPEED)
    w1, e1 = _counts(stats)
    hours = (time.monotonic() - t0) * SPEED / HOUR_S
    assert c.dev is not None and c.dev.alive(), "the device died during the measurement"
    return (w1 - w0) / hours, (e1 - e0) / hours


def measure() -> dict:
    with tempfile.TemporaryDirectory() as tmp, Charger(Path(tmp) / "dev", "flashwrites", config=CONFIG,
                                                      speed=SPEED, power_w=11000) as c:
        stats = Path(tmp) / "flash.stats"
        c.env["EVC_FLASH_STATS"] = str(stats)
        c.env["EVC_STATUS_MS"] = str(STATUS_MS)
        c.seed(tariff=compile_doc(flat_tariff(), ver=1),
               authlist=[authlist_doc([{"token": token(CARD), "status": "accepted"}])])
        c.boot()
        time.sleep(SETTLE_S / SPEED)  # the boot's writes (journal recovery, the boot warnings' batch) are not idle
        boot = _counts(stats)
        idle = _device_hour(c, stats)
        c.tap(CARD, r"session: started ")
        charging = _device_hour(c, stats)
        c.tap(CARD, r"session: record 1: card ")
        c.stop()
        out = c.output()
        log = run_on_flash(c.root, """
text = ""
for name in (ROOT + "/log.txt.1", ROOT + "/log.txt"):
    try:
        with open(name) as f:
            text += f.read()
    except OSError:
        pass
emit([len(text), text.count("\\n")])
""").value
    return {"boot": boot, "idle": idle, "charging": charging, "log_bytes": log[0], "log_lines": log[1],
            "console_lines": out.count("\n") + 1}


def run() -> list[Row]:
    m = measure()
    setup = f"speed {SPEED}x, status line every {STATUS_MS // 1000} s, journal checkpoint every 60 s"
    return [
        Row("flash writes", f"boot: block writes in the first {SETTLE_S // 60} device minutes", m["boot"][0], "writes",
            f"{m['boot'][1]} erases; the image was seeded (tariff, authorization list) before"),
        Row("flash writes", "idle: block writes per device hour", m["idle"][0], "writes/h",
            f"program operations on the LittleFS image; {m['idle'][1]:.0f} erases/h; {setup}"),
        Row("flash writes", "charging: block writes per device hour", m["charging"][0], "writes/h",
            f"{m['charging'][1]:.0f} erases/h; one session at 11 kW, journal checkpoints included"),
        Row("flash writes", "log on flash after the two hours (log.txt + log.txt.1)", m["log_lines"], "lines",
            f"{m['log_bytes']:,} bytes; {m['console_lines']:,} console lines in the same run"),
    ]
