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
        for _ in range(_CONFIG_RETRY_MS // 250):
            if watchdog is not None:
                watchdog.feed()
            await clock.sleep_ms(250)
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
    from app import charger  # the composition root: imported only with a valid config

    await charger.run(cfg, device_id(cfg), watchdog, root)


def _maintenance():
    return hasattr(board, "maintenance_mode") and board.maintenance_mode()


def main():
    _safe_outputs()
    root = board.mount_flash()
    log.attach(root + "/log.txt")
    log.info("boot", "firmware %s on board %s, flash at %s" % (FW_VERSION, board.NAME, root))
    watchdog = None
    if _maintenance():
        log.warn("boot", "maintenance mode: no watchdog")
    else:
        config = _config()
        try:
            timeout_ms = config.load(board.config_path())["watchdog_ms"]
        except config.ConfigError:
            timeout_ms = config.DEFAULTS["watchdog_ms"]
        config = None
        watchdog = board.Watchdog(timeout_ms)
    try:
        while True:  # returns only when a broken config was fixed: start over with it
            asyncio.run(_run(watchdog, root))
    except KeyboardInterrupt:
        log.info("boot", "stopped")
    finally:
        _safe_outputs()
        if watchdog is not None and hasattr(watchdog, "stop"):
            watchdog.stop()
