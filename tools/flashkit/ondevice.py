# Helpers that tools/flash.py runs ON THE BOARD (MicroPython), sent once per session through the
# raw REPL. Every answer is one line "@@<json>" so that log output around it does not matter.
# Kept small and import-free at the top: a board without firmware must still answer _evc_info().
import gc
import json
import os
import sys


def _evc_say(obj):
    print("@@" + json.dumps(obj))


def _evc_board():
    try:
        import board

        return board
    except ImportError:
        return None


def _evc_exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _evc_statvfs(path):
    try:
        st = os.statvfs(path or "/")
        return {"total": st[0] * st[2], "free": st[0] * st[4]}
    except (OSError, AttributeError):
        return None


def _evc_info():
    board = _evc_board()
    impl = sys.implementation
    info = {
        "impl": impl.name,
        "version": list(impl.version[:3]),
        "mpy": getattr(impl, "_mpy", 0),
        "platform": sys.platform,
        "path": list(sys.path),
        "board": getattr(board, "NAME", None) if board else None,
        "config_path": board.config_path() if board else None,
        "watchdog": bool(board and hasattr(board, "watchdog_armed") and board.watchdog_armed()),
        "maintenance_flag": getattr(board, "MAINTENANCE_FLAG", None) if board else None,
        "flash": _evc_statvfs("/"),
        "heap": gc.mem_free() + gc.mem_alloc(),  # PSRAM boards: megabytes; an ESP32-WROOM-32: ~100 KiB
    }
    if info["maintenance_flag"]:
        info["maintenance"] = _evc_exists(info["maintenance_flag"])
    try:
        from app.version import FW_VERSION

        info["fw"] = FW_VERSION
    except ImportError:
        info["fw"] = None
    _evc_say(info)


def _evc_sizes(paths):
    out = {}
    for p in paths:
        try:
            out[p] = os.stat(p)[6]
        except OSError:
            out[p] = -1
    _evc_say(out)


def _evc_makedirs(dirs):
    for d in dirs:
        cur = ""
        for part in d.strip("/").split("/"):
            cur += "/" + part
            if not _evc_exists(cur):
                os.mkdir(cur)
    _evc_say(True)


def _evc_replace(tmp, path):
    try:
        os.rename(tmp, path)
    except OSError:  # filesystems that refuse to rename over a file
        os.remove(path)
        os.rename(tmp, path)


def _evc_put(tmp, data, path):
    with open(tmp, "wb") as f:
        f.write(data)
    _evc_replace(tmp, path)


def _evc_remove(paths):
    gone = []
    for p in paths:
        try:
            os.remove(p)
            gone.append(p)
        except OSError:
            pass
    _evc_say(gone)


def _evc_has_module(name):
    try:
        __import__(name)
        _evc_say(True)
    except ImportError:
        _evc_say(False)


# ---- the frozen image: modules frozen into MicroPython (boards/esp32/manifest.py) import through
# the virtual sys.path entry ".frozen" and have no file on the filesystem. The filesystem entry
# "" comes first on sys.path, so a file or folder of the same name there shadows them.
def _evc_frozen_entries():
    # ".frozen" on a board; the board emulator mounts its stand-in image at "/.frozen-image"
    return [p for p in sys.path if p.lstrip("/").startswith(".frozen")]


def _evc_in_image(fn):
    # fn() with only the image on sys.path; sys.path and sys.modules are left as they were
    path = list(sys.path)
    image = _evc_frozen_entries()
    mods = dict(sys.modules)
    try:
        sys.path.clear()
        sys.path.extend(image)
        return fn()
    finally:
        sys.path.clear()
        sys.path.extend(path)
        for k in list(sys.modules):
            if k not in mods:
                del sys.modules[k]
        sys.modules.update(mods)
        gc.collect()


def _evc_image_has(name):
    top = name.split(".")[0]
    for k in list(sys.modules):  # a copy loaded from the filesystem would answer for the image
        if k == top or k.startswith(top + "."):
            del sys.modules[k]
    try:
        __import__(name)
    except ImportError:
        return False
    except MemoryError:
        raise
    except Exception:  # there, but its top-level code failed here: it is frozen all the same
        pass
    return True


def _evc_image_fw():
    try:
        _evc_image_has("app.version")
        return sys.modules["app.version"].FW_VERSION
    except (KeyError, AttributeError):
        return None


def _evc_running_from():
    # where the firmware the charger imports comes from: the image, or files shadowing it
    try:
        import app
    except ImportError:
        return None
    where = getattr(app, "__path__", "")
    for entry in _evc_frozen_entries():
        if where.startswith(entry + "/"):
            return "frozen"
    return "filesystem"


