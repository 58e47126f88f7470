"""Time: the SNTP client (firmware/hal/sntp.py) and the clock's quality (hal/clock.py) under
MicroPython, against an SNTP server written here (CPython, UDP on 127.0.0.1, a free port) that
answers correctly, or wrongly on purpose: a wrong mode, a foreign origin timestamp, stratum 0
(kiss-o'-death), an unsynchronized server, garbage, silence. Bad replies change nothing;
silence ends at the deadline; the event loop never stalls while the client waits.

The server's clock is REF (2026-01-01) plus the real time since it started, far from both the
host's clock and the never-set RTC the host board starts with (2000-01-01, quality U)."""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time

import pytest

NTP_DELTA = 2208988800
REF = 1767225600  # 2026-01-01T00:00:00Z
TIMEOUT_MS = 600


class SntpServer:
    """A UDP SNTP server on 127.0.0.1 answering as `mode` says; it records every request.

    Modes: good, v3 (version 3 reply), bad-mode (mode 3), broadcast (mode 5), wrong-origin,
    stratum0 (kiss-o'-death DENY), stratum16, unsync (leap indicator 3), zero-tx, old (a time
    before 2024), garbage (20 random bytes), silent, spoof-then-good (a reply with a foreign
    origin, then the right one 150 ms later), late (the right reply after 1.5 s).
    """

    def __init__(self, mode: str = "good", ref: int = REF):
        self.mode = mode
        self.ref = ref
        self.t0 = time.monotonic()
        self.requests: list[bytes] = []
        self.times: list[float] = []  # the server's clock when each request arrived
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def now(self) -> float:
        """The server's clock: Unix seconds."""
        return self.ref + (time.monotonic() - self.t0)

    def __enter__(self) -> "SntpServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    @staticmethod
    def _ts(unix: float) -> int:
        secs = int(unix) + NTP_DELTA
        frac = int((unix - int(unix)) * (1 << 32))
        return (secs & 0xFFFFFFFF) << 32 | frac

    def reply(self, req: bytes, mode: str | None = None) -> bytes:
        mode = mode or self.mode
        li, vn, pm, stratum, refid = 0, 4, 4, 2, b"GPS\0"
        origin = req[40:48]
        now = self.now()
        if mode == "v3":
            vn = 3
        elif mode == "bad-mode":
            pm = 3
        elif mode == "broadcast":
            pm = 5
        elif mode == "wrong-origin":
            origin = os.urandom(8)
        elif mode == "stratum0":
            stratum, refid = 0, b"DENY"
        elif mode == "stratum16":
            stratum = 16
        elif mode == "unsync":
            li = 3
        elif mode == "old":
            now = 915148800.0  # 1999-01-01
        rx = self._ts(now)
        tx = 0 if mode == "zero-tx" else self._ts(now)
        head = struct.pack("!BBbbII4sQ", li << 6 | vn << 3 | pm, stratum, 6, -20, 0, 0, refid, self._ts(now - 10))
        return head + origin + struct.pack("!QQ", rx, tx)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                req, peer = self.sock.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            self.times.append(self.now())
            self.requests.append(req)
            mode = self.mode
            if mode == "silent":
                continue
            if mode == "garbage":
                self.sock.sendto(os.urandom(20), peer)
            elif mode == "spoof-then-good":
                self.sock.sendto(self.reply(req, "wrong-origin"), peer)
                time.sleep(0.15)
                self.sock.sendto(self.reply(req, "good"), peer)
            elif mode == "late":
                threading.Timer(1.5, lambda r=req, p=peer: self._send_quietly(self.reply(r, "good"), p)).start()
            else:
                self.sock.sendto(self.reply(req), peer)

    def _send_quietly(self, data: bytes, peer) -> None:
        try:
            self.sock.sendto(data, peer)
        except OSError:
            pass


@pytest.fixture
def sntp_server():
    made: list[SntpServer] = []

    def make(mode: str = "good", ref: int = REF) -> SntpServer:
        s = SntpServer(mode, ref)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


