"""A simulated EV behind a simulated energy meter, for charger tests.

While the charger's relay pin file reads "1" and the EV is plugged in, a thread raises the
MeterPeer's energy register at the EV's power over real time (times the device's clock speed,
so the energy a device-time interval shows is what that power gives in it) and sets the power
register; otherwise power reads 0 and energy stands still.

    with MeterPeer() as meter:
        ev = EV(meter, device_root, speed=10, power_w=22000, plug_pin="plug")
        with ev:
            ...
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from sim.meter_peer import MeterPeer

# sdm630 register map (firmware/meter/models.py): energy kWh f32, power W f32, serial u32
ENERGY = (4, 0x0048, "f32", "kWh")
POWER = (4, 0x0034, "f32", "W")
SERIAL = (3, 0xFC00, "u32", None)
_TICK_S = 0.02
_SILENT = 10000  # unanswered requests queued: quiet for the rest of any test, until speak()


class EV:
    def __init__(self, meter: MeterPeer, root: Path, power_w: int = 11000, start_wh: int = 1_000_000,
                 speed: int = 1, relay_pin: str = "relay", plug_pin: str | None = None, serial: int = 21000042):
        self.meter = meter
        self.root = Path(root)
        self.relay_pin = relay_pin
        self.plug_pin = plug_pin
        self.speed = speed
        self._lock = threading.Lock()
        self._power_w = power_w
        self._wh = float(start_wh)  # exact energy; the register shows its whole Wh
        self._plugged = True
        self.charging = False  # relay closed and plugged: power flows
        self.silent = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        meter.set(SERIAL, serial)
        self._write(0)
        if plug_pin:
            self._set_plug_pin(1)

    # -- controls ----------------------------------------------------------------------

    @property
    def energy_wh(self) -> int:
        """The energy register in whole Wh, as the meter shows it now."""
        with self._lock:
            return int(self._wh)

    def set_power(self, w: int) -> None:
        with self._lock:
            self._power_w = w

    def plug(self) -> None:
        with self._lock:
            self._plugged = True
        if self.plug_pin:
            self._set_plug_pin(1)

    def unplug(self) -> None:
        with self._lock:
            self._plugged = False
        if self.plug_pin:
            self._set_plug_pin(0)

    def silence(self) -> None:
        """The meter stops answering (every request unanswered) until speak()."""
        self.silent = True
        self.meter.fault("silence", count=_SILENT)

    def speak(self) -> None:
        self.silent = False
        with self.meter._lock:  # the peer's own fault queue: drop the queued silences
            self.meter._faults.clear()

    def relay_closed(self) -> bool:
        try:
            return (self.root / "pins" / self.relay_pin).read_text()[:1] == "1"
        except OSError:
            return False

    # -- the simulation ----------------------------------------------------------------

    def _set_plug_pin(self, v: int) -> None:
        (self.root / "pins").mkdir(parents=True, exist_ok=True)
        tmp = self.root / "pins" / (self.plug_pin + ".tmp")
        tmp.write_text("1" if v else "0")
        tmp.replace(self.root / "pins" / self.plug_pin)  # never a half-written pin file

    def _write(self, power_w: int) -> None:
        self.meter.set(ENERGY, int(self._wh) / 1000)
        self.meter.set(POWER, float(power_w))

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(_TICK_S):
            now = time.monotonic()
            dt, last = now - last, now
            flowing = self.relay_closed()
            with self._lock:
                flowing = flowing and self._plugged
                power = self._power_w if flowing else 0
                self._wh += power * dt * self.speed / 3600
                self.charging = flowing
                self._write(power)

    def start(self) -> "EV":
        self._thread = threading.Thread(target=self._run, name="ev", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)

    def __enter__(self) -> "EV":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
