# One MQTT connection to the broker that never blocks the event loop.
#
# Every step has a deadline: DNS runs on a short-lived thread (getaddrinfo blocks on every
# port), the TCP connect and the TLS handshake are non-blocking and wait in the asyncio
# poller, CONNACK/SUBACK have a deadline, writes drain under a deadline, and a link that
# stops answering pings is dropped. Any failure closes the connection with OSError; the
# caller (service.py) reconnects with backoff. Packets: mqtt.py (umqtt.simple).
import errno
import socket

try:
    import asyncio
    from asyncio.stream import Stream
except ImportError:  # pragma: no cover
    import uasyncio as asyncio
    from uasyncio.stream import Stream

from micropython import const

from hal import clock
from uplink import mqtt

_IPPROTO_TCP = const(6)  # the same numbers on Linux and lwIP; the unix port has no names for them
_TCP_NODELAY = const(1)
_DNS_POLL_MS = const(20)
_IN_BYTES = const(1536)  # receive buffer: acks, answers, commands; larger PUBLISH payloads stream to a sink
_DIRECT_CHUNK = const(1024)  # a payload larger than the outbound buffer goes out in pieces this size
_FLASH_PIECE = const(512)  # a journaled record is read from flash and sent in pieces this size


def _is_ip(host):
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() and int(p) < 256 for p in parts)


_dns_busy = [False]


def _dns_thread(host, port, box):
    try:
        box.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0])
    except Exception as exc:  # handed to the waiting coroutine
        box.append(exc)
    _dns_busy[0] = False


async def resolve(host, port, timeout_ms):
    """getaddrinfo without blocking the loop: IP literals directly, names on a thread."""
    if _is_ip(host):
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    try:
        import _thread
    except ImportError:  # pragma: no cover - a port without threads: blocking, but bounded by the OS
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    at = clock.io_deadline(timeout_ms)
    while _dns_busy[0]:  # one lookup thread at a time (the uplink's, the SNTP client's)
        if clock.io_expired(at):
            raise OSError("dns: another lookup still running; %s not tried" % host)
        await clock.io_sleep_ms(_DNS_POLL_MS)
    box = []
    _dns_busy[0] = True
    _thread.start_new_thread(_dns_thread, (host, port, box))
    while not box:
        if clock.io_expired(at):
            raise OSError("dns: no answer for %s within %d ms" % (host, timeout_ms))
        await clock.io_sleep_ms(_DNS_POLL_MS)
    if isinstance(box[0], Exception):
        raise OSError("dns: %s: %s" % (host, box[0]))
    return box[0]


