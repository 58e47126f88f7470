# MQTT 3.1.1 packets for the uplink, on umqtt.simple.
#
# umqtt.simple blocks: connect() resolves and connects a blocking socket, wait_msg() sets the
# socket blocking, a QoS 1 publish waits for its PUBACK forever. So it never touches a socket
# here. Its MQTTClient runs over a _Wire: reads come from one complete, already received packet
# and writes go to an outbound buffer that conn.py sends without blocking. umqtt.simple parses
# incoming PUBLISH and PINGRESP packets and answers QoS 1 deliveries with PUBACK (wait_msg);
# the packets it would wait on (CONNECT/CONNACK, QoS 1 PUBLISH/PUBACK, SUBSCRIBE/SUBACK) are
# written and parsed here, so nothing ever waits inside it.
import struct

from micropython import const
from umqtt.simple import MQTTClient, MQTTException

CONNACK = const(0x20)
PUBLISH = const(0x30)
PUBACK = const(0x40)
SUBACK = const(0x90)
PINGRESP = const(0xD0)

_VARINT_MAX = const(4)


class ProtocolError(ValueError):
    """The broker sent something MQTT 3.1.1 does not allow here."""


class _Wire:
    """The socket umqtt.simple sees: one framed inbound packet and an outbound buffer."""

    def __init__(self, out_size):
        self.out = bytearray(out_size)
        self.out_len = 0
        self._pkt = None
        self._pos = 0
        self._end = 0

    def feed(self, mv):
        # mv: memoryview of exactly one complete packet
        self._pkt = mv
        self._pos = 0
        self._end = len(mv)

    def left(self):
        return self._end - self._pos

    def read(self, n):
        if self._pos >= self._end:
            return None  # what a non-blocking socket says: nothing waiting
        if self._pos + n > self._end:
            raise ProtocolError("packet shorter than its fields")
        b = bytes(self._pkt[self._pos:self._pos + n])
        self._pos += n
        return b

    def write(self, buf, n=None):
        if n is None:
            n = len(buf)
        end = self.out_len + n
        if end > len(self.out):
            raise OSError("uplink: outbound buffer full")
        self.out[self.out_len:end] = buf if n == len(buf) else memoryview(buf)[:n]
        self.out_len = end
        return n

    def setblocking(self, flag):
        pass


def frame_length(buf, n):
    """Length of the first packet in buf[:n] as (header_len, remaining_len), or None if incomplete."""
    if n < 2:
        return None
    rem = 0
    shift = 0
    i = 1
    while True:
        if i >= n:
            return None
        b = buf[i]
        rem |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return i, rem
        shift += 7
        if i > _VARINT_MAX:
            raise ProtocolError("remaining length longer than 4 bytes")


def _b(s):
    return s.encode() if isinstance(s, str) else s


class Codec(MQTTClient):
    """umqtt.simple's client on a _Wire: encodes our packets, parses the broker's."""

    def __init__(self, client_id, keepalive_s, user=None, password=None, out_size=4096):
        super().__init__(_b(client_id), "-", 1, _b(user), _b(password), keepalive_s)
        self.sock = _Wire(out_size)

    def _header(self, first, size):
        hdr = bytearray(5)
        hdr[0] = first
        i = 1
        while size > 0x7F:
            hdr[i] = (size & 0x7F) | 0x80
            size >>= 7
            i += 1
        hdr[i] = size
        self.sock.write(hdr, i + 1)

    def connect_packet(self):
        """CONNECT with clean session, keepalive, last will and credentials (umqtt's fields)."""
        flags = 0x02
        size = 10 + 2 + len(self.client_id)
        if self.user is not None:
            flags |= 0xC0
            size += 2 + len(self.user) + 2 + len(self.pswd)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos << 3) | (self.lw_retain << 5)
            size += 2 + len(self.lw_topic) + 2 + len(self.lw_msg)
        self._header(0x10, size)
        self.sock.write(b"\x00\x04MQTT\x04")
        self.sock.write(struct.pack("!BH", flags, self.keepalive))
        self._send_str(self.client_id)
        if self.lw_topic:
            self._send_str(self.lw_topic)
            self._send_str(self.lw_msg)
        if self.user is not None:
            self._send_str(self.user)
            self._send_str(self.pswd)

    def publish_packet(self, topic, msg, qos=1, retain=False):
        """PUBLISH without waiting for anything; returns the packet id (0 for QoS 0)."""
        pid = self.publish_head(topic, len(msg), qos, retain)
        self.sock.write(msg)
        return pid

    def publish_head(self, topic, msg_len, qos=1, retain=False):
        """A PUBLISH up to its payload (which the caller sends after it); returns the packet id."""
        size = 2 + len(topic) + msg_len + (2 if qos else 0)
        self._header(PUBLISH | qos << 1 | (1 if retain else 0), size)
        self._send_str(topic)
        pid = 0
        if qos:
            pid = self.next_pid()
            self.sock.write(struct.pack("!H", pid))
        return pid

    def subscribe_packet(self, topics, qos=1):
        pid = self.next_pid()
        size = 2
        for t in topics:
            size += 2 + len(t) + 1
        self._header(0x82, size)
        self.sock.write(struct.pack("!H", pid))
        q = bytes((qos,))
        for t in topics:
            self._send_str(t)
            self.sock.write(q)
        return pid

    def next_pid(self):
        self.pid = self.pid % 0xFFFF + 1  # 1..65535: 0 is not a valid packet id
        return self.pid

    def parse(self, mv):
        """Process one complete inbound packet; returns (op, value) for what umqtt left to us.

        PUBLISH goes to the callback set with set_callback() (umqtt answers QoS 1 with PUBACK);
        CONNACK returns its return code, PUBACK and SUBACK their packet id.
        """
        wire = self.sock
        wire.feed(mv)
        try:
            op = self.wait_msg()
        except (AssertionError, IndexError, TypeError) as exc:
            # umqtt.simple's answer to surprises (e.g. a QoS 2 delivery): a protocol error here
            raise ProtocolError("unexpected packet: %r" % (exc,))
        except MQTTException as exc:
            raise ProtocolError("mqtt: %r" % (exc,))
        # umqtt.simple 1.3.4 (PyPI) returns None after a delivered PUBLISH; the micropython-lib
        # version frozen into current firmware images returns its first byte (0x30-0x3F).
        if op is None or op & 0xF0 == PUBLISH:
            if wire.left():
                raise ProtocolError("trailing bytes after packet")
            return None, None
        rest = wire.read(wire.left()) or b""
        if op == CONNACK:
            if len(rest) != 3 or rest[0] != 2:
                raise ProtocolError("bad CONNACK")
            return CONNACK, rest[2]
        if op == PUBACK or op == SUBACK:
            if len(rest) < 3:
                raise ProtocolError("short ack")
            if op == SUBACK and 0x80 in rest[3:]:
                raise ProtocolError("broker refused a subscription")
            return op, rest[1] << 8 | rest[2]
        raise ProtocolError("unexpected packet type 0x%02x" % op)
