# The few DER structures the device needs: ECDSA-Sig-Value and a P-256 SubjectPublicKeyInfo.
import binascii

from crypto import p256

# SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04||x||y }
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def _int(value):
    body = value.to_bytes(33, "big")
    i = 0
    while i < 32 and body[i] == 0 and body[i + 1] < 0x80:
        i += 1  # minimal two's complement: keep one 00 only before a high bit
    body = body[i:]
    return b"\x02" + bytes((len(body),)) + body


def encode_signature(r, s):
    """ECDSA-Sig-Value DER for P-256 (always < 128 bytes, short-form lengths)."""
    body = _int(r) + _int(s)
    return b"\x30" + bytes((len(body),)) + body


def _read_int(data, pos):
    if pos + 2 > len(data) or data[pos] != 0x02:
        raise ValueError("DER: INTEGER expected")
    n = data[pos + 1]
    start = pos + 2
    if n == 0 or n > 33 or start + n > len(data):
        raise ValueError("DER: bad INTEGER length")
    if data[start] & 0x80:
        raise ValueError("DER: negative INTEGER")
    if n > 1 and data[start] == 0 and not data[start + 1] & 0x80:
        raise ValueError("DER: non-minimal INTEGER")
    return int.from_bytes(data[start : start + n], "big"), start + n


def decode_signature(data):
    """Strict DER ECDSA-Sig-Value -> (r, s)."""
    if len(data) < 8 or data[0] != 0x30 or data[1] != len(data) - 2:
        raise ValueError("DER: bad SEQUENCE")
    r, pos = _read_int(data, 2)
    s, pos = _read_int(data, pos)
    if pos != len(data):
        raise ValueError("DER: trailing bytes")
    return r, s


def spki(pub):
    """SubjectPublicKeyInfo DER of an affine P-256 point."""
    return _SPKI_PREFIX + p256.encode(pub)


def parse_spki(data):
    """P-256 SubjectPublicKeyInfo DER -> affine point (checked on the curve)."""
    data = bytes(data)
    if len(data) != 91 or data[:26] != _SPKI_PREFIX:
        raise ValueError("not a P-256 SubjectPublicKeyInfo")
    return p256.decode(data[26:])


def pem(der, label="PUBLIC KEY"):
    """PEM text (str) with 64-character lines."""
    b64 = binascii.b2a_base64(der).replace(b"\n", b"")
    lines = ["-----BEGIN " + label + "-----"]
    for i in range(0, len(b64), 64):
        lines.append(b64[i : i + 64].decode())
    lines.append("-----END " + label + "-----")
    return "\n".join(lines) + "\n"


def unpem(text, label="PUBLIC KEY"):
    """PEM text -> DER bytes."""
    head = "-----BEGIN " + label + "-----"
    tail = "-----END " + label + "-----"
    text = text.strip()
    if not (text.startswith(head) and text.endswith(tail)):
        raise ValueError("not a PEM " + label)
    body = "".join(text[len(head) : -len(tail)].split())
    return binascii.a2b_base64(body)
