# The uplink as the charger sees it: one task (run) that keeps a broker connection, forwards
# journaled records, publishes status and events, and applies signed downlink documents;
# authorize() asks the backend about unknown tokens. Outages are the normal case: while
# offline everything waits in the journal and the event queue, and nothing here can stall
# the event loop (conn.py bounds every wait).
#
#   up = Uplink(cfg, dev, store, on_tariff, on_authlist, on_command, status_fn, state_dir,
#               link_up=link.up)  # hal/net.py: no connection attempt while the link is down
#   supervisor.spawn("uplink", up.run); ...; up.kick() after journaling a record
import random

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from micropython import const

from app import log
from hal import clock
from uplink import status as _status
from uplink.authreq import AuthRequests
from uplink.broker import parse_broker  # shared with app/config.py's check of uplink.broker
from uplink.conn import Conn
from uplink.downlink import Downlink
from uplink.forward import Forwarder

_IDLE_WAIT_MS = const(250)  # loop period with nothing to do: keepalive and timers
_INBOX = const(64)  # downlink documents waiting (bounded in bytes by one receive buffer)
_GATE_POLL_MS = const(5)
_LINK_POLL_MS = const(250)  # while the network link is down

# uplink config keys this part reads (cfg["uplink"]), with defaults for those config.py lacks
DEFAULTS = {
    "broker": None,
    "prefix": "evc",
    "user": None,
    "password": None,
    "ca": None,
    "cert": None,  # client certificate file (mqtts), with "key"
    "key": None,
    "keepalive_s": 30,
    "timeout_ms": 5000,  # DNS, connect, CONNACK/SUBACK, a stalled send
    "window": 32,  # records in flight before the backend's ack
    "resend_s": 30,  # records in flight with no ack for this long are sent again
    "backoff_min_ms": 1000,
    "backoff_max_ms": 60000,
    "status_s": 60,  # status is republished at most this often when it changed
    "max_doc_bytes": 8192,  # larger downlink documents are dropped unread (and reported); large ones go to flash
}


def tls_context(ca, cert=None, key=None):
    """Client TLS that verifies the broker against the CA file (the stdlib default verifies nothing)."""
    import ssl

    if not ca:
        raise ValueError("mqtts needs uplink.ca: the CA that signed the broker's certificate")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=_der_file(ca))
    if cert:
        ctx.load_cert_chain(_der_file(cert), _der_file(key))
    return ctx


def _der_file(path):
    # MicroPython's ssl takes DER bytes (mbedTLS wants PEM NUL-terminated); accept either on flash
    from binascii import a2b_base64

    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:  # the fault state shows this: name the file, not only the errno
        raise OSError("mqtts: cannot read %s (%s)" % (path, exc))
    if not data.startswith(b"-----BEGIN"):
        return data
    body = []
    for line in data.split(b"\n")[1:]:  # the first PEM block
        line = line.strip()
        if line.startswith(b"-----END"):
            break
        body.append(line)
    return a2b_base64(b"".join(body))


def backend_verifier(key_hex):
    """verify(compact) -> payload for documents signed by the pinned backend key."""
    from binascii import unhexlify

    from crypto import der, jws

    if not key_hex:
        raise ValueError("backend_key is not configured: downlink documents cannot be trusted")
    pub = der.parse_spki(unhexlify(key_hex))  # parsed once; verify() takes the point

    def verify(msg):  # bytes -> payload bytes; a document spooled to flash -> its payload file
        if hasattr(msg, "verify"):
            return msg.verify(pub)
        return jws.verify(msg, pub)

    return verify