class Conn:
    """A broker connection: open(), then serve() receives; publish() sends; close()."""

    def __init__(self, host, port, client_id, keepalive_s=30, user=None, password=None, ssl_ctx=None,
                 max_packet=8192, out_size=1024, timeout_ms=5000, on_message=None, on_stream=None):
        self.host = host
        self.port = port
        self.ssl_ctx = ssl_ctx
        self.keepalive_ms = keepalive_s * 1000
        self.timeout_ms = timeout_ms
        self.max_packet = max_packet  # the largest PUBLISH payload streamed to a sink; larger are dropped
        self.codec = mqtt.Codec(client_id, keepalive_s, user, password, out_size)
        self.codec.set_callback(self._on_publish)
        self.on_message = on_message  # f(topic bytes, msg bytes, oversize int): 0 or the size dropped
        # f(topic bytes, size) -> a sink (write(mv), end() -> complete) for a PUBLISH payload larger
        # than the receive buffer, or None to drop it; a complete one is acked after end()
        self.on_stream = on_stream
        self._in = bytearray(_IN_BYTES)
        self._in_len = 0
        self._skip = 0  # bytes of a large PUBLISH payload still to come (to the sink, or thrown away)
        self._sink = None
        self._sink_pid = 0
        self._piece = bytearray(_FLASH_PIECE)
        self._stream = None
        self._lock = asyncio.Lock()
        self._acks = {}  # packet id -> result, for the packets open() waits on
        self.connected = False
        self.last_rx = 0
        self.last_tx = 0
        self._ping_at = 0
        self.error = None

    def set_will(self, topic, msg):
        self.codec.set_last_will(topic, msg, retain=True, qos=1)

    async def open(self, subscriptions):
        """Connect, CONNECT, subscribe; raises OSError (connection closed) on any failure."""
        self.close()
        self._in_len = 0
        self._skip = 0
        self._end_sink()
        self._acks = {}
        self.error = None
        try:
            ai = await resolve(self.host, self.port, self.timeout_ms)
            sock = socket.socket(ai[0], ai[1], ai[2])
            try:
                # no Nagle: each record would otherwise wait for the TCP ack of the one before
                sock.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
            except OSError:
                pass
            sock.setblocking(False)
            try:
                sock.connect(ai[-1])
            except OSError as exc:
                if exc.args[0] != errno.EINPROGRESS:  # by name: the ESP32's newlib says 119, Linux 115
                    sock.close()
                    raise
            if self.ssl_ctx is not None:
                # handshake happens inside the first non-blocking reads and writes
                sock = self.ssl_ctx.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
                sock.setblocking(False)
            self._stream = Stream(sock)
            self.last_rx = self.last_tx = clock.io_ms()
            self._ping_at = 0
            self.codec.connect_packet()
            await self._flush()
            code = await self._await_ack(mqtt.CONNACK, None, "CONNACK")
            if code != 0:
                raise OSError("broker refused the connection: code %d" % code)
            self.connected = True
            if subscriptions:
                pid = self.codec.subscribe_packet(subscriptions)
                await self._flush()
                await self._await_ack(mqtt.SUBACK, pid, "SUBACK")
        except Exception as exc:
            self.close(exc)
            raise OSError("connect %s:%d: %s" % (self.host, self.port, exc))

    async def _await_ack(self, op, pid, what):
        # before serve() runs: read packets here until the one we wait for, under a deadline
        at = clock.io_deadline(self.timeout_ms)
        key = (op, pid)
        while key not in self._acks:
            left = at - clock.io_ms()
            if left <= 0:
                raise OSError("no %s within %d ms" % (what, self.timeout_ms))
            try:
                await asyncio.wait_for_ms(self._receive(), left)
            except asyncio.TimeoutError:
                raise OSError("no %s within %d ms" % (what, self.timeout_ms))
        return self._acks.pop(key)

    async def serve(self, gate=None):
        """Receive and dispatch until the connection fails (raises OSError).

        gate: awaited between reads, so a consumer can stop reading until it has caught up
        (back-pressure through TCP instead of dropping messages).
        """
        while True:
            await self._receive()
            if gate is not None:
                await gate()

    async def _receive(self):
        stream = self._stream
        if stream is None:
            raise OSError("not connected")
        mv = memoryview(self._in)
        try:
            n = await stream.readinto(mv[self._in_len:])
        except Exception as exc:
            self.close(exc)
            raise OSError("receive: %s" % (exc,))
        if not n:
            self.close("closed by broker")
            raise OSError("connection closed by broker")
        self.last_rx = clock.io_ms()
        self._ping_at = 0
        self._in_len += n
        try:
            self._dispatch(mv)
        except mqtt.ProtocolError as exc:
            self.close(exc)
            raise OSError("protocol: %s" % exc)
        if self.codec.sock.out_len:  # PUBACKs umqtt wrote for QoS 1 deliveries
            await self.flush()

    def _dispatch(self, mv):
        pos = 0
        end = self._in_len
        while pos < end:
            if self._skip:
                k = min(self._skip, end - pos)
                if self._sink is not None:
                    self._sink.write(mv[pos:pos + k])
                self._skip -= k
                pos += k
                if not self._skip:
                    self._end_sink()
                continue
            fl = mqtt.frame_length(mv[pos:end], end - pos)
            if fl is None:
                break
            hl, rem = fl
            total = hl + rem
            if total > len(self._in):
                if mv[pos] & 0xF0 != mqtt.PUBLISH:
                    raise mqtt.ProtocolError("oversized packet 0x%02x (%d bytes)" % (mv[pos], total))
                pos = self._oversized(mv, pos, end, hl, rem)
                if pos < 0:
                    pos = -pos
                    break
                continue
            if end - pos < total:
                break
            op, val = self.codec.parse(mv[pos:pos + total])
            pos += total
            if op == mqtt.CONNACK:
                self._acks[(op, None)] = val
            elif op == mqtt.SUBACK:
                self._acks[(op, val)] = True
            # PUBACK: the broker has our record; delivery counts only on the backend's ack
        rest = end - pos
        if rest and pos:
            self._in[0:rest] = bytes(mv[pos:end])
        self._in_len = rest

    def _oversized(self, mv, pos, end, hl, rem):
        # Keep the topic and packet id, then hand the payload to a sink piece by piece as it
        # arrives (acked when complete), or throw it away (acked now, reported); returns the
        # new position, negated when more bytes are needed first.
        if end - pos < hl + 2:
            return -pos
        tlen = mv[pos + hl] << 8 | mv[pos + hl + 1]
        qos = (mv[pos] >> 1) & 3
        need = hl + 2 + tlen + (2 if qos else 0)
        if need > len(self._in) - 1:
            raise mqtt.ProtocolError("topic too long")
        if end - pos < need:
            return -pos
        topic = bytes(mv[pos + hl + 2:pos + hl + 2 + tlen])
        if qos > 1:
            raise mqtt.ProtocolError("QoS 2 delivery")
        pid = mv[pos + need - 2] << 8 | mv[pos + need - 1] if qos else 0
        self._skip = size = hl + rem - need
        sink = None
        if size <= self.max_packet and self.on_stream is not None:
            sink = self.on_stream(topic, size)
        if sink is None:
            self._ack(pid)
            if self.on_message is not None:
                self.on_message(topic, b"", hl + rem)
        else:
            self._sink, self._sink_pid = sink, pid
            if not size:
                self._end_sink()
        return pos + need

    def _ack(self, pid):
        if pid:
            self.codec.sock.write(bytes((mqtt.PUBACK, 2, pid >> 8, pid & 0xFF)))

    def _end_sink(self):
        # the payload has gone by: acked now (the broker may forget it), whatever the sink made
        # of it; or the link broke first and the sink learns it is incomplete
        sink = self._sink
        if sink is None:
            return
        self._sink = None
        if sink.end() and self._stream is not None:
            self._ack(self._sink_pid)

    def _on_publish(self, topic, msg):
        if self.on_message is not None:
            self.on_message(topic, msg or b"", 0)

    async def publish(self, topic, msg, qos=1, retain=False, flush=True):
        """Send one PUBLISH (no wait for PUBACK); raises OSError and closes on failure.

        flush=False leaves it in the outbound buffer to go with the next ones (flush() sends).
        """
        if not self.connected:
            raise OSError("not connected")
        if hasattr(msg, "readinto"):
            return await self._publish_from_flash(topic, msg, qos, retain)
        wire = self.codec.sock
        need = len(topic) + len(msg) + 9  # header, lengths, packet id
        async with self._lock:
            if wire.out_len + need > len(wire.out):
                await self._flush()
            if need <= len(wire.out):
                self.codec.publish_packet(topic, msg, qos, retain)
                if flush:
                    await self._flush()
                return
            # larger than the outbound buffer: the head from it, the payload straight from msg
            self.codec.publish_head(topic, len(msg), qos, retain)
            await self._flush()
            mv = memoryview(msg)
            for i in range(0, len(mv), _DIRECT_CHUNK):
                await self._send(mv[i:i + _DIRECT_CHUNK])

    async def _publish_from_flash(self, topic, rec, qos, retain):
        # a journaled record (journal.OnFlash or crec.Reader): the head from the outbound buffer,
        # then the record as the journal reads it from flash, in pieces into a small buffer of our
        # own, sent straight (PUBACKs the reader writes meanwhile wait in the outbound buffer,
        # after this packet). The reader opens the file only within each readinto: the journal
        # appends to it between awaits.
        mv = memoryview(self._piece)
        async with self._lock:
            if self.codec.sock.out_len + len(topic) + 9 > len(self.codec.sock.out):
                await self._flush()
            n = len(rec)
            self.codec.publish_head(topic, n, qos, retain)
            await self._flush()
            while n > 0:
                try:
                    got = rec.readinto(mv[:min(_FLASH_PIECE, n)])
                except (OSError, ValueError) as e:  # half a packet went out: the stream is lost
                    got = 0
                    why = e
                else:
                    why = "record ends early on flash"
                if not got:
                    self.close("record unreadable on flash")
                    raise OSError("record unreadable on flash: %s" % (why,))
                await self._send(mv[:got])
                n -= got

    async def flush(self):
        async with self._lock:
            await self._flush()

    async def _flush(self):
        wire = self.codec.sock
        stream = self._stream
        if stream is None:
            wire.out_len = 0
            raise OSError("not connected")
        n = wire.out_len
        if not n:
            return
        wire.out_len = 0
        await self._send(memoryview(wire.out)[:n])

    async def _send(self, mv):
        stream = self._stream
        if stream is None:
            raise OSError("not connected")
        try:
            stream.write(mv)  # the stream copies whatever it could not send yet
            await asyncio.wait_for_ms(stream.drain(), self.timeout_ms)
        except Exception as exc:
            self.close(exc)
            raise OSError("send stalled or failed: %r" % (exc,))
        self.last_tx = clock.io_ms()

    async def keepalive(self):
        """Ping when idle; drop a link that stops answering. Call every few hundred ms."""
        if not self.connected:
            return
        now = clock.io_ms()
        idle = now - self.last_rx
        if self._ping_at and now - self._ping_at > self.keepalive_ms // 2:
            self.close("no answer to ping")
            raise OSError("keepalive: broker silent for %d ms" % idle)
        if not self._ping_at and (idle > self.keepalive_ms // 2 or now - self.last_tx > self.keepalive_ms // 2):
            self._ping_at = now
            async with self._lock:
                self.codec.ping()
                await self._flush()

    def close(self, why=None):
        if why is not None and self.error is None:
            self.error = why
        self.connected = False
        stream = self._stream
        self._stream = None
        self.codec.sock.out_len = 0
        self._end_sink()
        if stream is not None:
            try:
                stream.s.close()
            except Exception:
                pass
