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


async def _config_error_loop(exc, watchdog, root):
    reporting = _fault_state("config: %s" % exc, *_reporting(root))
    while True:
        log.error("boot", "CONFIG ERROR %s; charging disabled until config.json is fixed" % exc)
        await clock.sleep_ms(_CONFIG_RETRY_MS)  # no watchdog is armed before the supervisor runs
        config = _config()
        try:
            config.load(board.config_path())
        except (config.ConfigError, OSError):
            continue
        log.info("boot", "config is valid now; restarting")
        if reporting:
            from app import fault

            await fault.stop(reporting)
        return


def _fault_state(reason, cfg, dev, root):
    # the LED and the report (app/fault.py); if even that fails (out of memory), the console
    # line goes on all the same
    try:
        from app import fault

        return fault.start(reason, cfg, dev, root)
    except Exception as exc:
        log.exception("fault", exc)
        return []


def _reporting(root):
    # A config that does not validate is reported over the uplink only when the parts the report
    # uses (device_id, net, uplink) validate on their own: then it connects exactly as a valid
    # config would (same broker, credentials, CA). Otherwise: console, log and LED only.
    import json

    config = _config()
    try:
        with open(board.config_path()) as f:
            raw = json.load(f)
        cfg = config.validate({k: raw[k] for k in ("device_id", "net", "uplink") if k in raw and k in config.DEFAULTS})
        return cfg, device_id(cfg), root
    except Exception:  # not JSON, not an object, or those parts are wrong too
        return None, None, root


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
        await _config_error_loop(exc, watchdog, root)
        return None
    config = None
    _forget_config()
    try:
        from app import charger  # the composition root: imported only with a valid config

        await charger.run(cfg, device_id(cfg), watchdog, root)
    except Exception as exc:  # the key, the tariff, the CA, a board part: wait, never reboot-loop
        return exc, cfg
    return None


async def _fault_loop(exc, cfg, root, armed):
    """A charger that cannot be built: relay open, the fault LED blinking, the reason on the console
    and in the log every minute, and to the backend when the config names a broker (app/fault.py);
    no reboot (it would only fail the same way)."""
    _safe_outputs()
    log.exception("boot", exc)
    reason = "%s: %s" % (type(exc).__name__, exc)
    try:
        dev = device_id(cfg)
    except Exception:  # the board's id may be what failed: no report then, the console still says why
        cfg = dev = None
    _fault_state(reason, cfg, dev, root)
    while True:
        log.error("boot", "FAULT %s; charging disabled until fixed" % reason)
        for _ in range(_FAULT_REPEAT_MS // 1000):
            for w in armed:  # armed only if the supervisor's loop had started: keep it from resetting
                w.feed()
            await clock.sleep_ms(1000)


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
            failed = asyncio.run(_run(watchdog, root))
            if failed is not None:
                import gc

                asyncio.new_event_loop()  # drops every task the failed charger had started: none runs on
                gc.collect()
                asyncio.run(_fault_loop(failed[0], failed[1], root, armed))
    except KeyboardInterrupt:
        log.info("boot", "stopped")
    finally:
        _safe_outputs()
        log.flush()  # warnings still batched in RAM go to flash
        for w in armed:
            if hasattr(w, "stop"):
                w.stop()
