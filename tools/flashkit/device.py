"""One session with a board over USB serial, on mpremote's transport (raw REPL, raw-paste mode).

Every failure a technician can meet is turned into a FlashError whose message says what to do:
no device on the port, port busy, no MicroPython answering, wrong MicroPython version, flash full,
out of RAM.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Callable

import serial
import serial.tools.list_ports
from mpremote.transport import TransportError
from mpremote.transport_serial import SerialTransport

ONDEVICE = Path(__file__).with_name("ondevice.py")
MIN_VERSION = (1, 22, 0)  # machine.UART.flush, asyncio with ThreadSafeFlag, os.statvfs on every port
WRITE_CHUNK = 2048  # bytes per raw-REPL exec when copying (as a bytes repr: up to ~8 KiB of source)
READ_CHUNK = 512
_REPL_TRIES = 3  # Ctrl-C and wait for the raw REPL prompt, this many times

Progress = Callable[[int, int], None]


class FlashError(Exception):
    """A failure with a message that tells the technician what to do next."""


class FlashFull(FlashError):
    pass


def ports_seen() -> list[str]:
    return [p.device for p in serial.tools.list_ports.comports()]


def _is_url(port: str) -> bool:
    return "://" in port


def _open_problem(port: str) -> str | None:
    """Open the port the way mpremote will, to turn a failure into advice."""
    if not _is_url(port) and not os.path.exists(port):
        seen = ", ".join(ports_seen()) or "none"
        return (f"no device on {port}: plug the board in with a USB data cable (not a charge-only one), "
                f"check the port name (serial ports seen now: {seen})")
    try:
        s = serial.serial_for_url(port, do_not_open=True, baudrate=115200)
        if hasattr(s, "exclusive"):
            s.exclusive = True
        s.open()
        s.close()
    except (serial.SerialException, OSError) as exc:
        text = str(exc)
        if "lock" in text or "busy" in text.lower() or "Errno 16" in text or "Errno 11" in text:
            return (f"{port} is busy: another program holds it (mpremote, a serial monitor, screen, "
                    f"another flash.py); close it and try again ({text})")
        if "Permission denied" in text or "Errno 13" in text:
            return (f"no permission to open {port}: on Linux add yourself to the 'dialout' group "
                    f"(sudo usermod -aG dialout $USER, then log in again)")
        return f"cannot open {port}: {text}"
    return None


def _helpers() -> str:
    """ondevice.py without its comment lines: fewer bytes through the raw REPL at 115200 baud."""
    lines = ONDEVICE.read_text().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#")) + "\n"


def explain_device_error(err: str, what: str) -> FlashError:
    if "ENOSPC" in err or "Errno 28" in err:
        return FlashFull(f"the board's flash is full while {what}: free space (flash.py status shows it), "
                         f"e.g. export and acknowledge the journal, or erase and reinstall")
    if "MemoryError" in err:
        return FlashError(f"the board ran out of RAM while {what}: deploy compiled .mpy files (mpy-cross) "
                          f"or freeze the firmware into the MicroPython image (docs/flashing.md)\n{err.strip()}")
    return FlashError(f"the board reported an error while {what}:\n{err.strip()}")


class Device:
    """A raw-REPL session. Use as a context manager; `info` describes the board."""

    def __init__(self, port: str, *, exec_timeout: float = 30, min_version: tuple = MIN_VERSION):
        self.port = port
        self.exec_timeout = exec_timeout
        self.min_version = min_version
        self.info: dict[str, Any] = {}
        self.maintenance_entered = False  # we switched it to maintenance for this session
        self.resume_on_close = True  # soft-reset on close so that main.py (the charger) runs again
        self._t: SerialTransport | None = None

    # ---------------------------------------------------------------- session
    def __enter__(self) -> "Device":
        self.open()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(resume=self.resume_on_close)

    def open(self, wait_s: float = 0) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            problem = _open_problem(self.port)
            if problem is None:
                break
            if time.monotonic() >= deadline:
                raise FlashError(problem)
            time.sleep(0.25)
        try:
            # timeout: serial reads never hang on a board that stopped answering
            self._t = SerialTransport(self.port, baudrate=115200, timeout=2)
        except TransportError as exc:
            raise FlashError(f"cannot open {self.port}: {exc}") from None
        for attempt in range(_REPL_TRIES):  # a board busy in its main loop may miss the first Ctrl-C
            try:
                self._t.enter_raw_repl(soft_reset=False)
                break
            except (TransportError, OSError, serial.SerialException):
                if attempt + 1 < _REPL_TRIES:
                    time.sleep(0.5)
        else:
            self._t.close()
            self._t = None
            raise FlashError(
                f"the board on {self.port} does not answer with a MicroPython REPL. Is MicroPython installed? "
                f"Install it with: flash.py install-micropython --port {self.port} --bin FIRMWARE.bin "
                f"(or press the board's reset button and try again)"
            ) from None
        try:
            self.exec(_helpers(), what="loading the flash.py helpers")
            self.info = self.call("_evc_info()")
            self._check_version()
        except BaseException:
            # else the port stays open (and locked) in this process: every later session would find it busy
            t, self._t = self._t, None
            try:
                t.exit_raw_repl()
            except (OSError, serial.SerialException, TransportError):
                pass
            t.close()
            raise

    def _check_version(self) -> None:
        impl, version = self.info.get("impl"), tuple(self.info.get("version") or ())
        if impl != "micropython" or version < self.min_version:
            want = ".".join(map(str, self.min_version))
            have = ".".join(map(str, version))
            raise FlashError(
                f"wrong MicroPython version on {self.port}: the board runs {impl} {have}, this firmware needs "
                f"MicroPython {want} or newer. Install a current one: "
                f"flash.py install-micropython --port {self.port} --bin ESP32_GENERIC-v1.2x.bin"
            )

    def close(self, resume: bool = True) -> None:
        """Leave the raw REPL. resume: soft-reset so main.py (the charger) runs again."""
        t, self._t = self._t, None
        if t is None:
            return
        try:
            if self.maintenance_entered:
                self._leave_maintenance(t)
            elif resume:
                t.exit_raw_repl()
                t.serial.write(b"\x04")  # soft reset in the friendly REPL: boot.py, then main.py
                t.serial.flush()
            else:
                t.exit_raw_repl()
        except (OSError, serial.SerialException, TransportError):
            pass
        finally:
            t.close()

    # ---------------------------------------------------------------- running code
    @property
    def transport(self) -> SerialTransport:
        if self._t is None:
            raise FlashError("not connected")
        return self._t

    def exec(self, code: str, *, timeout: float | None = None, what: str = "running a command",
             stream: Callable[[bytes], None] | None = None) -> bytes:
        try:
            out, err = self.transport.exec_raw(code, timeout=timeout or self.exec_timeout, data_consumer=stream)
        except (TransportError, serial.SerialException, OSError) as exc:
            raise FlashError(f"lost the board on {self.port} while {what} ({exc}): check the cable; "
                             f"if the board reset, run the command again") from None
        if err:
            raise explain_device_error(err.decode(errors="replace"), what)
        return out

    def call(self, expr: str, *, timeout: float | None = None, what: str = "asking the board") -> Any:
        """Run a helper that answers with one "@@<json>" line; return the decoded value."""
        out = self.exec(expr, timeout=timeout, what=what).decode(errors="replace")
        for line in reversed(out.splitlines()):
            if line.startswith("@@"):
                return json.loads(line[2:])
        raise FlashError(f"the board gave no answer while {what}; it printed:\n{out.strip()}")

    # ---------------------------------------------------------------- files
    def read_file(self, path: str, progress: Progress | None = None) -> bytes:
        try:
            return bytes(self.transport.fs_readfile(path, chunk_size=READ_CHUNK, progress_callback=progress))
        except OSError as exc:
            raise FlashError(f"cannot read {path} on the board: {exc}") from None
        except TransportError as exc:
            raise explain_device_error(str(exc), f"reading {path}") from None

    def write_file(self, path: str, data: bytes) -> None:
        self.write_files([(path, data)])

    def write_files(self, files: list[tuple[str, bytes]], progress: Callable[[int], None] | None = None) -> None:
        """Write files atomically (to NAME.new, then renamed: a power cut leaves the old file or the
        new one). Small files go several to one exec; big ones in WRITE_CHUNK pieces."""
        batch: list[str] = []
        batch_bytes = 0

        def flush() -> None:
            nonlocal batch, batch_bytes
            if batch:
                self.exec("".join(batch), what="copying files")
                if progress:
                    progress(batch_bytes)
            batch, batch_bytes = [], 0

        for path, data in files:
            tmp = path + ".new"
            if len(data) <= WRITE_CHUNK:
                if batch_bytes + len(data) > WRITE_CHUNK:
                    flush()
                batch.append(f"_evc_put({tmp!r},{bytes(data)!r},{path!r})\n")
                batch_bytes += len(data)
                continue
            flush()
            self.exec(f"_evc_f=open({tmp!r},'wb')", what=f"writing {path}")
            for at in range(0, len(data), WRITE_CHUNK):
                chunk = bytes(data[at:at + WRITE_CHUNK])
                self.exec(f"_evc_f.write({chunk!r})", what=f"writing {path}")
                if progress:
                    progress(len(chunk))
            self.exec(f"_evc_f.close()\n_evc_replace({tmp!r},{path!r})", what=f"writing {path}")
        flush()

    def makedirs(self, dirs: list[str]) -> None:
        if dirs:
            self.call(f"_evc_makedirs({sorted(set(dirs))!r})", what="creating folders")

    def remove(self, paths: list[str]) -> list[str]:
        return self.call(f"_evc_remove({list(paths)!r})", what="removing files") if paths else []

    def sizes(self, paths: list[str]) -> dict[str, int]:
        return self.call(f"_evc_sizes({list(paths)!r})", what="listing files") if paths else {}

    def read_text(self, path: str) -> str | None:
        return self.call(f"_evc_read_text({path!r})", what=f"reading {path}")

    # ---------------------------------------------------------------- resets and maintenance
    def hard_reset(self) -> None:
        """Reset the board (board.reset(), else machine.reset()); the session ends."""
        t, self._t = self._t, None
        if t is None:
            return
        try:
            t.exec_raw_no_follow("try:\n import board\n board.reset()\nexcept ImportError:\n import machine\n machine.reset()\n")
            t.serial.flush()
            time.sleep(0.2)
        except (TransportError, OSError, serial.SerialException):
            pass
        finally:
            t.close()

    def reopen_after_reset(self, wait_s: float = 15) -> None:
        """Connect again after a reset (native-USB boards re-enumerate: the port comes back)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self.open(wait_s=max(0.0, deadline - time.monotonic()))
                return
            except FlashError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def ensure_no_watchdog(self, say: Callable[[str], None]) -> None:
        """Long commands must not race the hardware watchdog: switch to maintenance mode for them.

        The ESP32's watchdog cannot be stopped once the charger armed it, and the REPL interrupted
        the code that fed it. So: set the maintenance flag, reset (no watchdog at boot), reconnect;
        close() clears the flag and resets into normal operation.
        """
        if not self.info.get("watchdog") or self.info.get("maintenance"):
            return
        flag = self.info["maintenance_flag"]
        say("the charger's watchdog is running: restarting the board in maintenance mode for this command")
        self.exec(f"open({flag!r}, 'w').close()", what="setting maintenance mode")
        self.hard_reset()
        self.reopen_after_reset()
        self.maintenance_entered = True

    def _leave_maintenance(self, t: SerialTransport) -> None:
        flag = self.info.get("maintenance_flag")
        if flag:
            t.exec_raw(f"import os\ntry:\n os.remove({flag!r})\nexcept OSError:\n pass\n", timeout=10)
        t.exec_raw_no_follow("import board\nboard.reset()\n")
        t.serial.flush()
        time.sleep(0.2)


def version_text(info: dict) -> str:
    return ".".join(map(str, info.get("version") or ())) or "?"


_MPY_ARCH = ["none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
             "xtensa", "xtensawin", "rv32imc", "rv64imc"]


def mpy_abi(mpy: int) -> tuple[int, int, str]:
    """(bytecode version, sub-version, native arch) from sys.implementation._mpy."""
    arch = (mpy >> 10) & 0x3F
    return mpy & 0xFF, (mpy >> 8) & 3, _MPY_ARCH[arch] if arch < len(_MPY_ARCH) else str(arch)


def parse_mpy_cross_version(text: str) -> tuple[int, int] | None:
    m = re.search(r"mpy v(\d+)(?:\.(\d+))?", text)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else None
