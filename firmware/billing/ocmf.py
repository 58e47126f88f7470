# OCMF (Open Charge Metering Format) for the meter readings of one session:
#   OCMF|{payload}|{"SA":"ECDSA-secp256r1-SHA256","SD":"<hex DER signature>"}
# signed with the device key over the payload bytes exactly as written. Energy is exact: the
# meter's integer Wh become a kWh decimal with three places (12345 Wh -> 12.345), no floats.
from billing.tz import civil_from_days
from crypto import canon

FV = "1.0"
GI = "EVC-FIRMWARE"  # gateway identification: this firmware; GS carries the device id
SA = "ECDSA-secp256r1-SHA256"
RI = "01-00:01.08.00"  # OBIS: active energy import, total
IT = "UNDEFINED"  # the ID is a keyed hash of the card UID, none of OCMF's raw-UID types
_QUALITIES = ("S", "I", "U")
_STATUSES = ("N", "G", "T", "D", "R", "M", "X", "I", "O", "S", "E", "F")


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


def _reading(point, tx):
    if not isinstance(point, dict):
        raise ValueError("reading must be an object with t, tq, wh")
    st = point.get("st", "G")
    if st not in _STATUSES:
        raise ValueError("bad OCMF meter status %r" % (st,))
    return canon.Ordered(
        [
            ("TM", timestamp(point.get("t"), point.get("tq"))),
            ("TX", tx),
            ("RV", canon.Raw(kwh(point.get("wh")))),
            ("RI", RI),
            ("RU", "kWh"),
            ("ST", st),
        ]
    )


def _text(name, value, limit=64):
    if not isinstance(value, str) or not 0 < len(value) <= limit or "|" in value:
        raise ValueError("%s must be a non-empty string without '|' (max %d)" % (name, limit))
    return value


def payload(seq, dev, fw, token, start, stop, meter):
    """The OCMF payload bytes (not yet signed). start/stop: {"t", "tq", "wh"[, "st"]}."""
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("seq must be a positive integer")
    if not isinstance(meter, dict):
        raise ValueError("meter must be an object with model and serial")
    if isinstance(stop, dict) and isinstance(start, dict) and isinstance(stop.get("wh"), int):
        if isinstance(start.get("wh"), int) and stop["wh"] < start["wh"]:
            raise ValueError("end reading below begin reading")
    model = _text("meter model", meter.get("model"))
    return canon.dumps(
        canon.Ordered(
            [
                ("FV", FV),
                ("GI", GI),
                ("GS", _text("device id", dev)),
                ("GV", _text("firmware version", fw)),
                ("PG", "T%d" % seq),
                ("MV", _text("meter vendor", meter.get("vendor") or model)),
                ("MM", model),
                ("MS", _text("meter serial", meter.get("serial"))),
                ("IS", True),
                ("IT", IT),
                ("ID", _text("token", token)),
                ("RD", [_reading(start, "B"), _reading(stop, "E")]),
            ]
        )
    )


def build(key, seq, dev, fw, token, start, stop, meter):
    """The signed OCMF string; key.sign_der(bytes) -> DER signature (crypto.keys.Key)."""
    body = payload(seq, dev, fw, token, start, stop, meter)
    sd = key.sign_der(body).hex().upper()
    return "OCMF|" + body.decode() + '|{"SA":"' + SA + '","SD":"' + sd + '"}'