# MicroPython side: sync against `SERVERS` with the deadline, report what the clock says, how
# long it took, and the longest gap a 10 ms ticker saw meanwhile (the event loop never blocks).
SYNC = """
import asyncio, time
from hal import clock, sntp

async def ticker(box):
    last = time.ticks_ms()
    while not box.get("done"):
        await asyncio.sleep_ms(10)
        now = time.ticks_ms()
        box["gap"] = max(box.get("gap", 0), time.ticks_diff(now, last))
        last = now

async def main():
    box = {}
    t = asyncio.create_task(ticker(box))
    before = clock.now()
    t0 = time.ticks_ms()
    got = await sntp.sync([sntp.parse_server(s) for s in SERVERS], TIMEOUT_MS)
    took = time.ticks_diff(time.ticks_ms(), t0)
    box["done"] = True
    await t
    emit({"before": before, "got": got, "took": took, "after": clock.now(), "source": clock.source(),
          "gap": box.get("gap", 0)})

asyncio.run(main())
"""


def sync(mpy, servers: list[str], timeout_ms: int = TIMEOUT_MS, env: dict | None = None) -> dict:
    head = f"SERVERS = {json.dumps(servers)}\nTIMEOUT_MS = {timeout_ms}\n"
    return mpy.run(head + SYNC, env=env).value


def test_sync_sets_the_time_and_quality_s(mpy, sntp_server):
    srv = sntp_server("good")
    out = sync(mpy, [srv.addr])
    assert out["before"][1] == "U" and out["before"][0] < 1704067200  # the host board boots like a fresh RTC
    assert out["got"] == srv.addr and out["source"] == "ntp"
    t, q = out["after"]
    assert q == "S" and abs(t - srv.now()) <= 1, (t, srv.now())
    assert out["took"] < 300 and out["gap"] < 100
    req = srv.requests[0]
    assert len(req) == 48 and req[0] == 0x23  # LI 0, VN 4, mode 3
    assert req[40:48] != bytes(8)  # a transmit timestamp (random: the nonce the reply must echo)


def test_version_3_server_and_names_are_resolved(mpy, sntp_server):
    srv = sntp_server("v3")
    out = sync(mpy, [f"localhost:{srv.port}"])  # a name: the uplink's resolver, on a thread
    assert out["got"] == f"localhost:{srv.port}" and out["after"][1] == "S"


def test_ms_precision_of_the_sync(mpy, sntp_server):
    """The clock is set to the millisecond, half the round trip added: the device's seconds roll
    over within a few ms of the server's (the device tells the server the moment it sees one)."""
    srv = sntp_server("good", ref=REF)
    code = f"""
import asyncio, socket, time
from hal import clock, sntp
asyncio.run(sntp.sync([sntp.parse_server({srv.addr!r})], 1000))
addr = socket.getaddrinfo("127.0.0.1", {srv.port})[0][-1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
t0, _ = clock.now()
while clock.now()[0] == t0:
    pass
s.sendto(b"roll-over", addr)
emit(clock.now()[0])
"""
    got = mpy.run(code).value
    deadline = time.monotonic() + 2
    while len(srv.times) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert -0.005 < srv.times[1] - got < 0.03, (srv.times[1], got)  # typically within 1-2 ms


@pytest.mark.parametrize("mode,quick", [
    ("bad-mode", True), ("broadcast", True), ("stratum0", True), ("stratum16", True), ("unsync", True),
    ("zero-tx", True), ("old", True),  # answers to our request, unusable: the attempt ends at once
    ("wrong-origin", False), ("garbage", False), ("silent", False), ("late", False),  # not an answer: wait to the deadline
])
def test_bad_replies_change_nothing(mpy, sntp_server, mode, quick):
    srv = sntp_server(mode)
    out = sync(mpy, [srv.addr])
    assert out["got"] is None and out["source"] is None
    assert out["after"][1] == "U" and out["after"][0] < 1704067200, out
    assert len(srv.requests) == 1
    if quick:
        assert out["took"] < TIMEOUT_MS - 200, out
    else:
        assert TIMEOUT_MS <= out["took"] < TIMEOUT_MS + 300, out  # silence ends at the deadline
    assert out["gap"] < 100, out


