# Exact JSON bytes for signed documents: no whitespace, objects in a fixed key order (Ordered)
# or sorted, strings escaped as CPython's json.dumps(ensure_ascii=False) does. Only str, int,
# bool, None, list/tuple, dict, Ordered and Raw: anything else (a float, say) is refused, so the
# bytes never depend on a port's float formatting.

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


class Ordered:
    """An object whose keys are written in the given order: Ordered([(key, value), ...])."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


class Raw:
    """A JSON number token written verbatim (e.g. an exact decimal "12.345")."""

    __slots__ = ("text",)

    def __init__(self, text):
        self.text = text


def _string(s, out):
    out.append('"')
    start = 0
    for i, c in enumerate(s):
        if c in _ESCAPES or c < " ":
            out.append(s[start:i])
            out.append(_ESCAPES.get(c) or "\\u%04x" % ord(c))
            start = i + 1
    out.append(s[start:])
    out.append('"')


def _encode(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, str):
        _string(v, out)
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, Raw):
        out.append(v.text)
    elif isinstance(v, (list, tuple)):
        out.append("[")
        for i, item in enumerate(v):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    elif isinstance(v, (dict, Ordered)):
        pairs = v.pairs if isinstance(v, Ordered) else sorted(v.items())
        out.append("{")
        for i, (k, item) in enumerate(pairs):
            if not isinstance(k, str):
                raise TypeError("JSON object keys must be strings")
            if i:
                out.append(",")
            _string(k, out)
            out.append(":")
            _encode(item, out)
        out.append("}")
    else:
        raise TypeError("cannot encode %s in a signed document" % type(v).__name__)


def dumps(value):
    """The exact UTF-8 JSON bytes of value."""
    out = []
    _encode(value, out)
    return "".join(out).encode()
