# Boot: mount storage, load and validate config, build the application and run it under
# the supervisor. A bad config never crash-loops the board: it is reported and the board
# waits, relay open, re-reading the config until a technician fixes it.
try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

import sys

import board

from app import log
from app.version import FW_VERSION
from hal import clock

_CONFIG_RETRY_MS = 5000
_FAULT_REPEAT_MS = 60000


def _config():
    # The schema and its checks take ~7 KB of RAM: imported to validate, forgotten after (frozen,
    # a later import is cheap). Nothing else in the firmware imports app.config.
    from app import config

    return config


def _forget_config():
    sys.modules.pop("app.config", None)
    import app

    if hasattr(app, "config"):
        delattr(app, "config")


def _safe_outputs():
    # The relay stays open until the application has decided (journal recovery first).
    relay = getattr(board, "relay_pin", None)
    if relay is not None:
        relay().off()


async def _config_error_loop(exc, watchdog):
    while True:
        log.error("boot", "CONFIG ERROR %s; charging disabled until config.json is fixed" % exc)
        await clock.sleep_ms(_CONFIG_RETRY_MS)  # no watchdog is armed before the supervisor runs
        config = _config()
        try:
            config.load(board.config_path())
        except (config.ConfigError, OSError):
            continue
        log.info("boot", "config is valid now; restarting")
        return


def device_id(cfg):
    if cfg["device_id"]:
        return cfg["device_id"]
    import binascii

    return "evc-" + binascii.hexlify(board.unique_id()).decode()


async def _run(watchdog, root):
    config = _config()
    try:
        cfg = config.load(board.config_path())
    except config.ConfigError as exc:
        await _config_error_loop(exc, watchdog)
        return
    config = None
    _forget_config()
    try:
        from app import charger  # the composition root: imported only with a valid config

        await charger.run(cfg, device_id(cfg), watchdog, root)
    except Exception as exc:  # the key, the tariff, the CA, a board part: wait, never reboot-loop
        await _fault_loop(exc)


async def _fault_loop(exc):
    """A charger that cannot be built: relay open, the fault LED lit, the reason on the console and
    in the log every minute; no watchdog armed, no reboot (it would only fail the same way)."""
    _safe_outputs()
    log.exception("boot", exc)
    led = None
    try:
        led = board.pin("led_fault", 0)
    except Exception:
        pass
    reason = "%s: %s" % (type(exc).__name__, exc)
    while True:
        if led is not None:
            led.on()
        log.error("boot", "FAULT %s; charging disabled until fixed" % reason)
        await clock.sleep_ms(_FAULT_REPEAT_MS)


def _maintenance():
    return hasattr(board, "maintenance_mode") and board.maintenance_mode()


def main():
    _safe_outputs()
    root = board.mount_flash()
    log.attach(root + "/log.txt")
    log.info("boot", "firmware %s on board %s, flash at %s" % (FW_VERSION, board.NAME, root))
    watchdog = None
    armed = []
    if _maintenance():
        log.warn("boot", "maintenance mode: no watchdog")
    else:
        config = _config()
        try:
            timeout_ms = config.load(board.config_path())["watchdog_ms"]
        except config.ConfigError:
            timeout_ms = config.DEFAULTS["watchdog_ms"]
        config = None

        def watchdog():  # armed by the supervisor when its loop starts (app/supervisor.py)
            if not armed:  # once: a run after a fixed config feeds the same one
                armed.append(board.Watchdog(timeout_ms))
            return armed[0]
    try:
        while True:  # returns only when a broken config was fixed: start over with it
            asyncio.run(_run(watchdog, root))
    except KeyboardInterrupt:
        log.info("boot", "stopped")
    finally:
        _safe_outputs()
        log.flush()  # warnings still batched in RAM go to flash
        for w in armed:
            if hasattr(w, "stop"):
                w.stop()