def test_spoofed_reply_first_then_the_real_one(mpy, sntp_server):
    srv = sntp_server("spoof-then-good")
    out = sync(mpy, [srv.addr])
    assert out["got"] == srv.addr and out["after"][1] == "S" and abs(out["after"][0] - srv.now()) <= 1


def test_next_server_after_silence_and_refusal(mpy, sntp_server):
    silent, kod, good = sntp_server("silent"), sntp_server("stratum0"), sntp_server("good", ref=REF + 5000)
    out = sync(mpy, [silent.addr, kod.addr, good.addr])
    assert out["got"] == good.addr and abs(out["after"][0] - good.now()) <= 1
    assert TIMEOUT_MS <= out["took"] < TIMEOUT_MS + 400
    assert [len(s.requests) for s in (silent, kod, good)] == [1, 1, 1]


def test_no_server_at_the_port_and_unknown_name(mpy, free_port):
    out = sync(mpy, [f"127.0.0.1:{free_port}", "no-such-host.invalid"], timeout_ms=400)
    assert out["got"] is None and out["after"][1] == "U"
    assert out["took"] < 2 * 400 + 500


def test_integer_conversions(mpy):
    """NTP era 0 and 1 (the 32-bit seconds wrap on 2036-02-07), fractions as ms, round-trip
    compensation less the server's hold time; all integers (the ESP32 has single floats)."""
    out = mpy.run(f"""
from hal import sntp
emit([sntp.to_unix({REF + NTP_DELTA}), sntp.to_unix(0xFFFFFFFF), sntp.to_unix(0), sntp.to_unix(5),
      sntp.reply_time(({REF + NTP_DELTA}, 0, {REF + NTP_DELTA}, 500), 100),
      sntp.reply_time(({REF + NTP_DELTA}, 900, {REF + NTP_DELTA + 1}, 100), 300),
      sntp.reply_time((0, 0, {REF + NTP_DELTA}, 999), 4),
      sntp.parse_server("pool.ntp.org"), sntp.parse_server("10.0.0.1:1123")])
""").value
    assert out[0] == REF
    assert out[1] == 0xFFFFFFFF - NTP_DELTA  # 2036-02-07T06:28:15Z, the last second of era 0
    assert out[2] == 2**32 - NTP_DELTA and out[3] == 2**32 + 5 - NTP_DELTA  # era 1
    assert out[4] == [REF, 550]  # transmit .500 + half of 100 ms
    assert out[5] == [REF + 1, 150]  # held 200 ms (.900 to 1.100) of a 300 ms round trip: 1.100 + 50 ms
    assert out[6] == [REF + 1, 1]  # .999 + 2 ms carries into the next second
    assert out[7] == ["pool.ntp.org", 123] and out[8] == ["10.0.0.1", 1123]


def test_quality_u_then_s_then_i_after_max_age(mpy):
    """Device time runs 1000x here: max_age_s 60 passes in 60 ms of real time."""
    out = mpy.run("""
import time
from hal import clock
a = clock.now()
clock.set_max_age(60)
clock.set_time(1767225600, "S", 250)
b = clock.now()
time.sleep_ms(30)
c = clock.now()
time.sleep_ms(60)
d = clock.now()
errs = []
for bad in ((1000, "S"), (1767225600, "U"), (1767225600.5, "S")):
    try:
        clock.set_time(*bad)
    except ValueError as exc:
        errs.append(str(exc))
emit([a, b, c, d, errs, clock.now()[1]])
""", env={"EVC_CLOCK_SPEED": "1000"}).value
    a, b, c, d, errs, last = out
    assert a[1] == "U" and b == [1767225600, "S"]
    assert c[1] == "S" and 1767225600 + 20 <= c[0] <= 1767225600 + 59
    assert d[1] == "I" and d[0] >= 1767225600 + 60  # set, but the sync is older than max_age
    assert len(errs) == 3 and last == "I"  # refused settings changed nothing