def _evc_image_info(names):
    frozen = _evc_in_image(lambda: [n for n in names if _evc_image_has(n)])
    return {"frozen": frozen, "fw": _evc_in_image(_evc_image_fw) if "app" in frozen else None,
            "running": _evc_running_from()}


def _evc_image(names):
    _evc_say(_evc_image_info(names))


def _evc_shadows(names):
    # files and folders in / that shadow these frozen modules: NAME.py, NAME.mpy, NAME/...
    files, dirs = [], []

    def walk(d):
        for entry in os.ilistdir(d):
            p = d + "/" + entry[0]
            if entry[1] == 0x4000:
                walk(p)
                dirs.append(p)  # after its contents: removable in this order
            else:
                files.append(p)

    for name in names:
        for ext in (".py", ".mpy"):
            if _evc_exists("/" + name + ext):
                files.append("/" + name + ext)
        try:
            if os.stat("/" + name)[0] & 0x4000:
                walk("/" + name)
                dirs.append("/" + name)
        except OSError:
            pass
    _evc_say({"files": files, "dirs": dirs})


def _evc_rmdirs(dirs):
    gone = []
    for d in dirs:
        try:
            os.rmdir(d)
            gone.append(d)
        except OSError:
            pass
    _evc_say(gone)


def _evc_read_text(path):
    try:
        with open(path) as f:
            _evc_say(f.read())
    except OSError:
        _evc_say(None)


def _evc_root():
    board = _evc_board()
    return board.mount_flash() if board else ""


def _evc_log_lines(limit):
    root = _evc_root()
    lines = []
    for name in (root + "/log.txt.1", root + "/log.txt"):
        try:
            with open(name) as f:
                for line in f:
                    lines.append(line.rstrip("\n"))
                    if len(lines) > limit:
                        lines.pop(0)
        except OSError:
            pass
    return lines


def _evc_logs(limit):
    # Flash holds warnings and errors only; the running firmware's RAM ring (when the REPL
    # interrupted it) has every recent line: both, the ring last, newest at the end.
    lines = _evc_log_lines(limit)
    log = sys.modules.get("app.log")
    if log is not None and hasattr(log, "recent"):
        log.flush()
        lines = _evc_log_lines(limit)
        ring = log.recent(limit)
        lines = [line for line in lines if line not in ring] + ring
    _evc_say(lines[-limit:])


def _evc_errors():
    # The running firmware's in-RAM list when the REPL interrupted it, else the log file.
    log = sys.modules.get("app.log")
    if log is not None and log.last_errors():
        return log.last_errors()
    return [line for line in _evc_log_lines(200) if " E " in line or " W " in line][-8:]


def _evc_keygen(path):
    from crypto import keys

    key = keys.load_or_create(path)
    _evc_say({"spki": key.public_hex(), "pem": key.public_pem()})


def _evc_config_path():
    # The board layer may just have been replaced: import it afresh.
    sys.modules.pop("board", None)
    board = _evc_board()
    _evc_say(board.config_path() if board else None)


def _evc_data_root():
    _evc_say(_evc_root())


def _evc_device_id(cfg):
    if cfg.get("device_id"):
        return cfg["device_id"]
    board = _evc_board()
    if board is None:
        return None
    import binascii

    return "evc-" + binascii.hexlify(board.unique_id()).decode()


def _evc_status():
    board = _evc_board()
    st = {"board": getattr(board, "NAME", None) if board else None}
    try:
        from app.version import FW_VERSION

        st["fw"] = FW_VERSION
    except ImportError:
        st["fw"] = None
    st["micropython"] = ".".join(str(v) for v in sys.implementation.version[:3])
    gc.collect()
    st["heap_free"] = gc.mem_free()
    st["heap_used"] = gc.mem_alloc()
    root = _evc_root() if board else ""
    st["data_root"] = root
    st["flash"] = _evc_statvfs("/")
    st["data"] = _evc_statvfs(root) if root else None
    cfg = {}
    if board:
        try:
            with open(board.config_path()) as f:
                cfg = json.load(f)
        except (OSError, ValueError):
            cfg = {}
    st["device_id"] = _evc_device_id(cfg) if isinstance(cfg, dict) else None
    st["key"] = _evc_exists(root + "/device.key") if board else False
    st["errors"] = _evc_errors() if board else []
    if board and getattr(board, "MAINTENANCE_FLAG", None):
        st["maintenance"] = _evc_exists(board.MAINTENANCE_FLAG)
    st["journal"] = _evc_journal_summary(root, cfg) if board else None
    st["image"] = _evc_image_info(["app"])
    _evc_say(st)


