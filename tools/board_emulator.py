"""A MicroPython board on a pseudo-terminal, for mpremote and tools/flash.py without hardware.

The emulator speaks the device side of MicroPython's serial protocols on a pty: the friendly
REPL (minimal), the raw REPL (Ctrl-A), raw-paste mode (Ctrl-E A Ctrl-A, with flow control),
soft reset (Ctrl-D), interrupt (Ctrl-C) and hard reset (the running code exits, e.g.
`board.reset()` on the host board). Whatever it receives runs in one MicroPython unix process
(the "agent") whose VFS root is the emulated flash folder, so files written through the REPL
land in that folder and imports come from what was deployed there, as on a real board.

    .venv/bin/python tools/board_emulator.py --flash /tmp/board   # prints the port to use
    .venv/bin/mpremote connect /dev/pts/N ls

With littlefs_kb=N the flash is instead an N KiB LittleFS image (flash.img in that folder),
size-limited like the ESP32's, for flash-full tests.

With frozen=DIR the board runs a frozen firmware image (boards/esp32/manifest.py on a real
board): the modules in DIR import without any file on the board's filesystem. DIR is mounted
read-only at /.frozen-image, which sys.path lists right after MicroPython's own ".frozen"; the
filesystem ("") comes first, as on an ESP32, so a deployed file of the same name shadows a frozen
module. `frozen_image(manifest, DIR)` lays DIR out from a manifest (--frozen-manifest).

Differences from a real board, on purpose: output nobody reads is dropped after 64 KiB (a UART
drops it at once); the friendly REPL runs one line at a time; mpremote's `mount` (which needs the
device's stdin) is not supported.
"""
from __future__ import annotations

import argparse
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import tty
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
IDLE = b"\x00\x1bEMU-IDLE\x1b\x00"  # agent -> emulator: the REPL waits for input again
RUN = b"\x00\x1bEMU-RUN\x1b\x00"  # agent -> emulator: user code runs now; Ctrl-C may interrupt it
PASTE_WINDOW = 128  # what an ESP32 with a 256-byte stdin buffer announces
_MAX_UNREAD = 64 * 1024

# The agent runs inside MicroPython. Frames on its stdin: kind (1 byte) + length (4 bytes LE)
# + source. Its stdout carries exactly what the board would print, then IDLE.
AGENT = r"""
import io, os, sys, vfs
class _Flash(vfs.VfsPosix):
    # VfsPosix with a root renames absolute paths wrongly (unix port 1.29): hand it relative ones.
    def rename(self, old, new):
        return super().rename(old.lstrip("/"), new.lstrip("/"))
class _Blocks:
    # A flash chip in a file: 4 KiB erase blocks, the interface vfs.VfsLfs2 needs.
    def __init__(self, path, count):
        try:
            self.f = open(path, "r+b")
        except OSError:
            self.f = open(path, "w+b")
            self.f.write(b"\xff" * 4096 * count)
        self.count = count
    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.write(buf)
        self.f.flush()
    def ioctl(self, op, arg):
        return self.count if op == 4 else 4096 if op == 5 else 0
_kb = os.getenv("EMU_LFS_KB")
if _kb:  # a size-limited LittleFS like the ESP32's, in flash.img of the flash folder
    _dev = _Blocks(os.getenv("EMU_FLASH") + "/flash.img", int(_kb) // 4)
    vfs.umount("/")
    try:
        vfs.mount(vfs.VfsLfs2(_dev), "/")
    except OSError:
        vfs.VfsLfs2.mkfs(_dev)
        vfs.mount(vfs.VfsLfs2(_dev), "/")
else:  # the folder itself is the flash
    vfs.umount("/")
    vfs.mount(_Flash(os.getenv("EMU_FLASH")), "/")
os.chdir("/")
_img = os.getenv("EMU_FROZEN")
if _img:  # the frozen image's stand-in: after ".frozen", behind the filesystem
    vfs.mount(vfs.VfsPosix(_img), "/.frozen-image", readonly=True)
    sys.path.insert(sys.path.index(".frozen") + 1, "/.frozen-image")
_in = sys.stdin.buffer
_out = sys.stdout.buffer
_IDLE = b"\x00\x1bEMU-IDLE\x1b\x00"
_FRIENDLY = b"MicroPython " + sys.version.split("; ")[-1].encode() + b" (board emulator)\r\nType \"help()\" for more information.\r\n>>> "
_g = {"__name__": "__main__"}
_RUN = b"\x00\x1bEMU-RUN\x1b\x00"
_F_TAIL = b">>> " + _IDLE
_R_TAIL = b"\x04>" + _IDLE

def _say(data):
    try:
        _out.write(data)
    except KeyboardInterrupt:  # interrupted before anything was written (EINTR): write it now
        _out.write(data)

def _exc_text(e):
    buf = io.StringIO()
    sys.print_exception(e, buf)
    lines = [l for l in buf.getvalue().split("\n") if not l.endswith((" in _run", " in _run_file"))]
    return "\r\n".join(lines).encode()

def _run(code, tail):
    # The tail goes out in `finally`: even an interrupt landing just after the code finished
    # cannot swallow it (the emulator would wait forever).
    err = b""
    try:
        try:
            _say(_RUN)
            if tail is _F_TAIL:
                try:
                    value = eval(compile(code, "<stdin>", "eval"), _g)
                    if value is not None:
                        print(repr(value))
                except SyntaxError:
                    exec(compile(code, "<stdin>", "exec"), _g)
            else:
                exec(compile(code, "<stdin>", "exec"), _g)
        except SystemExit:
            raise
        except BaseException as e:
            err = _exc_text(e)
    finally:
        _say((err + tail) if tail is _F_TAIL else (b"\x04" + err + tail))

def _read(n):
    data = b""
    while len(data) < n:
        chunk = _in.read(n - len(data))
        if not chunk:
            sys.exit(0)
        data += chunk
    return data

def _run_file(name):
    try:
        os.stat(name)
    except OSError:
        return
    try:
        _say(_RUN)
        with open(name) as f:
            code = f.read()
        exec(compile(code, name, "exec"), _g)
    except SystemExit:
        raise
    except BaseException as e:
        _say(_exc_text(e))

def _boot(mode):
    try:
        _run_file("boot.py")
        if mode != "raw" and os.getenv("EMU_RUN_MAIN") == "1":
            _run_file("main.py")
    finally:
        _say((b"raw REPL; CTRL-B to exit\r\n>" if mode == "raw" else _FRIENDLY) + _IDLE)

def _main():
    # Ctrl-C arrives as SIGINT (the emulator sends it only while user code runs) and is raised
    # at the next jump: the loops keep their jumps inside a try.
    try:
        _boot(os.getenv("EMU_BOOT"))
    except KeyboardInterrupt:
        pass
    while True:
        try:
            while True:
                head = _read(5)
                n = head[1] | head[2] << 8 | head[3] << 16 | head[4] << 24
                _run(_read(n).decode(), _F_TAIL if head[0] == 70 else _R_TAIL)
        except KeyboardInterrupt:
            pass

_main()
"""


