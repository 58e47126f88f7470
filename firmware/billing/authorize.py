# Who may charge: the decision for a tapped token.
#
# Order: master cards; the local list (blocked, expired and invalid entries always reject;
# prepaid cards need at least auth.prepaid_min available); the cache of the backend's signed
# online answers (until their expiry, judged with the device clock: not used while the time is
# unknown), with the contract and prepaid allowance they carried; then the policy for unknown
# tokens: reject, ask the backend (with a deadline, falling back to the offline rule when it does
# not answer), or accept offline under an energy/cost cap.
# A prepaid answer with "rsv": true is a reservation the backend holds for this device (named by
# its exp; docs/prepaid.md): it pays for one session. Its bal_seq is set here to the last record
# seq before the tap, so the ledger tells when a session has used it; a used reservation in the
# cache counts as no cache entry (the backend is asked for a new one).
from billing.authlist import STATUSES, Entry


class Decision:
    __slots__ = ("ok", "how", "reason", "contract", "available", "cap_wh", "cap_cost", "rsv")

    def __init__(self, ok, how=None, reason=None, contract=None, available=None, cap_wh=0, cap_cost=0, rsv=None):
        self.ok = ok
        self.how = how  # list | cache | online | offline | master (the record's `auth`)
        self.reason = reason  # why not, for the event and the driver's feedback
        self.contract = contract
        self.available = available  # prepaid: minor units the session may spend
        self.cap_wh = cap_wh  # 0: none
        self.cap_cost = cap_cost
        self.rsv = rsv  # the backend reservation paying for the session (its exp), else None

    def __repr__(self):
        return "Decision(%s, %s, %s)" % (self.ok, self.how, self.reason)


def reject(reason):
    return Decision(False, reason=reason)


class Authorizer:
    def __init__(self, authlist, cache, ledger, auth_cfg, ask_backend=None):
        self.list = authlist
        self.cache = cache
        self.ledger = ledger
        self.cfg = auth_cfg
        self.ask_backend = ask_backend  # async (token) -> the verified answer dict (uplink/authreq.py) or None

    def is_master(self, token):
        return token in self.cfg["master_tokens"]

    def _offline(self):
        cap_wh, cap_cost = self.cfg["offline_max_wh"], self.cfg["offline_max_cost"]
        if not cap_wh and not cap_cost:
            return reject("offline-not-allowed")
        return Decision(True, "offline", cap_wh=cap_wh, cap_cost=cap_cost)

    def _entry(self, entry, how, time_known, now):
        # a list entry or a cached/online decision (authlist.Entry) -> Decision
        if entry.status != "accepted":
            return reject(entry.status)
        if entry.expiry and time_known and now >= entry.expiry:
            return reject("expired")
        available = None
        if entry.balance is not None:
            available = entry.balance - self.ledger.spent_since(entry.token, entry.bal_seq)
            if available < max(1, self.cfg["prepaid_min"]):
                return reject("balance")
        return Decision(True, how, contract=entry.contract, available=available, rsv=entry.rsv)

    async def decide(self, token, now, time_known=True, seq=None):
        """seq: the seq the next record will have (the session's), when the caller knows it."""
        if self.is_master(token):
            return Decision(True, "master")
        entry = self.list.lookup(token)
        if entry is not None:
            return self._entry(entry, "list", time_known, now)
        if time_known:  # a cached decision expires by the device clock: with the time unknown it is not used
            cached = self.cache.lookup(token, now)
            if cached is not None and (cached.rsv is None or not self.ledger.used_since(token, cached.bal_seq)):
                return self._entry(cached, "cache", time_known, now)
        policy = self.cfg["unknown"]
        if policy == "online":
            if self.ask_backend is None:
                return self._offline()  # no uplink configured: the same as a backend that never answers
            answer = await self.ask_backend(token)
            if answer is not None:
                return self._online(token, answer, now if time_known else None, seq)
            return self._offline()  # the backend did not answer in time
        if policy == "offline":
            return self._offline()
        return reject("unknown")

    def _online(self, token, answer, now, seq=None):
        """The backend's verified answer (uplink/authreq.py checked signature, nonce, token and
        expiry): {"ok", "status", "contract", "exp", "allowance", "bal_seq", "rsv"}; cached until exp."""
        ok = answer.get("ok") is True
        status = answer.get("status")
        if status not in STATUSES:
            status = "accepted" if ok else "invalid"
        allowance = answer.get("allowance")
        if status == "accepted" and not ok and allowance is None:
            status = "invalid"  # refused without saying why: not a balance this device can track
        contract = answer.get("contract")
        reserved = answer.get("rsv") is True and ok and status == "accepted" and allowance is not None
        bal_seq = answer.get("bal_seq", 0)
        if reserved and seq:
            bal_seq = seq - 1  # every later spend of this token is a session on this reservation
        entry = Entry(token, status, 0, contract if isinstance(contract, str) else None, allowance, bal_seq)
        entry.rsv = answer["exp"] if reserved else None
        try:
            self.cache.put(token, status, answer["exp"], entry.contract, allowance, entry.bal_seq, now, reserved)
        except (ValueError, OSError) as exc:  # e.g. a contract id longer than a slot holds: decide, do not cache
            from app import log

            log.warn("auth", "online answer not cached: %s" % (exc,))
        return self._entry(entry, "online", False, now)