class Uplink:
    def __init__(self, cfg, dev, store, on_tariff=None, on_authlist=None, on_command=None, status_fn=None,
                 state_dir="/flash", verify=None, ssl_ctx=None, link_up=None, room=None):
        ucfg = dict(DEFAULTS)
        ucfg.update(cfg.get("uplink") or {})
        self.cfg = ucfg
        self.dev = dev
        self.store = store
        self.status_fn = status_fn
        self.link_up = link_up or _always_up  # hal/net.py's Link.up: no broker without a network
        self.auth_timeout_ms = (cfg.get("auth") or {}).get("online_timeout_ms", 3000)
        prefix = ucfg["prefix"] + "/" + dev + "/"
        self._t = {k: (prefix + k).encode() for k in ("rec", "ack", "status", "evt", "auth/req", "auth/res",
                                                      "tariff", "authlist", "cmd")}
        self._subs = [self._t[k] for k in ("ack", "auth/res", "tariff", "authlist", "cmd")]
        self._kind = {self._t[k]: k for k in ("ack", "auth/res", "tariff", "authlist", "cmd")}
        self.forwarder = Forwarder(store, ucfg["window"], ucfg["resend_s"] * 1000, dev)
        self.events = _status.Events()
        self.auth = AuthRequests(dev)
        if verify is None:
            try:
                verify = backend_verifier(cfg.get("backend_key"))
            except ValueError as exc:
                log.error("uplink", str(exc))
                msg = str(exc)

                def verify(compact):
                    raise ValueError(msg)
        self.forwarder.verify = self.auth.verify = verify  # acks and auth answers: the same pinned key
        self.downlink = Downlink(dev, verify, state_dir + "/uplink.json",
                                 on_tariff or _refuse, on_authlist or _refuse, on_command or _refuse,
                                 self.events.add, _stage_dir(state_dir), ucfg["max_doc_bytes"], room=room)
        self._room = room  # room(need) -> bool: the journal's flash reserve (journal.room)
        from uplink.spool import clean

        clean(state_dir)  # spooled documents a reboot cut off
        self._inbox = []
        self._state_dir = state_dir
        self._spools = 0
        self._wake = asyncio.Event()
        self._status_dirty = True
        self._status_at = 0
        self.conn = None
        self.online = False
        self.connects = 0
        if ucfg["broker"]:
            host, port, tls = parse_broker(ucfg["broker"])
            if tls and ssl_ctx is None:
                ssl_ctx = tls_context(ucfg["ca"], ucfg["cert"], ucfg["key"])
            self.conn = Conn(host, port, "evc-" + dev, ucfg["keepalive_s"], ucfg["user"], ucfg["password"],
                             ssl_ctx if tls else None, ucfg["max_doc_bytes"], timeout_ms=ucfg["timeout_ms"],
                             on_message=self._on_message, on_stream=self._on_stream)
            self.conn.set_will(self._t["status"], _status.WILL)

    # -- what the rest of the charger calls --------------------------------------------
    def kick(self):
        """A record was journaled (or the status changed): send soon."""
        self._status_dirty = True
        self._wake.set()

    def event(self, name, **fields):
        """Queue an event for evc/<dev>/evt (rejected card, fault, ...)."""
        fields["evt"] = name
        self.events.add(fields)
        self._wake.set()

    async def authorize(self, token, timeout_ms=None):
        """Ask the backend about token; its signed answer, verified ({"ok": bool, ...}), or None (offline/no answer)."""
        if not self.online:
            return None
        return await self.auth.ask(self.conn.publish, self._t["auth/req"], token,
                                   timeout_ms or self.auth_timeout_ms)

    async def run(self):
        """Connect, serve, reconnect with exponential backoff and jitter; never returns."""
        if self.conn is None:
            log.warn("uplink", "no broker configured: records stay in the journal")
            while True:
                await clock.sleep_ms(60000)
        backoff = self.cfg["backoff_min_ms"]
        while True:
            if not self.link_up():
                while not self.link_up():  # no network: nothing to try, nothing to log
                    await clock.io_sleep_ms(_LINK_POLL_MS)
                backoff = self.cfg["backoff_min_ms"]  # a fresh link: connect at once
            try:
                await self.conn.open(self._subs)
                self.connects += 1
                backoff = self.cfg["backoff_min_ms"]
                log.info("uplink", "connected to %s:%d" % (self.conn.host, self.conn.port))
                await self._session()
            except OSError as exc:
                log.warn("uplink", "offline: %s" % (exc,))
            finally:
                self.online = False
                self.conn.close()
                self.auth.cancel_all()
            if not self.link_up():
                continue  # the link went: wait for it instead of backing off
            delay = backoff // 2 + random.getrandbits(16) % (backoff // 2 + 1)  # jitter: 50..100 %
            backoff = min(backoff * 2, self.cfg["backoff_max_ms"])
            await clock.io_sleep_ms(delay)  # reconnect backoff is network time

    # -- one connected session ---------------------------------------------------------
    async def _session(self):
        conn = self.conn
        self.forwarder.restart()
        self._status_dirty = True
        self._status_at = 0  # status goes out first thing on every connection
        self.online = True
        reader = asyncio.create_task(self._reader())
        try:
            while True:
                self._wake.clear()
                if not conn.connected:
                    raise OSError(conn.error or "connection lost")
                if not self.link_up():  # checked every _IDLE_WAIT_MS at most: no wait on a dead socket
                    raise OSError("network link down")
                await conn.keepalive()
                self._apply_downlinks()
                if self.forwarder.commit():
                    self._status_dirty = True
                await self._send_events()
                await self._send_status()
                if await self.forwarder.pump(conn.publish, self._t["rec"]):
                    await conn.flush()
                if not self._wake.is_set():
                    try:
                        await asyncio.wait_for_ms(self._wake.wait(), self.forwarder.wait_ms(_IDLE_WAIT_MS))
                    except asyncio.TimeoutError:
                        pass
        finally:
            reader.cancel()

    async def _reader(self):
        try:
            await self.conn.serve(self._caught_up)
        except OSError:
            pass  # conn.error says why; the session loop notices
        self._wake.set()

    async def _caught_up(self):
        # read no more while documents wait: the broker holds the rest (TCP back-pressure)
        while self._inbox and self.conn.connected:
            self._wake.set()
            await clock.io_sleep_ms(_GATE_POLL_MS)

    def _on_message(self, topic, msg, oversize):
        kind = self._kind.get(topic)
        if kind == "ack":
            if self.forwarder.on_ack(msg):
                self._wake.set()
        elif kind == "auth/res":
            self.auth.on_response(msg)
        elif kind is not None:
            if len(self._inbox) >= _INBOX:  # cannot happen with the gate; a guard all the same
                log.warn("uplink", "%s dropped: too many documents waiting" % kind)
                if hasattr(msg, "discard"):
                    msg.discard()
                self.events.add({"evt": "downlink-rejected", "doc": kind, "reason": "busy"})
            else:
                self._inbox.append((kind, msg, oversize))
            self._wake.set()

    def _on_stream(self, topic, size):
        # a document larger than the receive buffer: to flash as it arrives (uplink/spool.py);
        # two files in turn, as the one before may still wait in the inbox
        kind = self._kind.get(topic)
        if kind not in ("tariff", "authlist", "cmd"):
            return None
        from uplink.spool import open_spool

        self._spools += 1
        path = "%s/down%d.jws" % (self._state_dir, self._spools & 1)
        return open_spool(path, size, lambda spool: self._on_message(topic, spool, 0), self._room)

    def _apply_downlinks(self):
        while self._inbox:
            kind, msg, oversize = self._inbox.pop(0)
            try:
                if self.downlink.handle(kind, msg, oversize):
                    self._status_dirty = True
            except Exception as exc:  # e.g. flash full while saving: report, keep the link up
                log.exception("uplink", exc)
                self.events.add({"evt": "downlink-error", "doc": kind, "detail": str(exc)[:120]})
            finally:
                if hasattr(msg, "discard"):
                    msg.discard()

    async def _send_events(self):
        while len(self.events):
            await self.conn.publish(self._t["evt"], self.events.peek())
            self.events.pop()

    async def _send_status(self):
        now = clock.monotonic_ms()
        if not self._status_dirty:
            return
        if self._status_at and now - self._status_at < self.cfg["status_s"] * 1000 and self.forwarder.pending_count():
            return  # while a backlog drains, status goes out at most every status_s
        payload = _status.status_payload(self.status_fn, self.store, self.downlink.versions(), self.downlink.progress())
        await self.conn.publish(self._t["status"], payload, retain=True)
        self._status_dirty = False
        self._status_at = now


def _always_up():
    return True


def _refuse(*args):
    raise ValueError("no handler for this document on this charger")


def _stage_dir(state_dir):
    import os

    path = state_dir + "/alstage"
    try:
        os.mkdir(path)
    except OSError:
        pass  # exists
    return path
