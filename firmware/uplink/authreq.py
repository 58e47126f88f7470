# Online authorization of tokens the local list does not know: {"nonce", "token"} on auth/req,
# the backend answers on auth/res with a JWS (ES256, the pinned backend key) of
# {"type": "auth", "dev", "nonce", "token", "ok", "status", "contract", "exp", "allowance", "bal_seq", "rsv"}
# (rsv true: the allowance is a reservation the backend holds for this device; docs/prepaid.md).
# An answer counts only when the signature verifies and it names this device, the request's
# nonce (64 fresh random bits per request) and token, and has not expired (exp judged with the
# device clock when its time is known). Every request has a deadline; no valid answer in time
# (or no connection) means None, and the caller falls back to its offline policy.
#
# The receive path only reads the nonce an answer claims and hands it to the waiting request;
# the request's own task verifies it (a tap waits for it anyway), at most _MAX_CHECKS per request.
import json
import os

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio

from micropython import const

from app import log
from hal import clock

_MAX_WAITING = const(4)
_RES_MAX_BYTES = const(1024)
_MAX_CHECKS = const(3)  # answers verified per request: forged ones cannot make a tap verify forever
_QUEUED = const(2)  # answers waiting to be verified per request


class AuthRequests:
    def __init__(self, dev=None, verify=None, now=None):
        self.dev = dev
        self.verify = verify  # compact JWS -> payload bytes by the pinned backend key; raises if not genuine
        self.now = now or clock.now
        self._waiting = {}  # nonce -> [Event, [raw answers to verify], done]
        self.late = 0
        self.rejected = 0  # answers that failed verification: forged, replayed, expired, another token

    async def ask(self, publish, topic, token, timeout_ms):
        """Publish a request and wait for a valid answer; the answer dict, or None at the deadline."""
        if not isinstance(token, str) or not 0 < len(token) <= 64:
            raise ValueError("token must be a short string")
        if len(self._waiting) >= _MAX_WAITING:
            log.warn("auth", "too many requests waiting; answering offline")
            return None
        nonce = _nonce()
        slot = [asyncio.Event(), [], False]
        self._waiting[nonce] = slot
        answer = None
        try:
            answer = await asyncio.wait_for_ms(self._send_and_wait(publish, topic, nonce, token, slot), timeout_ms)
        except asyncio.TimeoutError:
            log.warn("auth", "no valid answer to %s within %d ms" % (nonce, timeout_ms))
        except OSError as exc:
            log.warn("auth", "request %s not sent: %s" % (nonce, exc))
        finally:
            self._waiting.pop(nonce, None)
        return answer

    async def _send_and_wait(self, publish, topic, nonce, token, slot):
        await publish(topic, json.dumps({"nonce": nonce, "token": token}).encode())
        checks = 0
        while True:
            await slot[0].wait()
            slot[0].clear()
            if slot[2]:
                return None  # connection lost
            while slot[1] and checks < _MAX_CHECKS:
                checks += 1
                doc = self._check(slot[1].pop(0), nonce, token)
                if doc is not None:
                    return doc
            slot[1] = []  # past _MAX_CHECKS: the rest is not looked at; the deadline ends the wait

    def _check(self, raw, nonce, token):
        """The answer's payload when genuine and for this request, else None (counted, logged)."""
        why = None
        doc = None
        try:
            if self.verify is None:
                raise ValueError("no backend key")
            doc = json.loads(self.verify(raw))
        except Exception as exc:  # not a JWS, bad signature, wrong key, not JSON
            why = "signature (%s)" % (exc,)
        if why is None:
            why = _why_not(doc, self.dev, nonce, token, self.now())
        if why is None:
            return doc
        self.rejected += 1
        log.warn("auth", "answer to %s ignored: %s" % (nonce, why))
        return None

    def on_response(self, msg):
        """An auth/res payload from the receive path: queued for the request whose nonce it
        claims (verified there); unknown nonces, late and malformed answers are dropped."""
        nonce = _claimed_nonce(msg) if len(msg) <= _RES_MAX_BYTES else None
        if nonce is None:
            log.warn("auth", "malformed answer ignored")
            return False
        slot = self._waiting.get(nonce)
        if slot is None or len(slot[1]) >= _QUEUED:
            self.late += 1
            return False
        slot[1].append(bytes(msg))
        slot[0].set()
        return True

    def cancel_all(self):
        """Connection lost: waiting requests end now, without an answer."""
        for slot in self._waiting.values():
            slot[2] = True
            slot[0].set()


def _nonce():
    from binascii import hexlify

    return hexlify(os.urandom(8)).decode()


def _int(v, lo=0):
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _why_not(doc, dev, nonce, token, now):
    if not isinstance(doc, dict) or doc.get("type") != "auth" or not isinstance(doc.get("ok"), bool):
        return "malformed"
    if doc.get("dev") != dev:
        return "for device %r" % (doc.get("dev"),)
    if doc.get("nonce") != nonce:
        return "another request's answer"
    if doc.get("token") != token:
        return "another token's answer"
    exp = doc.get("exp")
    if not _int(exp, 1):
        return "malformed exp"
    t, quality = now
    if quality != "U" and t >= exp:
        return "expired at %d (now %d)" % (exp, t)  # with the time unknown the fresh nonce vouches for it
    contract = doc.get("contract")
    allowance = doc.get("allowance")
    if contract is not None and not isinstance(contract, str):
        return "malformed contract"
    if allowance is not None and not (isinstance(allowance, int) and not isinstance(allowance, bool)):
        return "malformed allowance"
    if not _int(doc.get("bal_seq", 0)):
        return "malformed bal_seq"
    if doc.get("rsv") is not None and not isinstance(doc.get("rsv"), bool):
        return "malformed rsv"
    return None


def _claimed_nonce(msg):
    # the nonce an answer claims, read without checking the signature (only to find its request)
    from crypto import jws

    doc = jws.claimed(msg)
    nonce = doc.get("nonce") if doc is not None else None
    return nonce if isinstance(nonce, str) else None