# ---- journal (firmware/journal/journal.py; the charger keeps it in <data root>/journal)
_evc_j = None


def _evc_journal_open(root, cfg):
    global _evc_j
    if _evc_j is None:
        from journal.journal import Journal

        conf = cfg.get("journal") if isinstance(cfg, dict) else None
        max_bytes = (conf or {}).get("max_bytes", 512 * 1024)
        _evc_j = Journal(root + "/journal", max_bytes=max_bytes, segment_bytes=min(32 * 1024, max_bytes // 2))
        _evc_j.recover()
    return _evc_j


def _evc_journal_summary(root, cfg):
    try:
        import journal.journal  # noqa: F401
    except ImportError:
        return None
    if not _evc_exists(root + "/journal"):
        return {"bytes": 0, "max": None, "unacked": 0, "acked_seq": 0, "last_seq": 0, "first_unacked": None}
    j = _evc_journal_open(root, cfg)
    used, most, pending = j.usage()
    return {"bytes": used, "max": most, "unacked": pending, "acked_seq": j.acked_seq(),
            "last_seq": j.next_seq() - 1, "first_unacked": j.acked_seq() + 1 if pending else None}


def _evc_config():
    board = _evc_board()
    from app import config

    return config.load(board.config_path())


def _evc_journal_pending():
    try:
        import journal.journal  # noqa: F401
    except ImportError:
        _evc_say(None)
        return
    _evc_board()  # makes sure the board module loads before reading its paths
    root = _evc_root()
    cfg = _evc_config()
    seqs = []
    if _evc_exists(root + "/journal"):
        j = _evc_journal_open(root, cfg)
        for seq, _rec in j.pending(on_flash=True):  # CRCs checked on flash, nothing decoded
            seqs.append(seq)
    pub = None
    try:
        with open(root + "/device.key.pub", "rb") as f:
            import binascii

            pub = binascii.hexlify(f.read()).decode()
    except OSError:
        pass
    _evc_say({"dev": _evc_device_id(cfg), "public_key": pub, "records": seqs})


def _evc_journal_record(seq):
    j = _evc_journal_open(_evc_root(), _evc_config())
    for got, signed in j.pending(after_seq=seq - 1, limit=1):
        if got == seq:
            _evc_say(bytes(signed).decode())
            return
    raise ValueError("record %d is no longer in the journal (acknowledged meanwhile?)" % seq)


# ---- probes: the firmware's own drivers, with the board's config
def _evc_meter_probe(timeout_ms):
    import asyncio

    from hal.stream import open_stream
    from meter import models
    from meter.meter import Meter
    from meter.modbus import ModbusMaster

    m = _evc_config()["meter"]
    if not m["url"]:
        _evc_say({"error": "meter.url is not set: flash.py config set meter.url=..."})
        return
    board = _evc_board()
    de = None
    if not m["url"].startswith("tcp://") and hasattr(board, "gpio_of") and board.gpio_of("rs485_de") is not None:
        de = board.pin("rs485_de", 0)
    stream = open_stream(m["url"], m["baud"], 8, m["parity"], m["stop"])

    async def once():
        meter = Meter(ModbusMaster(stream, timeout_ms=m["timeout_ms"], retries=m["retries"], de=de),
                      models.get(m["model"]), unit=m["unit"], max_power_w=m["max_power_w"])
        r = await asyncio.wait_for(meter.poll(), timeout_ms // 1000 or 1)
        return {"energy_wh": r.energy_wh, "power_w": r.power_w, "serial": r.serial, "model": r.model,
                "url": m["url"], "unit": m["unit"]}

    try:
        _evc_say(asyncio.run(once()))
    except Exception as exc:
        _evc_say({"error": "%s: %s" % (type(exc).__name__, exc), "url": m["url"], "unit": m["unit"]})
    finally:
        stream.close()


def _evc_nfc_probe(timeout_ms):
    import asyncio

    from nfc.probe import probe

    cfg = _evc_config()
    n = cfg["nfc"]
    if not n["url"]:
        _evc_say({"error": "nfc.url is not set: flash.py config set nfc.url=..."})
        return
    try:
        # The token only: raw UIDs never leave the reader driver.
        _evc_say(asyncio.run(probe(n["reader"], n["url"], cfg["site_secret"], timeout_ms, False, n.get("bus"))))
    except Exception as exc:
        _evc_say({"error": "%s: %s" % (type(exc).__name__, exc), "url": n["url"]})
