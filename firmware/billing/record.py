# The session record (schema v1, docs/records.md): exact JSON payload bytes, signed as a JWS
# compact serialization with ES256 by the device key. The journal passes in `seq` (gapless,
# from 1) and `prev` (SHA-256 hex of the previous record's payload, "" for seq 1).
import binascii
import hashlib

from billing import ocmf
from crypto import canon

VERSION = 1
AUTHS = ("list", "cache", "online", "offline", "master", "adhoc")
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
    _int(v.get("t"), field + ".t")
    _int(v.get("wh"), field + ".wh")
    if stop and v.get("reason") not in STOP_REASONS:
        _fail(field + ".reason", "one of " + ", ".join(STOP_REASONS))


def _write_point(w, v, stop=False):
    w.raw(b'{"t":')
    w.num(v["t"])
    w.raw(b',"tq":')
    w.string(v["tq"])
    w.raw(b',"wh":')
    w.num(v["wh"])
    if stop:
        w.raw(b',"reason":')
        w.string(v["reason"])
    w.byte(125)


def _cost(v):
    if not isinstance(v, dict):
        _fail("cost", "object expected")
    cur = v.get("currency")
    if not isinstance(cur, str) or len(cur) != 3 or not cur.isupper():
        _fail("cost.currency", "ISO 4217 code expected")
    lines = v.get("lines")
    if not isinstance(lines, list) or any(not isinstance(x, dict) for x in lines):
        _fail("cost.lines", "list of objects expected")
    _int(v.get("excl"), "cost.excl")
    _int(v.get("incl"), "cost.incl")


def _check(f, energy, ocmf_given):
    """Every rule of the schema the writer relies on, in a fixed order (the first broken one is
    reported). Returns the sorted names of the extra fields."""
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
    _point(f.get("start"), "start")
    _point(f.get("stop"), "stop", True)
    _int(energy, "energy_wh")
    if energy != f["stop"]["wh"] - f["start"]["wh"]:
        _fail("energy_wh", "must equal stop.wh - start.wh")
    meter = f.get("meter")
    if not isinstance(meter, dict):
        _fail("meter", "object expected")
    flags = f.get("flags")
    if not isinstance(flags, list) or any(not isinstance(x, str) or not x for x in flags):
        _fail("flags", "list of strings expected")
    if not ocmf_given:
        o = f.get("ocmf")
        if not isinstance(o, str) or not o.startswith("OCMF|"):
            _fail("ocmf", "OCMF string expected")
    _str(f.get("dev"), "dev", 32)
    _hex(f.get("token"), "token", 32)
    _str(meter.get("model"), "meter.model")
    _str(meter.get("serial"), "meter.serial")
    _cost(f.get("cost"))
    _str(f.get("fw"), "fw", 32)
    extras = sorted(k for k in f if k not in FIELDS)
    for k in extras:
        if not k or any(c not in _NAME for c in k):
            _fail(k, "extra field names must be lower-case letters and _")
    return extras


def _write(w, f, energy, ocmf_bytes, extras):
    """The payload JSON, in the order of docs/records.md, appended to w (checked by _check)."""
    w.raw(b'{"v":1,"dev":')
    w.string(f["dev"])
    w.raw(b',"seq":')
    w.num(f["seq"])
    w.raw(b',"prev":')
    w.string(f["prev"])
    w.raw(b',"token":')
    w.string(f["token"])
    w.raw(b',"auth":')
    w.string(f["auth"])
    w.raw(b',"contract":')
    w.value(f.get("contract"))
    tariff = f["tariff"]
    w.raw(b',"tariff":{"id":')
    w.string(tariff["id"])
    w.raw(b',"ver":')
    w.value(tariff["ver"])
    w.raw(b'},"start":')
    _write_point(w, f["start"])
    w.raw(b',"stop":')
    _write_point(w, f["stop"], True)
    meter = f["meter"]
    w.raw(b',"meter":{"model":')
    w.string(meter["model"])
    w.raw(b',"serial":')
    w.string(meter["serial"])
    w.raw(b'},"energy_wh":')
    w.num(energy)
    cost = f["cost"]
    w.raw(b',"cost":{"currency":')
    w.string(cost["currency"])
    w.raw(b',"excl":')
    w.num(cost["excl"])
    w.raw(b',"incl":')
    w.num(cost["incl"])
    w.raw(b',"lines":')
    w.value(cost["lines"])
    w.raw(b'},"flags":')
    w.value(f["flags"])
    w.raw(b',"fw":')
    w.string(f["fw"])
    w.raw(b',"ocmf":"')
    w.text(ocmf_bytes)
    w.byte(34)
    for k in extras:
        w.byte(44)
        w.string(k)
        w.byte(58)
        w.value(f[k])
    w.byte(125)


