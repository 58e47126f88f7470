# Ad-hoc payment: the one-time code on the idle screen's payment link, and the backend's signed
# start command that follows a confirmed card hold (docs/payments.md).
#
# The code is fresh per idle period: made at boot, again when a start command consumes it and
# when a session ends. The retained status carries it ("pay") so the backend can check what a
# driver's phone brings; a start command names it, and one naming any other code (a photo of an
# old screen, a command that crossed a new session) starts nothing. Replayed and expired
# commands never get here: uplink/downlink.py refuses them by id and expiry.
import os

from micropython import const

from billing.authorize import Decision

_CODE_BYTES = const(5)  # 40 bits, 8 base32 characters: guessing one within an idle period is hopeless
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_REF_LEN = const(32)  # the payment's reference is the session's token: the record names the payment

current = None  # the charger's Adhoc, for payment_link() (the display draws it as a QR code)


def payment_link():
    """The idle screen's payment link (pay_url/DEV/CODE), or None when ad-hoc payment is off."""
    return current.link() if current is not None else None


def new_code():
    raw = os.urandom(_CODE_BYTES)
    n = int.from_bytes(raw, "big")
    out = bytearray(8)
    for i in range(7, -1, -1):
        out[i] = _ALPHABET[n & 31]
        n >>= 5
    return out.decode()


class Adhoc:
    def __init__(self, base_url, dev, currency, on_change=None):
        global current
        self.base = base_url  # None: ad-hoc payment switched off (no code, start commands refused)
        self.dev = dev
        self.currency = currency
        self.on_change = on_change  # () -> None: the status (which carries the code) changed
        self.code = new_code() if base_url else None
        current = self

    def link(self):
        if self.code is None:
            return None
        return "%s/%s/%s" % (self.base, self.dev, self.code)

    def renew(self):
        if self.base:
            self.code = new_code()
            if self.on_change is not None:
                self.on_change()

    def start(self, doc):
        """A verified start command -> (ref, Decision) to start with, or (ref, reason) when it must
        not start. Raises ValueError on a malformed command (reported as a rejected downlink)."""
        hold, ref, code = doc.get("hold"), doc.get("ref"), doc.get("code")
        if not isinstance(hold, int) or isinstance(hold, bool) or hold <= 0:
            raise ValueError("start: hold must be a positive amount in minor units")
        if not isinstance(ref, str) or len(ref) != _REF_LEN or ref.strip("0123456789abcdef"):
            raise ValueError("start: ref must be %d lower-case hex digits (the record's token)" % _REF_LEN)
        if not isinstance(code, str):
            raise ValueError("start: code is required")
        if self.code is None:
            return ref, "adhoc-off"
        if code != self.code:
            return ref, "stale-code"
        if doc.get("currency") != self.currency:
            return ref, "currency"
        self.renew()  # consumed: the next driver needs a new link
        return ref, Decision(True, "adhoc", cap_cost=hold)
