# Commissioning probe: wait for one card and describe it (tools/nfc.py runs this on the
# host; a technician can run it on the device too). The raw UID is returned only when
# show_uid is asked for, to register a card at issue; the tap loop never does.
from hal import clock
from nfc import ReaderTimeout, open_driver
from nfc.token import card_token, parse_secret

_POLL_MS = 100


async def probe(kind, url, secret=None, timeout_ms=10000, show_uid=False, bus=None):
    """{"token", "uid_len"[, "uid"]} of the first card seen; ReaderTimeout when none came."""
    key = parse_secret(secret) if secret is not None else None
    driver = open_driver(kind, url, bus)
    deadline = clock.io_deadline(timeout_ms)
    uid = bytearray(10)
    ready = False
    last = None
    while not clock.io_expired(deadline):
        try:
            if not ready:
                await driver.init()
                ready = True
            n = await driver.read_uid(uid)
        except Exception as exc:  # the reader may still be waking up: retry until the deadline
            ready = False
            last = exc
            n = 0
        if n:
            out = {"token": card_token(key, uid, n) if key else None, "uid_len": n}
            if show_uid:
                out["uid"] = bytes(uid[:n]).hex()
            return out
        await clock.io_sleep_ms(_POLL_MS)
    if last is not None and not ready:
        raise ReaderTimeout("no working reader within %d ms (last error: %s)" % (timeout_ms, last))
    raise ReaderTimeout("no card within %d ms" % timeout_ms)
