# The composition root: builds the charger from config and runs its tasks under the
# supervisor. Each part (meter, reader, sessions, journal, uplink) is wired in here.
try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from app import log
from app.supervisor import Supervisor
from app.version import FW_VERSION
from hal import clock

_STATUS_MS = 10000


async def run(cfg, dev, watchdog):
    sup = Supervisor(watchdog)

    async def status():
        while True:
            epoch, quality = clock.now()
            log.info("status", "dev=%s fw=%s t=%d%s lag_max=%dms" % (dev, FW_VERSION, epoch, quality, sup.max_lag_ms))
            sup.progress("status")
            await clock.sleep_ms(_STATUS_MS)

    sup.spawn("status", status, stall_ms=3 * _STATUS_MS)
    log.info("charger", "ready: %s" % dev)
    await sup.run()
