"""The per-record verification made cheaper for issue #23 refuses what it refused before: forged,
doctored, non-canonical, malformed; the seq read for routing from the payload's first bytes is a
hint only, never a verdict."""
from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from backend import verify as bv
from evc import verify as ev
from host_tests.backend.test_affinity import sealed

DEV = "evc-f1"


@pytest.fixture(scope="module")
def made():
    return sealed(DEV, 3)


@pytest.fixture(scope="module")
def key(made):
    return ev.load_public_key(made.pubkey_pem.decode())


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def test_a_good_record_opens(made, key):
    o = bv.open_record(made.records[1], ev.spki_der(key), DEV)
    assert (o.seq, o.problem) == (2, None) and o.prev == bv.open_record(made.records[0], ev.spki_der(key), DEV).hash


@pytest.mark.parametrize("part", [0, 1, 2])
def test_non_canonical_base64url_is_refused_in_every_part(made, key, part):
    parts = made.records[0].split(".")
    text = parts[part]
    if len(text) % 4 in (2, 3):  # unused low bits in the last character: same bytes, another spelling
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        last = alphabet.index(text[-1])
        parts[part] = text[:-1] + alphabet[last | 1]
        assert base64.urlsafe_b64decode(parts[part] + "==")[:5] == base64.urlsafe_b64decode(text + "==")[:5]
    else:
        parts[part] = text + "="  # padding is not base64url as JWS writes it
    with pytest.raises(ev.VerifyError) as exc:
        ev.verify_record(".".join(parts), key, kid=DEV)
    assert exc.value.reason == ev.Reason.FORMAT
    with pytest.raises(bv.Rejected):
        bv.open_record(".".join(parts), ev.spki_der(key), DEV)


@pytest.mark.parametrize("bad", ["a+b.c.d", "a.b/c.d", "a.b.c\n", "a.b.c.d", "a..b", "a.b", "é.b.c"])
def test_characters_outside_base64url_are_refused(key, bad):
    with pytest.raises(ev.VerifyError) as exc:
        ev.verify_jws(bad.encode("utf-8"), key)
    assert exc.value.reason in (ev.Reason.FORMAT, ev.Reason.HEADER)


def test_forged_signatures_are_refused_jws_and_ocmf(made, key):
    h, p, s = made.records[0].split(".")
    with pytest.raises(bv.Rejected) as exc:
        bv.open_record(f"{h}.{p}.{s[:-6]}AAAAAA", ev.spki_der(key), DEV)
    assert exc.value.kind == "bad-signature" and not exc.value.signed
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(bv.Rejected):
        bv.open_record(made.records[0], ev.spki_der(other), DEV)  # another device's key
    with pytest.raises(bv.Rejected):
        bv.open_record(made.records[0], ev.spki_der(key), "evc-f2")  # sent as another device


def test_a_doctored_ocmf_signature_is_caught_after_the_jws(made, key):
    """The OCMF signature is checked on its own: a record the device signed with a bad OCMF
    signature fills its seq as bad-ocmf, never billed."""
    record = json.loads(base64.urlsafe_b64decode(made.records[0].split(".")[1] + "=="))
    ocmf = record["ocmf"]
    sd = ocmf.rsplit('"SD":"', 1)[1][:-2]
    doctored = ocmf.replace(sd, sd[:-4] + ("0000" if sd[-4:] != "0000" else "1111"))
    with pytest.raises(ev.OcmfError) as exc:
        ev.verify_ocmf(doctored, key)
    assert exc.value.reason == ev.Reason.OCMF_SIGNATURE
    spaced = ocmf.replace(sd, " ".join(sd[i:i + 2] for i in range(0, len(sd), 2)))  # SD with whitespace still reads
    assert ev.verify_ocmf(spaced, key).payload == ev.verify_ocmf(ocmf, key).payload


@pytest.mark.parametrize("t", [0, 59, 1_760_000_000, 2_000_000_000, 4_102_444_800, 253_402_300_799])
def test_ocmf_times_are_written_as_before(t):
    want = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S,000+0000 ") + "I"
    assert ev._ocmf_time(t, "I") == want


@pytest.mark.parametrize("t", [253_402_300_800, 10**18])
def test_a_time_beyond_any_calendar_date_is_an_ocmf_mismatch(t):
    with pytest.raises(ev.VerifyError) as exc:
        ev._ocmf_time(t, "S")
    assert exc.value.reason == ev.Reason.OCMF_MISMATCH


def test_the_routing_seq_is_read_from_the_payloads_first_bytes_only(made):
    h, p, s = made.records[2].split(".")
    assert bv.named_seq(made.records[2]) == 3 and bv.named_seq(made.records[2].encode()) == 3
    cut = f"{h}.{p[:bv._HEAD_CHARS]}!!.{s}"  # the rest unreadable: still routed, never verified as good
    assert bv.named_seq(cut) == 3
    with pytest.raises(bv.Rejected):
        bv.screen(cut)
    head = b64(b'{"v":1,"dev":"evc-f1","seq":7,"prev":""}')
    assert bv.named_seq(f"{h}.{head}.{s}") == 7
    for junk in ("", "abc", "a.b.c", b"\xff.\xfe.\xfd", f"{h}.{b64(b'[1]')}.{s}", f"{h}.{p[:3]}"):
        assert bv.named_seq(junk) is None
