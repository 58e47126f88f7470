"""The on-device QR encoder (firmware/display/qr.py, run under MicroPython) against the standard's
facts and independent implementations: the `qrcode` package must build the same matrix for the
same version, level and mask; zxing-cpp must read every symbol back; the mask penalty follows
ISO/IEC 18004 7.8.3 (checked rule by rule, and against segno's N1, N2 and N4)."""
from __future__ import annotations

import json
import random

import pytest
import qrcode
import zxingcpp
from qrcode.util import MODE_8BIT_BYTE, QRData
from segno.encoder import mask_scores

from host_tests.display.conftest import run_mp
from sim import display

random.seed(18004)
TEXTS = [b"a", b"https://receipts.example/r/chg-1/42", b"x" * 14, b"y" * 15, b"z" * 180,
         "Zählerstand €".encode()] + [bytes(random.randrange(256) for _ in range(n)) for n in (25, 41, 61, 83, 105, 121, 151)]

ENCODE = """
import json
from display import qr
texts = [bytes.fromhex(h) for h in json.loads(TEXTS)]
for t in texts:
    for mask in list(range(8)) + [None]:
        c = qr.encode(t, mask)
        emit({"text": t.hex(), "forced": mask, "version": c.version, "mask": c.mask, "size": c.size,
              "modules": bytes(c.modules).hex(), "penalties": c.penalties})
"""


def matrix(r: dict) -> list[list[int]]:
    n, stride = r["size"], (r["size"] + 7) // 8
    m = bytes.fromhex(r["modules"])
    return [[m[y * stride + (x >> 3)] >> (7 - (x & 7)) & 1 for x in range(n)] for y in range(n)]


@pytest.fixture(scope="module")
def symbols() -> list[dict]:
    code = f"TEXTS = {json.dumps(json.dumps([t.hex() for t in TEXTS]))}\n" + ENCODE
    return run_mp(code, timeout=300).results


def reference(text: bytes, version: int, mask: int) -> list[list[int]]:
    q = qrcode.QRCode(version=version, error_correction=qrcode.constants.ERROR_CORRECT_M, mask_pattern=mask, border=0)
    q.add_data(QRData(text, mode=MODE_8BIT_BYTE), optimize=0)
    q.make(fit=False)
    return [[int(v) for v in row] for row in q.modules]


def test_every_version_is_covered(symbols):
    assert {r["version"] for r in symbols} == set(range(1, 10))


def test_same_version_and_mask_give_the_qrcode_packages_matrix(symbols):
    for r in symbols:
        text = bytes.fromhex(r["text"])
        assert r["size"] == 17 + 4 * r["version"]
        assert matrix(r) == reference(text, r["version"], r["mask"]), (text[:20], r["version"], r["mask"])


def test_zxing_reads_every_symbol_back(symbols):
    for r in symbols:
        if r["forced"] is not None and r["forced"] % 3:
            continue  # a third of the forced masks and every chosen one: enough, and quick
        m = matrix(r)
        quiet = [[0] * (r["size"] + 8) for _ in range(4)]
        rows = quiet + [[0] * 4 + row + [0] * 4 for row in m] + quiet
        im = display.image([[1 - v for v in row] for row in rows], scale=4)  # dark modules black
        found = zxingcpp.read_barcodes(im, formats=zxingcpp.BarcodeFormat.QRCode)
        assert len(found) == 1 and found[0].bytes == bytes.fromhex(r["text"]), (r["version"], r["mask"])
        extra = found[0].extra  # what zxing read from the format and version information
        assert (extra["ECLevel"], extra["Version"], extra["DataMask"]) == ("M", str(r["version"]), r["mask"])


def test_the_chosen_mask_has_the_lowest_penalty(symbols):
    for r in symbols:
        if r["forced"] is None:
            p = r["penalties"]
            assert len(p) == 8 and r["mask"] == p.index(min(p))


# ---- the penalty rules (7.8.3, Table 11), each on its own -------------------------------------

PENALTY = """
from display import qr
rows = [bytes.fromhex(h) for h in ROWS]
get = lambda x, y: rows[y][x]
emit(list(qr.penalties(get, len(rows))))
"""


def penalties(rows: list[list[int]]) -> list[int]:
    code = f"ROWS = {[bytes(r).hex() for r in rows]!r}\n" + PENALTY
    return run_mp(code).value


