# Wall time from the network: an SNTP client (RFC 4330, the client side of RFC 5905) and the
# backend's `time` command. Both end in clock.set_time(); nothing else sets the wall clock.
#
# SNTP: one 48-byte request (LI 0, VN 4, mode 3 client) to each server of `time.ntp` in turn
# (`host` or `host:port`, port 123), over a non-blocking UDP socket that waits in the asyncio
# poller; DNS through the uplink's resolver (a short thread with a deadline). One deadline
# (`time.timeout_ms`, wire time) covers the lookup and the answer. A reply counts only when
# it is 48+ bytes, mode 4 (server), version 3 or 4, leap indicator not 3 (server unsynchronized),
# stratum 1..15, transmit time non-zero, and its origin timestamp equals the transmit timestamp
# we sent (random low bits: a spoofed or late reply cannot match). Replies that fail the origin
# check (or are too short) are dropped and the wait goes on until the deadline; a reply that
# passes it but is otherwise bad (kiss-o'-death stratum 0, unsynchronized, wrong mode) ends the
# attempt with that server. Integers only: NTP seconds since 1900 (era 1 from 2036 on) minus
# 2208988800, fractions as integer milliseconds, half the round trip (less the server's hold
# time) added to the server's transmit time.
#
# The task syncs at boot, then every `time.resync_s`; after a round in which no server
# answered, again after `time.retry_s` (a warning for the 1st, 2nd, 4th, 8th... failed round in
# a row, the others on the console only: a charger without network must not fill its flash log
# with them). The clock's quality is S from a sync until
# `time.max_age_s` have passed (then I), U before any sync (hal/clock.py).
#
# The backend's `time` command (docs/protocol.md) carries the backend's epoch `t`; it sets the
# clock (S) unless an SNTP sync younger than time.max_age_s is in place (NTP is the better source).
import os
import socket

try:
    import asyncio
    from asyncio.stream import Stream
except ImportError:  # pragma: no cover
    import uasyncio as asyncio
    from uasyncio.stream import Stream

import board
from micropython import const

from app import log
from hal import clock

POOL = ("0.pool.ntp.org", "1.pool.ntp.org", "2.pool.ntp.org")  # time.ntp null (board default)
PORT = const(123)
NTP_DELTA = 2208988800  # 1900-01-01 to 1970-01-01 in seconds (not const: beyond a small int)
_ERA = 0x100000000  # NTP seconds wrap on 2036-02-07: below 2^31 means era 1
_LINK_POLL_MS = const(500)  # while the network link is down
_LEN = const(48)
_MAX_REPLY = const(128)  # 48 bytes, or more with extension fields / a MAC (ignored)


class Bad(ValueError):
    """A reply that is not the answer to our request (dropped, the wait goes on)."""


class Refused(ValueError):
    """The server's answer to our request, but unusable (the attempt with this server ends)."""


def parse_server(spec):
    """'host' or 'host:port' -> (host, port); raises ValueError."""
    if not isinstance(spec, str) or not spec:
        raise ValueError("server must be host or host:port, got %r" % (spec,))
    host, sep, port = spec.rpartition(":")
    if not sep:
        return spec, PORT
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("server must be host or host:port, got %r" % (spec,))
    return host, int(port)


def servers(cfg_time, board_default=None):
    """The configured server list as (host, port) pairs; null means the board's default."""
    spec = cfg_time.get("ntp")
    if spec is None:
        spec = POOL if board_default is None else board_default
    return [parse_server(s) for s in spec]


def request(origin):
    """The client's request carrying origin (8 bytes) as its transmit timestamp."""
    pkt = bytearray(_LEN)
    pkt[0] = 0x23  # LI 0, VN 4, mode 3 (client)
    pkt[40:48] = origin
    return pkt


def _u32(b, i):
    return int.from_bytes(b[i:i + 4], "big")


def _ms(frac):
    return (frac * 1000) >> 32  # a 32-bit binary fraction of a second as whole ms


def parse_reply(buf, origin):
    """Validate a reply to our request; returns (rx_s, rx_ms, tx_s, tx_ms) in NTP seconds.

    Raises Bad (not an answer to our request) or Refused (an answer that must not set the clock)."""
    if len(buf) < _LEN:
        raise Bad("short reply (%d bytes)" % len(buf))
    if bytes(buf[24:32]) != bytes(origin):
        raise Bad("origin timestamp is not ours (spoofed or late)")
    li, vn, mode = buf[0] >> 6, (buf[0] >> 3) & 7, buf[0] & 7
    stratum = buf[1]
    if mode != 4:
        raise Refused("mode %d, not a server reply" % mode)
    if vn not in (3, 4):
        raise Refused("version %d" % vn)
    if stratum == 0:  # kiss-o'-death: the reference id carries a code (RATE, DENY, RSTR...)
        raise Refused("kiss-o'-death %s" % "".join(chr(c) if 32 < c < 127 else "?" for c in buf[12:16]))
    if stratum > 15:
        raise Refused("stratum %d" % stratum)
    if li == 3:
        raise Refused("server not synchronized (leap indicator 3)")
    tx_s, tx_f = _u32(buf, 40), _u32(buf, 44)
    if not tx_s and not tx_f:
        raise Refused("transmit timestamp zero")
    rx_s, rx_f = _u32(buf, 32), _u32(buf, 36)
    return rx_s, _ms(rx_f), tx_s, _ms(tx_f)