def _micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    return str(beside) if beside.exists() else "micropython"


class BoardEmulator:
    """One emulated board: `port` is the pty path to give mpremote or flash.py."""

    def __init__(self, flash_dir: Path | str, *, heap: str = "2M", run_main: bool = True,
                 raw_paste: bool = True, env: dict[str, str] | None = None,
                 echo: bool = False, micropython: str | None = None, littlefs_kb: int | None = None,
                 frozen: Path | str | None = None):
        self.flash_dir = Path(flash_dir).resolve()
        self.flash_dir.mkdir(parents=True, exist_ok=True)
        self.heap = heap
        self.run_main = run_main
        self.raw_paste = raw_paste
        self.env = env or {}
        self.echo = echo
        self.micropython = micropython or _micropython()
        self.littlefs_kb = littlefs_kb  # None: the folder is the flash; N: an N KiB LittleFS in flash.img
        self.frozen = Path(frozen).resolve() if frozen else None  # modules frozen into the "image"
        self.resets = {"soft": 0, "hard": 0}
        self._events: queue.Queue = queue.Queue()
        self._agent: subprocess.Popen | None = None
        self._gen = 0
        self._busy = False
        self._mode = "friendly"
        self._pending = bytearray()  # input that arrived while code was running
        self._line = bytearray()  # raw REPL / friendly REPL line being typed
        self._paste: bytearray | None = None  # raw-paste data being received
        self._paste_window = 0
        self._carry = b""  # agent output that may be the start of IDLE
        self._unread = bytearray()  # output the pty could not take yet
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = ""

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> "BoardEmulator":
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: a UART, not a terminal
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)
        self._start_agent("hard")
        for target in (self._read_pty, self._main):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._events.put(("stop",))
        for thread in self._threads:  # the board loop first: nothing may touch the agent after this
            thread.join(timeout=5)
        self._kill_agent()
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "BoardEmulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- agent
    def _start_agent(self, mode: str) -> None:
        self._gen += 1
        env = dict(os.environ)
        # sys.path as on an ESP32: the filesystem, the frozen modules, lib. "lib", not "/lib": VfsPosix
        # with a root fails import lookups on absolute paths (unix port 1.29)
        env.update({"MICROPYPATH": ":.frozen:lib", "EMU_FLASH": str(self.flash_dir), "EMU_BOOT": mode,
                    "EMU_RUN_MAIN": "1" if self.run_main else "0", "EMU_LFS_KB": str(self.littlefs_kb or ""),
                    "EMU_FROZEN": str(self.frozen or "")})
        env.update(self.env)
        self._agent = subprocess.Popen(
            [self.micropython, "-X", f"heapsize={self.heap}", "-c", AGENT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            cwd=str(self.flash_dir), env=env, bufsize=0,
        )
        self._busy = True
        self._in_user = False  # between RUN and IDLE: SIGINT lands in user code
        self._interrupt = False  # Ctrl-C came while booting: interrupt the next user code
        self._mode = "raw" if mode == "raw" else "friendly"
        self._carry = b""
        thread = threading.Thread(target=self._pump, args=(self._agent, self._gen), daemon=True)
        thread.start()

    def _kill_agent(self) -> None:
        agent, self._agent = self._agent, None
        if agent is None:
            return
        self._gen += 1  # its exit is ours, not a reset of the board
        if agent.poll() is None:
            agent.kill()
        agent.wait(timeout=10)
        if agent.stdin:
            agent.stdin.close()
        if agent.stdout:
            agent.stdout.close()

    def _pump(self, agent: subprocess.Popen, gen: int) -> None:
        fd = agent.stdout.fileno()
        while True:
            try:
                data = os.read(fd, 4096)
            except (OSError, ValueError):
                data = b""
            if not data:
                self._events.put(("exit", gen))
                return
            self._events.put(("out", gen, data))

    def _send(self, kind: bytes, code: bytes) -> None:
        self._busy = True
        if self._agent is None or self._agent.stdin is None:
            return
        try:
            self._agent.stdin.write(kind + len(code).to_bytes(4, "little") + code)
        except (BrokenPipeError, ValueError):
            pass  # the agent died; its exit event resets the board

    # ----------------------------------------------------------------- pty side
    def _read_pty(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.2)
            if not ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            if data:
                self._events.put(("in", data))

    def _write(self, data: bytes) -> None:
        if self.echo:
            sys.stdout.buffer.write(data.replace(IDLE, b""))
            sys.stdout.flush()
        self._unread += data
        self._flush()

    def _flush(self) -> None:
        while self._unread:
            try:
                n = os.write(self._master, self._unread)
            except BlockingIOError:
                break
            except OSError:
                self._unread.clear()
                return
            del self._unread[:n]
        if len(self._unread) > _MAX_UNREAD:  # nobody listens: drop the oldest, like a UART
            del self._unread[: len(self._unread) - _MAX_UNREAD]

    # ----------------------------------------------------------------- the board
    def _main(self) -> None:
        while True:
            try:
                event = self._events.get(timeout=0.05)
            except queue.Empty:
                self._flush()
                continue
            kind = event[0]
            if kind == "stop":
                return
            try:
                self._handle(event)
            except Exception as exc:  # a broken board must not silently stop answering
                sys.stderr.write(f"board emulator: {type(exc).__name__}: {exc}\n")
            self._flush()

    def _handle(self, event: tuple) -> None:
        kind = event[0]
        if kind == "in":
            self._input(event[1])
        elif kind == "out" and event[1] == self._gen:
            self._output(event[2])
        elif kind == "exit" and event[1] == self._gen and not self._stop.is_set():
            self.resets["hard"] += 1  # the running code reset the board (or crashed it)
            self._kill_agent()
            self._line.clear()
            self._paste = None
            self._start_agent("hard")

    def _output(self, data: bytes) -> None:
        data = self._carry + data
        self._carry = b""
        while True:
            found = [(at, m) for m in (RUN, IDLE) for at in (data.find(m),) if at >= 0]
            if not found:
                break
            at, marker = min(found)
            self._write(data[:at])
            data = data[at + len(marker):]
            if marker is RUN:
                self._in_user = True
                if self._interrupt and self._agent is not None:
                    self._interrupt = False
                    self._agent.send_signal(signal.SIGINT)
            else:
                self._busy = self._in_user = self._interrupt = False
        # hold back what may be the start of a marker (both begin with the same bytes)
        keep = next((k for k in range(min(len(RUN) - 1, len(data)), 0, -1)
                     if RUN.startswith(data[-k:]) or IDLE.startswith(data[-k:])), 0)
        if keep:
            self._carry = data[-keep:]
            data = data[:-keep]
        if data:
            self._write(data)
        if not self._busy and self._pending:
            pending = bytes(self._pending)
            self._pending.clear()
            self._input(pending)

    def _input(self, data: bytes) -> None:
        for i, byte in enumerate(data):
            if self._busy:
                if byte == 0x03 and self._agent is not None and self._agent.poll() is None:
                    if self._in_user:
                        self._agent.send_signal(signal.SIGINT)  # KeyboardInterrupt in the running code
                    else:
                        self._interrupt = True
                else:
                    self._pending.append(byte)
                continue
            if self._paste is not None:
                self._paste_byte(byte)
            elif self._mode == "raw":
                self._raw_byte(byte)
            else:
                self._friendly_byte(byte)

    def _raw_byte(self, byte: int) -> None:
        line = self._line
        if byte == 0x05 and not line:
            line.append(byte)  # maybe the start of a raw-paste request: Ctrl-E A Ctrl-A
        elif bytes(line) == b"\x05" and byte == ord("A"):
            line.append(byte)
        elif bytes(line) == b"\x05A" and byte == 0x01:
            line.clear()
            if self.raw_paste:
                self._paste = bytearray()
                self._paste_window = PASTE_WINDOW * 2
                self._write(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
            else:
                self._write(b"R\x00")
        elif byte == 0x01:  # Ctrl-A: restart the raw REPL
            line.clear()
            self._write(RAW_BANNER + b">")
        elif byte == 0x02:  # Ctrl-B: back to the friendly REPL
            line.clear()
            self._mode = "friendly"
            self._send(b"F", b"print('')")
        elif byte == 0x03:
            line.clear()
        elif byte == 0x04:
            if not line:  # Ctrl-D on an empty line: soft reset
                self._write(b"OK\r\nMPY: soft reboot\r\n")
                self.resets["soft"] += 1
                self._kill_agent()
                self._start_agent("raw")
            else:
                self._write(b"OK")
                code = bytes(line)
                line.clear()
                self._send(b"R", code)
        else:
            line.append(byte)

    def _paste_byte(self, byte: int) -> None:
        assert self._paste is not None
        if byte == 0x04:  # end of data: acknowledge, then compile and run
            code = bytes(self._paste)
            self._paste = None
            self._write(b"\x04")
            self._send(b"R", code)
            return
        self._paste.append(byte)
        self._paste_window -= 1
        if self._paste_window <= PASTE_WINDOW:  # a window was consumed: grant another
            self._paste_window += PASTE_WINDOW
            self._write(b"\x01")

    def _friendly_byte(self, byte: int) -> None:
        line = self._line
        if byte == 0x01:  # Ctrl-A: raw REPL
            line.clear()
            self._mode = "raw"
            self._write(b"\r\n" + RAW_BANNER + b">")
        elif byte == 0x03:
            line.clear()
            self._write(b"\r\nKeyboardInterrupt\r\n>>> ")
        elif byte == 0x04 and not line:  # soft reset, then boot.py and main.py
            self._write(b"\r\nMPY: soft reboot\r\n")
            self.resets["soft"] += 1
            self._kill_agent()
            self._start_agent("friendly")
        elif byte in (0x0D, 0x0A):
            self._write(b"\r\n")
            code = bytes(line).strip()
            line.clear()
            if code:
                self._send(b"F", code)
            else:
                self._write(b">>> ")
        elif byte in (0x08, 0x7F):
            if line:
                line.pop()
                self._write(b"\x08 \x08")
        elif byte >= 0x20:
            line.append(byte)
            self._write(bytes([byte]))


def frozen_image(manifest: Path | str, dest: Path | str) -> Path:
    """Lay out in dest the modules a manifest freezes from this repository (package() and
    module(); what include() and require() bring is left out), for BoardEmulator(frozen=dest)."""
    if str(_REPO) not in sys.path:
        sys.path.insert(0, str(_REPO))
    from tools.flashkit.image import manifest_files

    dest = Path(dest)
    for frozen_path, src in manifest_files(Path(manifest)):
        target = dest / frozen_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flash", type=Path, required=True, help="folder that plays the board's flash")
    parser.add_argument("--heap", default="2M", help="MicroPython heap size (default 2M)")
    parser.add_argument("--no-main", action="store_true", help="do not run main.py after a reset")
    parser.add_argument("--echo", action="store_true", help="also print what the board prints")
    image = parser.add_mutually_exclusive_group()
    image.add_argument("--frozen", type=Path, help="folder of modules that play a frozen firmware image")
    image.add_argument("--frozen-manifest", type=Path,
                       help="emulate the image this manifest builds, e.g. boards/host/manifest.py")
    args = parser.parse_args(argv)
    frozen = args.frozen
    scratch = None
    if args.frozen_manifest:
        import tempfile

        scratch = tempfile.TemporaryDirectory(prefix="frozen-image-")
        frozen = frozen_image(args.frozen_manifest, scratch.name)
    emulator = BoardEmulator(args.flash, heap=args.heap, run_main=not args.no_main, echo=args.echo,
                             env={"EVC_ROOT": "/evc"}, frozen=frozen).start()
    print(f"board emulator on {emulator.port} (flash: {emulator.flash_dir}"
          + (f"; frozen image: {frozen}" if frozen else "") + "); Ctrl-C to stop", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop cleanly (the scratch image too)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        if scratch is not None:
            scratch.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
