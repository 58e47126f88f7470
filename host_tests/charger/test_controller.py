"""The session controller directly under MicroPython (real journal on LittleFS, real pricing,
real key and authorization list; a meter stand-in that hands over readings): a close that fails
half-way (here: the heap cannot hold the record while it is signed) is retried at the next tick
and bills the stop point fixed the first time, exactly once. The card reaches the list as on a
charger: a signed document through the uplink's Downlink (sim/flashfs.py DOWNLINK_MP)."""
import json

from cryptography.hazmat.primitives.asymmetric import ec

from evc.verify import verify_record
from sim.charger import DEV, token
from sim.flashfs import DOWNLINK_MP, public_hex, sign_authlist, write_messages
from sim import mpy

ALICE = bytes.fromhex("04a1b2c3d4e5f6")

SCRIPT = """
import asyncio, json
import board
from app.config import validate
from app.session import Controller
from billing.authcache import AuthCache
from billing.authorize import Authorizer
from billing.prepaid import Ledger
from crypto import keys
from hal import clock
from journal.journal import Journal
from meter.meter import Reading
import app.charger as charger

root = board.mount_flash()
# no tariff pushed yet: a zero tariff named explicitly as the fallback (without one, no session starts)
FREE = {"v": 1, "ver": 0, "tz": "UTC0", "default": "none", "contracts": {},
        "tariffs": {"none": {"id": "none", "currency": "EUR", "minor": 2, "elements": [{"c": [["FLAT", 0, None, 1]]}]}}}
cfg = validate({"session": {"min_energy_wh": 1}, "fallback_tariff": FREE})
TOKEN = %r


class FlakyKey(keys.Key):
    fail = 1

    def write_jws(self, w, payload, kid):  # the charger seals through this (billing/record.py)
        if self.fail:
            self.fail -= 1
            raise MemoryError("memory allocation failed (injected)")
        return super().write_jws(w, payload, kid)


class MeterStandIn:
    last = None

    def fresh(self, max_age_ms=None):
        return self.last

    def read(self, wh, w):
        self.last = Reading(clock.monotonic_ms(), wh, w, "42", "sdm630", 0)
        return self.last


base = keys.load_or_create(root + "/device.key")
key = FlakyKey(base._priv)
up, al = device_uplink(json.loads(CONFIG), root)
assert [up.downlink.handle("authlist", m) for m in messages(MSGS)] == [True], events(up)
auth = Authorizer(al, AuthCache(root + "/auth/cache.bin", 8), Ledger(root + "/auth/spent.bin"), cfg["auth"])
journal = Journal(root + "/journal")
journal.recover()
meter = MeterStandIn()
tariffs = charger.Tariffs(root + "/tariff.json", cfg)
relay = board.pin("relay", 0)
ctl = Controller(%r, cfg, meter, auth, tariffs, journal, key, relay)


async def main():
    ctl.on_reading(meter.read(500000, 0))
    await ctl.on_tap(TOKEN)
    out = {"started": ctl.state, "relay_on": relay.value()}
    await clock.sleep_ms(1100)
    ctl.on_reading(meter.read(500100, 11000))
    try:
        await ctl.stop("card")
        out["first"] = "closed"
    except MemoryError as e:
        out["first"] = str(e)
    out["after_fail"] = [ctl.state, relay.value(), journal.next_seq()]
    ctl.on_reading(meter.read(500180, 11000))  # after the stop point: must not count
    await ctl.tick()  # retries the close
    out["after_tick"] = [ctl.state, relay.value(), journal.next_seq()]
    out["records"] = [s.decode() for _, s in journal.pending()]
    with open(root + "/device.key.pub", "rb") as f:
        out["pub"] = f.read().hex()
    emit(out)

asyncio.run(main())
"""


def test_failed_close_is_retried_and_bills_the_first_stop_point(tmp_path):
    backend = ec.generate_private_key(ec.SECP256R1())
    msgs = write_messages(tmp_path / "authlist.txt", sign_authlist(backend, [
        {"ver": 1, "full": True, "entries": [{"token": token(ALICE), "status": "accepted"}]}]))
    config = {"device_id": DEV, "backend_key": public_hex(backend)}
    head = DOWNLINK_MP + f"CONFIG = {json.dumps(config)!r}\nMSGS = {str(msgs)!r}\n"
    out = mpy.run(head + SCRIPT % (token(ALICE), DEV), env={"EVC_ROOT": str(tmp_path)}, heap="2m").value
    assert out["started"] == "charging" and out["relay_on"] == 1
    assert "injected" in out["first"]
    assert out["after_fail"] == ["finishing", 0, 1], "relay open, no record yet"
    assert out["after_tick"] == ["idle", 0, 2]
    (jws,) = out["records"]
    rec = verify_record(jws, bytes.fromhex(out["pub"]), kid=DEV)
    f = rec.fields
    assert f["seq"] == 1 and f["stop"]["reason"] == "card"
    assert (f["start"]["wh"], f["stop"]["wh"], f["energy_wh"]) == (500000, 500100, 100)
