# The session record (schema v1, docs/records.md): exact JSON payload bytes, signed as a JWS
# compact serialization with ES256 by the device key. The journal passes in `seq` (gapless,
# from 1) and `prev` (SHA-256 hex of the previous record's payload, "" for seq 1).
import binascii
import hashlib

from billing import ocmf
from crypto import canon

VERSION = 1
AUTHS = ("list", "cache", "online", "offline", "master")
STOP_REASONS = ("card", "unplugged", "balance", "limit", "remote", "meter-fault", "power-loss")
QUALITIES = ("S", "I", "U")
_HEX = "0123456789abcdef"
_NAME = "abcdefghijklmnopqrstuvwxyz_"
# Top-level fields in the order they are written; other lower-case keys may follow, sorted.
FIELDS = ("v", "dev", "seq", "prev", "token", "auth", "contract", "tariff", "start", "stop",
          "meter", "energy_wh", "cost", "flags", "fw", "ocmf")


class RecordError(ValueError):
    pass


def _fail(field, want):
    raise RecordError("record field %s: %s" % (field, want))


def _int(v, field, lo=0):
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        _fail(field, "integer >= %d expected" % lo)
    return v


def _str(v, field, limit=128):
    if not isinstance(v, str) or not 0 < len(v) <= limit:
        _fail(field, "non-empty string up to %d characters expected" % limit)
    return v


def _hex(v, field, length):
    if not isinstance(v, str) or len(v) != length or any(c not in _HEX for c in v):
        _fail(field, "%d lower-case hex digits expected" % length)
    return v


def _point(v, field, stop=False):
    if not isinstance(v, dict):
        _fail(field, "object expected")
    if v.get("tq") not in QUALITIES:
        _fail(field + ".tq", "S, I or U expected")
    pairs = [("t", _int(v.get("t"), field + ".t")), ("tq", v["tq"]), ("wh", _int(v.get("wh"), field + ".wh"))]
    if stop:
        if v.get("reason") not in STOP_REASONS:
            _fail(field + ".reason", "one of " + ", ".join(STOP_REASONS))
        pairs.append(("reason", v["reason"]))
    return canon.Ordered(pairs)


def _cost(v):
    if not isinstance(v, dict):
        _fail("cost", "object expected")
    cur = v.get("currency")
    if not isinstance(cur, str) or len(cur) != 3 or not cur.isupper():
        _fail("cost.currency", "ISO 4217 code expected")
    lines = v.get("lines")
    if not isinstance(lines, list) or any(not isinstance(x, dict) for x in lines):
        _fail("cost.lines", "list of objects expected")
    return canon.Ordered([("currency", cur), ("excl", _int(v.get("excl"), "cost.excl")),
                          ("incl", _int(v.get("incl"), "cost.incl")), ("lines", lines)])


def build(fields):
    """The exact payload bytes of a record from a dict of the schema's fields (checked)."""
    if not isinstance(fields, dict):
        raise RecordError("record must be a dict")
    f = fields
    if f.get("v", VERSION) != VERSION:
        _fail("v", "1 expected")
    seq = _int(f.get("seq"), "seq", 1)
    if seq == 1:
        if f.get("prev") != "":
            _fail("prev", '"" expected for seq 1')
    else:
        _hex(f.get("prev"), "prev", 64)
    if f.get("auth") not in AUTHS:
        _fail("auth", "one of " + ", ".join(AUTHS))
    contract = f.get("contract")
    if contract is not None:
        _str(contract, "contract")
    tariff = f.get("tariff")
    if not isinstance(tariff, dict) or not isinstance(tariff.get("id"), str):
        _fail("tariff", '{"id": str, "ver": ...} expected')
    ver = tariff.get("ver")
    if isinstance(ver, bool) or not isinstance(ver, (int, str)):
        _fail("tariff.ver", "integer or string expected")
    start = _point(f.get("start"), "start")
    stop = _point(f.get("stop"), "stop", True)
    energy = _int(f.get("energy_wh"), "energy_wh")
    if energy != f["stop"]["wh"] - f["start"]["wh"]:
        _fail("energy_wh", "must equal stop.wh - start.wh")
    meter = f.get("meter")
    if not isinstance(meter, dict):
        _fail("meter", "object expected")
    flags = f.get("flags")
    if not isinstance(flags, list) or any(not isinstance(x, str) or not x for x in flags):
        _fail("flags", "list of strings expected")
    o = f.get("ocmf")
    if not isinstance(o, str) or not o.startswith("OCMF|"):
        _fail("ocmf", "OCMF string expected")
    pairs = [
        ("v", VERSION),
        ("dev", _str(f.get("dev"), "dev", 32)),
        ("seq", seq),
        ("prev", f["prev"]),
        ("token", _hex(f.get("token"), "token", 32)),
        ("auth", f["auth"]),
        ("contract", contract),
        ("tariff", canon.Ordered([("id", tariff["id"]), ("ver", ver)])),
        ("start", start),
        ("stop", stop),
        ("meter", canon.Ordered([("model", _str(meter.get("model"), "meter.model")),
                                 ("serial", _str(meter.get("serial"), "meter.serial"))])),
        ("energy_wh", energy),
        ("cost", _cost(f.get("cost"))),
        ("flags", flags),
        ("fw", _str(f.get("fw"), "fw", 32)),
        ("ocmf", o),
    ]
    for k in sorted(f):
        if k not in FIELDS:
            if not k or any(c not in _NAME for c in k):
                _fail(k, "extra field names must be lower-case letters and _")
            pairs.append((k, f[k]))
    try:
        return canon.dumps(canon.Ordered(pairs))
    except TypeError as e:
        raise RecordError(str(e))


def digest(payload):
    """`prev` for the next record: SHA-256 hex of this record's payload bytes."""
    return binascii.hexlify(hashlib.sha256(payload).digest()).decode()


def jws(key, kid, payload):
    """Compact JWS bytes of payload signed with key (crypto.keys.Key), header alg ES256 + kid."""
    return key.jws(payload, kid)


def seal(key, fields):
    """(payload, jws) for a finished session. Fills energy_wh and ocmf when missing.

    fields carries the schema's fields except those two; meter may add "vendor" for OCMF MV.
    """
    f = dict(fields)
    try:
        if "energy_wh" not in f:
            f["energy_wh"] = f["stop"]["wh"] - f["start"]["wh"]
        if "ocmf" not in f:
            f["ocmf"] = ocmf.build(key, f["seq"], f["dev"], f["fw"], f["token"], f["start"], f["stop"], f["meter"])
    except (KeyError, TypeError) as e:
        raise RecordError("record incomplete: %r" % (e,))
    except ValueError as e:
        raise RecordError("ocmf: %s" % e)
    body = build(f)
    return body, jws(key, f["dev"], body)
