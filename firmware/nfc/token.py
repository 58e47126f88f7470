# Card tokens: the only form in which a card's identity leaves the reader.
#
#   token = lower-case hex of the first 16 bytes of HMAC-SHA256(site secret, UID bytes)
#
# The UID is the anticollision UID exactly as the card sends it (4, 7 or 10 bytes, in
# the order received, cascade tags removed). A backend holding the site secret computes
# the same token from a UID when it issues the card (docs/nfc.md).
from crypto.hmac import hmac_sha256

TOKEN_BYTES = 16
UID_LENGTHS = (4, 7, 10)
_HEX = "0123456789abcdef"


def parse_secret(secret):
    """The site secret as bytes from hex text or bytes; at least 16 bytes."""
    if isinstance(secret, str):
        if len(secret) % 2:
            raise ValueError("site secret: odd number of hex digits")
        try:
            secret = bytes.fromhex(secret)
        except ValueError:
            raise ValueError("site secret: not hex")
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < 16:
        raise ValueError("site secret: need at least 16 bytes")
    return bytes(secret)


def card_token(secret, uid, uid_len=None):
    """Token of the UID in uid[:uid_len] under the site secret (bytes, >= 16)."""
    n = len(uid) if uid_len is None else uid_len
    if n not in UID_LENGTHS:
        raise ValueError("UID length %d: ISO 14443A UIDs are 4, 7 or 10 bytes" % n)
    digest = hmac_sha256(secret, memoryview(uid)[:n])
    out = []
    for b in digest[:TOKEN_BYTES]:
        out.append(_HEX[b >> 4])
        out.append(_HEX[b & 15])
    return "".join(out)