def to_unix(ntp_s):
    """NTP seconds (32 bits) to Unix epoch seconds, era 0 or 1 (RFC 4330 section 3)."""
    if ntp_s < 0x80000000:
        ntp_s += _ERA
    return ntp_s - NTP_DELTA


def reply_time(reply, rtt_ms):
    """(epoch s, ms) at the moment the reply arrived: the server's transmit time plus half the
    network delay (the round trip less the time the server held the request)."""
    rx_s, rx_ms, tx_s, tx_ms = reply
    hold = ((tx_s - rx_s) & 0xFFFFFFFF) * 1000 + tx_ms - rx_ms
    if rx_s == 0 or hold < 0 or hold > rtt_ms:
        hold = 0  # a server that leaves receive time out (or a nonsense one): assume no hold
    total = to_unix(tx_s) * 1000 + tx_ms + (rtt_ms - hold) // 2
    return total // 1000, total % 1000


def _origin():
    # The transmit timestamp is only a nonce to us (RFC 4330 lets a client put anything there):
    # 64 random bits, so no-one who did not see the request can forge its answer.
    return os.urandom(8)


async def _lookup(host, port, at):
    from uplink import conn  # the uplink's resolver: IP literals directly, names on a thread

    left = at - clock.io_ms()
    if left <= 0:
        raise OSError("dns: no time left")
    return (await conn.resolve(host, port, left))[-1]


async def query(host, port=PORT, timeout_ms=2000):
    """One SNTP exchange: ((epoch s, ms), rtt_ms). Raises OSError (no answer in time) or Refused."""
    at = clock.io_deadline(timeout_ms)
    addr = await _lookup(host, port, at)
    origin = _origin()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        stream = Stream(sock)  # waits in the asyncio poller: the reply is taken the moment it lands
        sent = clock.io_ms()
        sock.sendto(request(origin), addr)
        why = "no answer"
        while True:
            left = at - clock.io_ms()
            try:
                if left <= 0:
                    raise asyncio.TimeoutError
                buf = await asyncio.wait_for_ms(stream.read(_MAX_REPLY), left)  # one datagram
            except asyncio.TimeoutError:
                raise OSError("%s within %d ms" % (why, timeout_ms))
            got = clock.io_ms()
            try:
                return reply_time(parse_reply(buf, origin), got - sent), got - sent
            except Bad as exc:
                why = str(exc)  # not the answer to our request: keep waiting for the real one
    finally:
        sock.close()


async def sync(servers, timeout_ms, loud=True):
    """Try each server in turn until one answers; set the clock. Returns the server or None."""
    problems = []
    for host, port in servers:
        try:
            (epoch, ms), rtt = await query(host, port, timeout_ms)
            before, q = clock.now()
            clock.set_time(epoch, "S", ms, "ntp")
            log.info("time", "synced from %s:%d (rtt %d ms): %d, was %d (%s)" % (host, port, rtt, epoch, before, q))
            return "%s:%d" % (host, port)
        except Exception as exc:  # OSError, Refused, an implausible time: the next server
            problems.append("%s:%d %s" % (host, port, exc))
    if problems:
        (log.warn if loud else log.info)("time", "no SNTP server answered: %s" % "; ".join(problems))
    return None


async def run(cfg_time, servers, link_up=None):
    """The SNTP task: sync now, then every resync_s, retrying every retry_s while none answers.
    link_up (hal/net.py): no query while the network link is down, the first one as it comes up."""
    fails = 0
    while True:
        while link_up is not None and not link_up():
            await clock.io_sleep_ms(_LINK_POLL_MS)
        ok = await sync(servers, cfg_time["timeout_ms"], fails & (fails + 1) == 0)  # 1st, 2nd, 4th... failure
        fails = 0 if ok else fails + 1
        await clock.sleep_ms((cfg_time["resync_s"] if ok else cfg_time["retry_s"]) * 1000)


def start(sup, cfg_time, link_up=None):
    """From the composition root: apply time.max_age_s, spawn the SNTP task when servers are set."""
    clock.set_max_age(cfg_time["max_age_s"])
    targets = servers(cfg_time, getattr(board, "NTP_DEFAULT", None))
    if not targets:
        log.info("time", "no SNTP servers (time.ntp): the time comes from the backend")
        return None
    return sup.spawn("sntp", lambda: run(cfg_time, targets, link_up), vital=False)


def from_backend(doc):
    """The backend's `time` command: {"t": epoch s, ...}. Returns True when the clock was set.

    Raises ValueError on a malformed command (the downlink reports it `invalid`)."""
    t = doc.get("t")
    if not isinstance(t, int) or isinstance(t, bool):
        raise ValueError("time command needs t (epoch s)")
    if t > doc.get("exp", t):
        raise ValueError("t %d after the command's expiry" % t)
    before, q = clock.now()
    if clock.source() == "ntp" and q == "S":  # synced by SNTP within time.max_age_s
        log.info("time", "backend time %d ignored: SNTP sync %d s ago" % (t, clock.sync_age_ms() // 1000))
        return False
    clock.set_time(t, "S", 0, "backend")  # raises ValueError on an implausible t
    log.info("time", "set from the backend: %d, was %d (%s)" % (t, before, q))
    return True