def test_host_board_time_quality_from_the_environment(mpy):
    code = "from hal import clock\nemit(list(clock.now()) + [clock.source()])"
    assert mpy.run(code).value[1:] == ["U", None]
    t, q, src = mpy.run(code, env={"EVC_TIME_QUALITY": "S"}).value
    assert q == "S" and abs(t - time.time()) <= 2 and src == "board"
    t, q, _ = mpy.run(code, env={"EVC_TIME_QUALITY": "I", "EVC_CLOCK_OFFSET_S": "-3600"}).value
    assert q == "I" and abs(t - (time.time() - 3600)) <= 2
    t, q, _ = mpy.run(code, env={"EVC_TIME_QUALITY": "U", "EVC_CLOCK_OFFSET_S": "-3600"}).value
    assert q == "U" and t < 1704067200  # the offset shifts a known clock only
    bad = mpy.run(code, env={"EVC_TIME_QUALITY": "X"}, check=False)
    assert bad.returncode != 0 and "EVC_TIME_QUALITY" in bad.stdout + bad.stderr


def test_set_time_keeps_it_in_the_rtc(mpy):
    """On a board with machine.RTC (the ESP32) set_time() writes the RTC, which keeps the time
    across a soft reset; the unix port has none (nothing written, nothing fails)."""
    out = mpy.run("""
import sys
written = []
class RTC:
    def datetime(self, t):
        written.append(list(t))
class machine:
    pass
machine.RTC = RTC
from hal import clock
clock.set_time(1767225600 + 86400 + 3723, "S", 250)  # 2026-01-02T01:02:03.250Z, a Friday
plain = list(written)
sys.modules["machine"] = machine
clock.set_time(1767225600 + 86400 + 3723, "S", 250)
emit([plain, written])
""").value
    assert out[0] == []
    assert out[1] == [[2026, 1, 2, 4, 1, 2, 3, 250000]]  # (y, m, d, weekday Mon=0, h, m, s, us)


def test_backend_time_command(mpy):
    """The backend's time: sets S while time is unknown; an SNTP sync within max_age wins;
    a malformed command raises (the downlink reports it invalid) and changes nothing."""
    out = mpy.run("""
from hal import clock, sntp
res = []
for doc in ({"cmd": "time"}, {"cmd": "time", "t": "1767225600"}, {"cmd": "time", "t": 1000, "exp": 2000},
            {"cmd": "time", "t": 1767225600, "exp": 1767225500}):
    try:
        sntp.from_backend(doc)
        res.append("applied")
    except ValueError as exc:
        res.append("refused")
res.append(clock.now())
res.append(sntp.from_backend({"cmd": "time", "t": 1767225600, "exp": 1767225660}))
res.append(list(clock.now()) + [clock.source()])
res.append(sntp.from_backend({"cmd": "time", "t": 1767229200, "exp": 1767229260}))  # a later one replaces it
res.append(clock.now()[0])
clock.set_time(1767232800, "S", 0, "ntp")
res.append(sntp.from_backend({"cmd": "time", "t": 1767240000, "exp": 1767240060}))  # NTP is fresher
res.append(list(clock.now()) + [clock.source()])
emit(res)
""").value
    assert out[:4] == ["refused"] * 4 and out[4][1] == "U"
    assert out[5] is True and out[6][1:] == ["S", "backend"] and abs(out[6][0] - 1767225600) <= 1
    assert out[7] is True and abs(out[8] - 1767229200) <= 1
    assert out[9] is False and out[10][1:] == ["S", "ntp"] and abs(out[10][0] - 1767232800) <= 1


