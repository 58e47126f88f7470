# OCMF (Open Charge Metering Format) for the meter readings of one session:
#   OCMF|{payload}|{"SA":"ECDSA-secp256r1-SHA256","SD":"<hex DER signature>"}
# signed with the device key over the payload bytes exactly as written. Energy is exact: the
# meter's integer Wh become a kWh decimal with three places (12345 Wh -> 12.345), no floats.
# Written straight into a canon.Writer (record.seal puts it inside the record's buffer) and signed
# from the SHA-256 of the bytes where they lie.
import hashlib

from billing.tz import civil_from_days
from crypto import canon, der

# (written as bytes literals in write_payload/write: keep both in step)
FV = "1.0"
GI = "EVC-FIRMWARE"  # gateway identification: this firmware; GS carries the device id
SA = "ECDSA-secp256r1-SHA256"
RI = "01-00:01.08.00"  # OBIS: active energy import, total
IT = "UNDEFINED"  # the ID is a keyed hash of the card UID, none of OCMF's raw-UID types
_QUALITIES = ("S", "I", "U")
_STATUSES = ("N", "G", "T", "D", "R", "M", "X", "I", "O", "S", "E", "F")
_HEX = b"0123456789ABCDEF"


def kwh(wh):
    """Exact kWh decimal text of an integer Wh reading: 1234567 -> "1234.567"."""
    if not isinstance(wh, int) or isinstance(wh, bool) or wh < 0:
        raise ValueError("reading must be a non-negative integer Wh")
    return "%d.%03d" % (wh // 1000, wh % 1000)


def timestamp(t, quality):
    """OCMF TM: "YYYY-MM-DDThh:mm:ss,000+0000 S" for UTC epoch seconds t."""
    if not isinstance(t, int) or isinstance(t, bool) or t < 0:
        raise ValueError("time must be non-negative integer epoch seconds")
    if quality not in _QUALITIES:
        raise ValueError("time quality must be S, I or U")
    y, mo, d = civil_from_days(t // 86400)
    s = t % 86400
    return "%04d-%02d-%02dT%02d:%02d:%02d,000+0000 %s" % (y, mo, d, s // 3600, s // 60 % 60, s % 60, quality)


def _reading(w, point, tx):
    if not isinstance(point, dict):
        raise ValueError("reading must be an object with t, tq, wh")
    st = point.get("st", "G")
    if st not in _STATUSES:
        raise ValueError("bad OCMF meter status %r" % (st,))
    w.raw(b'{"TM":')
    w.string(timestamp(point.get("t"), point.get("tq")))
    w.raw(b',"TX":"')
    w.raw(tx)
    w.raw(b'","RV":')
    w.raw(kwh(point.get("wh")).encode())
    w.raw(b',"RI":"01-00:01.08.00","RU":"kWh","ST":')  # RI
    w.string(st)
    w.byte(125)


def _text(name, value, limit=64):
    if not isinstance(value, str) or not 0 < len(value) <= limit or "|" in value:
        raise ValueError("%s must be a non-empty string without '|' (max %d)" % (name, limit))
    return value


def _field(w, name, value):
    w.raw(name)
    w.string(value)


def write_payload(w, seq, dev, fw, token, start, stop, meter):
    """Append the OCMF payload JSON (not yet signed) to the canon.Writer w; ValueError when an
    input is unfit (nothing useful is left in w then)."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("seq must be a positive integer")
    if not isinstance(meter, dict):
        raise ValueError("meter must be an object with model and serial")
    if isinstance(stop, dict) and isinstance(start, dict) and isinstance(stop.get("wh"), int):
        if isinstance(start.get("wh"), int) and stop["wh"] < start["wh"]:
            raise ValueError("end reading below begin reading")
    model = _text("meter model", meter.get("model"))
    w.raw(b'{"FV":"1.0","GI":"EVC-FIRMWARE"')  # FV, GI
    _field(w, b',"GS":', _text("device id", dev))
    _field(w, b',"GV":', _text("firmware version", fw))
    w.raw(b',"PG":"T')
    w.num(seq)
    w.byte(34)
    _field(w, b',"MV":', _text("meter vendor", meter.get("vendor") or model))
    _field(w, b',"MM":', model)
    _field(w, b',"MS":', _text("meter serial", meter.get("serial")))
    w.raw(b',"IS":true,"IT":"UNDEFINED"')  # IT
    _field(w, b',"ID":', _text("token", token))
    w.raw(b',"RD":[')
    _reading(w, start, b"B")
    w.byte(44)
    _reading(w, stop, b"E")
    w.raw(b"]}")


def payload(seq, dev, fw, token, start, stop, meter):
    """The OCMF payload bytes (not yet signed). start/stop: {"t", "tq", "wh"[, "st"]}."""
    w = canon.take()
    try:
        write_payload(w, seq, dev, fw, token, start, stop, meter)
        return w.getvalue()
    finally:
        canon.give(w)


def write(w, key, seq, dev, fw, token, start, stop, meter):
    """Append the signed OCMF string (its UTF-8 bytes, not JSON-escaped) to the canon.Writer w.

    The payload is written once, hashed where it lies and signed from the digest
    (key.sign_digest); the DER signature goes into w as upper-case hex, byte by byte.
    """
    w.raw(b"OCMF|")
    a = w.pos
    write_payload(w, seq, dev, fw, token, start, stop, meter)
    r, s = key.sign_digest(hashlib.sha256(w.mv[a : w.pos]).digest())
    sig = der.encode_signature(r, s)
    w.raw(b'|{"SA":"ECDSA-secp256r1-SHA256","SD":"')  # SA
    n = len(sig)
    w.room(2 * n)
    buf = w.buf
    p = w.pos
    for c in sig:
        buf[p] = _HEX[c >> 4]
        buf[p + 1] = _HEX[c & 15]
        p += 2
    w.pos = p
    w.raw(b'"}')


def build(key, seq, dev, fw, token, start, stop, meter):
    """The signed OCMF string; key.sign_digest(digest) -> (r, s) (crypto.keys.Key)."""
    w = canon.take()
    try:
        write(w, key, seq, dev, fw, token, start, stop, meter)
        return w.getvalue().decode()
    finally:
        canon.give(w)