def _payload(w, f, energy, ocmf_bytes=None):
    """Check f and append its payload to w; ocmf_bytes: the OCMF string already written (else f's)."""
    extras = _check(f, energy, ocmf_bytes is not None)
    if ocmf_bytes is None:
        ocmf_bytes = f["ocmf"].encode()
    try:
        _write(w, f, energy, ocmf_bytes, extras)
    except TypeError as e:  # a value canon refuses (a float in a cost line, say)
        raise RecordError(str(e))


def build(fields):
    """The exact payload bytes of a record from a dict of the schema's fields (checked)."""
    if not isinstance(fields, dict):
        raise RecordError("record must be a dict")
    w = canon.take()
    try:
        _payload(w, fields, fields.get("energy_wh"))
        return w.getvalue()
    finally:
        canon.give(w)


def digest(payload):
    """`prev` for the next record: SHA-256 hex of this record's payload bytes."""
    return binascii.hexlify(hashlib.sha256(payload).digest()).decode()


def jws(key, kid, payload):
    """Compact JWS bytes of payload signed with key (crypto.keys.Key), header alg ES256 + kid."""
    return key.jws(payload, kid)


def _move_down(mv, start, n):
    # mv[0:n] = mv[start:start + n] in pieces that never overlap: no temporary copy
    i = 0
    while start and i < n:
        k = min(start, n - i)
        mv[i : i + k] = mv[start + i : start + i + k]
        i += k


def seal(key, fields, commit=None):
    """(payload, jws) for a finished session, both bytes of their exact size. Fills in energy_wh
    and ocmf when missing (fields itself is not changed).

    fields carries the schema's fields except those two; meter may add "vendor" for OCMF MV.
    Everything is written into the kept canon.Writer: the OCMF string first (signed where it
    lies), then the payload after it, which takes the OCMF bytes JSON-escaped from the buffer.
    Without commit the payload is copied out and the buffer is reused for the JWS (key.jws).
    With commit (the charger), the payload moves to the front, the JWS follows it in the same
    buffer, and commit(payload, jws) gets memoryviews of both, valid only during the call: a
    seal then allocates no block larger than a few hundred bytes while the payload is under
    about 1.7 KB in the 4 KiB buffer the charger reserves at boot (larger: one spill).
    """
    if not isinstance(fields, dict):
        raise RecordError("record must be a dict")
    f = fields
    w = canon.take()
    try:
        try:
            energy = f["energy_wh"] if "energy_wh" in f else f["stop"]["wh"] - f["start"]["wh"]
            o = None
            if "ocmf" not in f:
                ocmf.write(w, key, f["seq"], f["dev"], f["fw"], f["token"], f["start"], f["stop"], f["meter"])
                o = w.mv[: w.pos]  # stays valid if the payload moves the writer to a larger buffer
        except (KeyError, TypeError) as e:
            raise RecordError("record incomplete: %r" % (e,))
        except ValueError as e:
            raise RecordError("ocmf: %s" % e)
        start = w.pos
        _payload(w, f, energy, o)
        end = w.pos
        o = None
        if commit is not None:
            n = end - start
            _move_down(w.mv, start, n)  # the OCMF string lives on in the payload: its room goes to the JWS
            w.pos = n
            key.write_jws(w, w.mv[:n], f["dev"])
            commit(w.mv[:n], w.mv[n : w.pos])
            return None
        body = bytes(w.mv[start:end])
    finally:
        canon.give(w)
    return body, jws(key, f["dev"], body)
