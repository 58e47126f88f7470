# Online authorization of tokens the local list does not know: {"id", "token"} on auth/req,
# the backend answers {"id", "ok", ...} on auth/res. Every request has a deadline; no answer
# in time (or no connection) means None, and the caller falls back to its offline policy.
import json
import random

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from micropython import const

from app import log

_MAX_WAITING = const(4)
_RES_MAX_BYTES = const(1024)


class AuthRequests:
    def __init__(self):
        self._boot = "%04x" % random.getrandbits(16)  # ids stay unique across reboots in practice
        self._n = 0
        self._waiting = {}  # id -> [Event, answer]
        self.late = 0

    async def ask(self, publish, topic, token, timeout_ms):
        """Publish a request and wait for its answer; the answer dict, or None at the deadline."""
        if not isinstance(token, str) or not 0 < len(token) <= 64:
            raise ValueError("token must be a short string")
        if len(self._waiting) >= _MAX_WAITING:
            log.warn("auth", "too many requests waiting; answering offline")
            return None
        self._n += 1
        rid = "%s-%d" % (self._boot, self._n)
        slot = [asyncio.Event(), None]
        self._waiting[rid] = slot
        try:
            await asyncio.wait_for_ms(self._send_and_wait(publish, topic, rid, token, slot), timeout_ms)
        except asyncio.TimeoutError:
            log.warn("auth", "no answer to %s within %d ms" % (rid, timeout_ms))
        except OSError as exc:
            log.warn("auth", "request %s not sent: %s" % (rid, exc))
        finally:
            self._waiting.pop(rid, None)
        return slot[1]

    async def _send_and_wait(self, publish, topic, rid, token, slot):
        await publish(topic, json.dumps({"id": rid, "token": token}).encode())
        await slot[0].wait()

    def on_response(self, msg):
        """An auth/res payload from the receive path; unknown or late ids are dropped."""
        doc = None
        if len(msg) <= _RES_MAX_BYTES:
            try:
                doc = json.loads(msg)
            except (ValueError, TypeError):
                doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("ok"), bool):
            log.warn("auth", "malformed answer ignored")
            return False
        slot = self._waiting.get(doc.get("id"))
        if slot is None or slot[1] is not None:
            self.late += 1
            return False
        slot[1] = doc
        slot[0].set()
        return True

    def cancel_all(self):
        """Connection lost: waiting requests end now, without an answer."""
        for slot in self._waiting.values():
            slot[0].set()
