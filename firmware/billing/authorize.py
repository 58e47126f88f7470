# Who may charge: the decision for a tapped token.
#
# Order: master cards; the local list (blocked, expired and invalid entries always reject;
# prepaid cards need at least auth.prepaid_min available); the cache of online answers; then
# the policy for unknown tokens: reject, ask the backend (with a deadline, falling back to the
# offline rule when it does not answer), or accept offline under an energy/cost cap.


class Decision:
    __slots__ = ("ok", "how", "reason", "contract", "available", "cap_wh", "cap_cost")

    def __init__(self, ok, how=None, reason=None, contract=None, available=None, cap_wh=0, cap_cost=0):
        self.ok = ok
        self.how = how  # list | cache | online | offline | master (the record's `auth`)
        self.reason = reason  # why not, for the event and the driver's feedback
        self.contract = contract
        self.available = available  # prepaid: minor units the session may spend
        self.cap_wh = cap_wh  # 0: none
        self.cap_cost = cap_cost

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
        self.ask_backend = ask_backend  # async (token) -> {"ok", "status"?, "contract"?} or None (no answer)

    def is_master(self, token):
        return token in self.cfg["master_tokens"]

    def _offline(self):
        cap_wh, cap_cost = self.cfg["offline_max_wh"], self.cfg["offline_max_cost"]
        if not cap_wh and not cap_cost:
            return reject("offline-not-allowed")
        return Decision(True, "offline", cap_wh=cap_wh, cap_cost=cap_cost)

    async def decide(self, token, now, time_known=True):
        if self.is_master(token):
            return Decision(True, "master")
        entry = self.list.lookup(token)
        if entry is not None:
            if entry.status != "accepted":
                return reject(entry.status)
            if entry.expiry and time_known and now >= entry.expiry:
                return reject("expired")
            available = None
            if entry.balance is not None:
                available = entry.balance - self.ledger.spent_since(token, entry.bal_seq)
                if available < max(1, self.cfg["prepaid_min"]):
                    return reject("balance")
            return Decision(True, "list", contract=entry.contract, available=available)
        cached = self.cache.lookup(token)
        if cached is not None:
            return Decision(True, "cache") if cached == "accepted" else reject(cached)
        policy = self.cfg["unknown"]
        if policy == "online":
            if self.ask_backend is None:
                return self._offline()  # no uplink configured: the same as a backend that never answers
            answer = await self.ask_backend(token)
            if answer is not None:
                # the backend answers {"ok": bool} and may say why ("status") and the contract
                status = answer.get("status")
                if status not in ("accepted", "blocked", "expired", "invalid"):
                    status = "accepted" if answer.get("ok") is True else "invalid"
                self.cache.put(token, status, now)
                if status == "accepted":
                    contract = answer.get("contract")
                    return Decision(True, "online", contract=contract if isinstance(contract, str) else None)
                return reject(status)
            return self._offline()  # the backend did not answer in time
        if policy == "offline":
            return self._offline()
        return reject("unknown")