def n3_by_the_text(rows: list[list[int]]) -> int:
    # 40 for every 1:1:3:1:1 dark:light:dark:light:dark run in a row or column with four light
    # modules before or after it; outside the symbol is the light quiet zone
    n = len(rows)
    lines = ["".join(map(str, r)) for r in rows] + ["".join(str(rows[y][x]) for y in range(n)) for x in range(n)]
    score = 0
    for line in lines:
        padded = "0000" + line + "0000"
        for i in range(len(line) - 6):
            if line[i:i + 7] == "1011101" and ("1" not in padded[i:i + 4] or "1" not in padded[i + 11:i + 15]):
                score += 40
    return score


def test_n1_runs_and_n4_balance():
    # 21x21, all light except one row of 7 dark: rows/columns of light runs, N4 far from half dark
    rows = [[0] * 21 for _ in range(21)]
    rows[10][:7] = [1] * 7
    n1, n2, n3, n4 = penalties(rows)
    # row 10: dark run 7 (3 + 2) and light run 14 (3 + 9); 20 other rows: run 21 (3 + 16) each;
    # columns 0..6: light 10, dark 1, light 10 -> 2 x (3 + 5); columns 7..20: 21 light (3 + 16)
    assert n1 == 5 + 12 + 20 * 19 + 7 * 16 + 14 * 19
    # 2x2 blocks: all of the 20 x 20, less those touching the dark row's 7 modules (partly)
    assert n2 == 3 * (20 * 20 - 2 * 7)
    assert n3 == 0
    assert n4 == 10 * 9  # 7 of 441 dark: 48.4 % from half -> 9 steps of 5 %


def test_n3_finder_like_pattern_with_light_on_one_side():
    rows = [[0] * 21 for _ in range(21)]
    rows[5][2:9] = [1, 0, 1, 1, 1, 0, 1]  # light after it (and before: the quiet zone)
    rows[12][10:21] = [0, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1]  # at the right edge, light before
    assert penalties(rows)[2] == 80 == n3_by_the_text(rows)


def test_penalties_agree_with_segno_and_the_rule_text_on_real_symbols(symbols):
    # segno's N3 skips a pattern sharing its first module with the previous one's last
    # ("10111010111010000"): the standard counts each; there we check the rule's own text
    chosen = [r for r in symbols if r["forced"] in (0, 5)]
    for r in chosen:
        m = matrix(r)
        ours = penalties(m)
        s1, s2, s3, s4 = mask_scores([bytearray(row) for row in m], r["size"], r["size"])
        assert (ours[0], ours[1], ours[3]) == (s1, s2, s4)
        assert ours[2] == n3_by_the_text(m) >= s3


# ---- the standard's tables as the encoder holds them -------------------------------------------

FACTS = """
from display import qr
out = {"capacity": [qr.capacity(v) for v in range(1, 10)],
       "version_bits": [qr.version_bits(v) for v in (7, 8, 9)],
       "format_bits": [qr._format_bits(m) for m in range(8)]}
free = []
for v in range(1, 10):
    g = qr._Grid(17 + 4 * v)
    qr._function_patterns(g, v)
    free.append(sum(1 for y in range(g.n) for x in range(g.n) if not g.is_fn(x, y)))
out["data_modules"] = free
out["total_codewords"] = [qr.data_codewords(v) + qr._EC[v - 1] * (qr._G1[v - 1] + qr._G2[v - 1]) for v in range(1, 10)]
try:
    qr.encode(b"x" * 181)
except qr.QrError as exc:
    out["too_long"] = str(exc)
emit(out)
"""


def test_tables_agree_with_the_standard():
    f = run_mp(FACTS).value
    # Table 7, level M, byte mode
    assert f["capacity"] == [14, 26, 42, 62, 84, 106, 122, 152, 180]
    # Table 1: codewords per version; the modules left for data are 8 per codeword plus the
    # remainder bits (0 for version 1, 7 for 2..6, 0 for 7..9)
    assert f["total_codewords"] == [26, 44, 70, 100, 134, 172, 196, 242, 292]
    assert [m - 8 * c for m, c in zip(f["data_modules"], f["total_codewords"])] == [0, 7, 7, 7, 7, 7, 0, 0, 0]
    # Annex D, Table D.1
    assert f["version_bits"] == [0x07C94, 0x085BC, 0x09A99]
    # Annex C, Table C.1: level M (00) with masks 0..7
    assert f["format_bits"] == [0x5412, 0x5125, 0x5E7C, 0x5B4B, 0x45F9, 0x40CE, 0x4F97, 0x4AA0]
    assert "181 bytes" in f["too_long"] and "at most 180" in f["too_long"]
