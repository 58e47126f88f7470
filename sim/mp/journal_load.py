# MicroPython side: the records a journal workload commits, and LittleFS mounting, shared by the
# journal power-cut tests and bench/journal.py.
#
# Records are shaped like the charger's (billing/record.py): the payload's fields in the firmware's
# order, 1 to 4 cost lines (time-of-day tariffs give several), the OCMF string inside; the JWS has
# the device's header and a 64-byte signature. Hashes and signatures are SHA-256 outputs, as
# incompressible as real ones. JWS sizes run from about 1.5 to 2.5 KB (mean about 2 KB).
import hashlib

import vfs
from binascii import b2a_base64, hexlify

DEV = "evc-0a1b2c3d4e5f"
_LINE = ('{"billed":%d,"dim":"%s","el":%d,"excl":%d,"from":%d,"incl":%d,"price":%d,"qty":%d,"to":%d,'
         '"unit":"%s","vat":%d}')
_DIMS = (("ENERGY", "Wh"), ("TIME", "s"), ("PARKING_TIME", "s"), ("ENERGY", "Wh"), ("TIME", "s"), ("ENERGY", "Wh"))
_READING = ('{\\"TM\\":\\"2025-10-%02dT%02d:%02d:%02d,000+0000 S\\",\\"TX\\":\\"%s\\",\\"RV\\":%d.%03d,'
            '\\"RI\\":\\"01-00:01.08.00\\",\\"RU\\":\\"kWh\\",\\"ST\\":\\"G\\"}')


def _hex(seq, salt, n):
    return hexlify(hashlib.sha256(b"%s%d" % (salt, seq)).digest()).decode()[:n]


def _b64url(data):
    return b2a_base64(data).rstrip(b"\n=").replace(b"+", b"-").replace(b"/", b"_")


def payload_for(seq):
    t0 = 1760000000 + seq * 5400
    t1 = t0 + 1800 + seq * 37 % 5000
    wh0 = 100000 + seq * 12000
    wh1 = wh0 + 1500 + seq * 977 % 30000
    lines = []
    for k in range(1 + seq % 4):
        dim, unit = _DIMS[k]
        q = 900 + (seq * 131 + k * 71) % 9000
        lines.append(_LINE % (q, dim, k % 3, q * 3 // 10, t0 + k * 600, q * 357 // 1000, 3950 - k * 250, q, t0 + k * 600 + 600,
                              unit, 1900))
    day, a, b = 1 + seq % 28, t0 % 86400, t1 % 86400
    ocmf = ('OCMF|{\\"FV\\":\\"1.0\\",\\"GI\\":\\"EVC-FIRMWARE\\",\\"GS\\":\\"%s\\",\\"GV\\":\\"0.9.2\\",\\"PG\\":\\"T%d\\",'
            '\\"MV\\":\\"Eastron\\",\\"MM\\":\\"sdm630\\",\\"MS\\":\\"M-0001\\",\\"IS\\":true,\\"IT\\":\\"UNDEFINED\\",'
            '\\"ID\\":\\"%s\\",\\"RD\\":[%s,%s]}|{\\"SA\\":\\"ECDSA-secp256r1-SHA256\\",\\"SD\\":\\"%s\\"}'
            % (DEV, seq, _hex(seq, b"t", 32), _READING % (day, a // 3600, a // 60 % 60, a % 60, "B", wh0 // 1000, wh0 % 1000),
               _READING % (day, b // 3600, b // 60 % 60, b % 60, "E", wh1 // 1000, wh1 % 1000),
               (_hex(seq, b"r", 64) + _hex(seq, b"s", 64)).upper()[:140 + seq % 5 * 2]))
    return ('{"v":1,"dev":"%s","seq":%d,"prev":"%s","token":"%s","auth":"list","contract":%s,'
            '"tariff":{"id":"std-%d","ver":%d},"start":{"t":%d,"tq":"S","wh":%d},"stop":{"t":%d,"tq":"S","wh":%d,'
            '"reason":"card"},"meter":{"model":"sdm630","serial":"M-0001"},"energy_wh":%d,'
            '"cost":{"currency":"EUR","excl":%d,"incl":%d,"lines":[%s]},"flags":[],"fw":"0.9.2","ocmf":"%s",'
            '"parking_s":%d}' % (DEV, seq, _hex(seq - 1, b"p", 64) if seq > 1 else "", _hex(seq, b"t", 32),
                                 '"fleet-%d"' % (seq % 7) if seq % 3 else "null", seq % 4, 3 + seq % 9, t0, wh0, t1, wh1,
                                 wh1 - wh0, seq * 37 % 9000, seq * 37 % 9000 * 119 // 100, ",".join(lines), ocmf,
                                 seq * 13 % 900)).encode()


def signed_for(seq):
    header = b'{"alg":"ES256","kid":"%s"}' % DEV
    sig = hashlib.sha256(b"a%d" % seq).digest() + hashlib.sha256(b"b%d" % seq).digest()
    return _b64url(header) + b"." + _b64url(payload_for(seq)) + b"." + _b64url(sig)


def mount(dev, at):
    """Mount LittleFS from `dev` at `at`, replacing whatever was mounted there (a reboot)."""
    try:
        vfs.umount(at)
    except OSError:
        pass
    vfs.mount(vfs.VfsLfs2(dev), at)