def test_config_time_section(mpy):
    out = mpy.run("""
from app import config
cfg = config.validate({})
errs = []
for bad in ({"ntp": "pool.ntp.org"}, {"ntp": ["host:0"]}, {"ntp": ["host:x"]}, {"ntp": [5]}, {"ntp": [""]},
            {"resync_s": 10}, {"retry_s": 0}, {"max_age_s": 1}, {"timeout_ms": 50}):
    try:
        config.validate({"time": bad})
        errs.append(None)
    except config.ConfigError as exc:
        errs.append(str(exc).split(":")[0])
ok = config.validate({"time": {"ntp": ["10.0.0.1", "ntp.example.com:1123"], "max_age_s": 3600}})["time"]
emit([cfg["time"], errs, ok])
""").value
    defaults, errs, ok = out
    assert defaults == {"ntp": None, "timeout_ms": 2000, "resync_s": 3600, "retry_s": 60, "max_age_s": 86400}
    assert errs == ["time.ntp"] * 5 + ["time.resync_s", "time.retry_s", "time.max_age_s", "time.timeout_ms"]
    assert ok["ntp"] == ["10.0.0.1", "ntp.example.com:1123"] and ok["max_age_s"] == 3600


def test_default_servers_per_board(mpy):
    out = mpy.run("""
from hal import sntp
emit([sntp.servers({"ntp": None}), sntp.servers({"ntp": None}, ()), sntp.servers({"ntp": []}),
      sntp.servers({"ntp": ["a", "b:5"]}, ())])
""").value
    assert out[0] == [[h, 123] for h in ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org")]  # the ESP32
    assert out[1] == [] and out[2] == []  # the host board: none unless configured; [] none anywhere
    assert out[3] == [["a", 123], ["b", 5]]


def test_task_resyncs_retries_and_quality_decays(mpy, sntp_server):
    """The SNTP task (sntp.run): a sync at once, S; the server falls silent: the resync after
    resync_s fails, and max_age_s after the last sync the quality is I; retries every retry_s;
    the server answers again: S. Device time runs 1000x (120 s of device time = 120 ms)."""
    srv = sntp_server("good")
    code = f"""
import asyncio, time
from hal import clock, sntp

async def main():
    cfg = {{"ntp": [{srv.addr!r}], "timeout_ms": 150, "resync_s": 2000, "retry_s": 300, "max_age_s": 1000}}
    clock.set_max_age(cfg["max_age_s"])
    task = asyncio.create_task(sntp.run(cfg, sntp.servers(cfg)))
    seen = []
    t0 = time.ticks_ms()
    while time.ticks_diff(time.ticks_ms(), t0) < 6000:
        q = clock.now()[1]
        if not seen or seen[-1][0] != q:
            seen.append([q, time.ticks_diff(time.ticks_ms(), t0)])
        await asyncio.sleep_ms(5)
        if len(seen) == 4:
            break
    task.cancel()
    emit(seen)

asyncio.run(main())
"""
    def drive() -> None:
        # S at once; silent from 0.5 s (real): the resync at 2 s fails, quality I after 1 s (max_age);
        # good again at 2.8 s: a retry (every 0.3 s + the 150 ms deadline) gets S back
        time.sleep(0.5)
        srv.mode = "silent"
        time.sleep(2.3)
        srv.mode = "good"

    t = threading.Thread(target=drive)
    t.start()
    seen = mpy.run(code, env={"EVC_CLOCK_SPEED": "1000"}).value
    t.join()
    assert [q for q, _ in seen] == ["U", "S", "I", "S"], seen
    assert seen[1][1] < 300  # the first sync right away
    assert 900 <= seen[2][1] <= 1300  # max_age_s (1000 s device = 1 s) after the sync
    assert 2150 < seen[3][1] < 4000, seen  # a retry after the failed resync, once the server is back
    assert len(srv.requests) >= 4  # boot sync, the failed resync, retries, the good one
