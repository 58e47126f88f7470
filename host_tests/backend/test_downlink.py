"""Signed downlink documents, checked by the firmware itself under MicroPython (crypto.jws.verify,
billing.tariff; authorization lists through the uplink's Downlink into billing.authlist, as on a
charger), and published to a real broker by the CLI."""
from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
import threading

import pytest

from backend.cards import CardListError, read_csv
from backend.db import open_db
from backend.downlink import Downlinks
from backend.ingest import Ingestor
from backend.keys import Keys, card_token, load_public_key
from backend.models import Device
from host_tests.backend.conftest import REPO, TOKENS
from host_tests.data import ocpi_tariff
from sim.flashfs import DOWNLINK_MP, get_file, run_on_flash, write_messages



def body(jws: str) -> dict:
    p = jws.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))


@pytest.fixture
def setup(tmp_path, charger):
    keys = Keys(tmp_path / "keys")
    keys.init(site_secret="11" * 32)
    sessions = open_db(str(tmp_path / "b.db"))
    with sessions.begin() as db:
        for dev in ("evc-a1", "evc-b2"):
            db.add(Device(id=dev, pubkey=load_public_key(charger.pubkey_pem), added_at=0, head_seq=0, head_hash=""))
    clock = [1_800_000_000]
    return keys, sessions, Downlinks(sessions, keys, clock=lambda: clock[0]), clock


def firmware_apply(tmp_path, keys: Keys, docs: list[str], dev: str = "evc-a1", name: str = "device") -> dict:
    """Deliver authorization-list documents, in the order given, as a charger gets them on
    evc/<dev>/authlist: to the firmware's Downlink (pinned backend key, parts staged in any order)
    wired to its list as app/charger.py wires it (sim/flashfs.py DOWNLINK_MP)."""
    msgs = write_messages(tmp_path / f"{name}-authlist.txt", docs)
    config = {"device_id": dev, "backend_key": keys.public_hex()}
    code = DOWNLINK_MP + f"""
up, al = device_uplink(json.loads({json.dumps(config)!r}), ROOT)
done = [up.downlink.handle("authlist", m) for m in messages({str(msgs)!r})]
out = {{}}
for t in json.loads({json.dumps(TOKENS)!r}):
    e = al.lookup(t)
    out[t] = e and e.to_dict()
emit({{"ver": al.version, "count": al.count, "entries": out, "done": done, "rejected": events(up),
       "downlink": up.downlink.versions()["authlist"]}})
"""
    state = run_on_flash(tmp_path / name, code).value
    assert state["rejected"] == [], state["rejected"]
    assert state["downlink"] == state["ver"]
    return state


def test_card_list_full_then_diff_with_ledger_balances(setup, tmp_path, charger):
    keys, sessions, down, clock = setup
    csv = tmp_path / "cards.csv"
    uid = "04A1B2C3D4E5F6"
    csv.write_text("token,status,exp,contract,balance\n"
                   f"{TOKENS[0]},accepted,,C-1,10000\n{TOKENS[1]},blocked,1900000000,,\n"
                   f"{TOKENS[2]},accepted,,,\n")
    sent: list = []
    full = down.authlist("evc-a1", list(read_csv(csv, keys.site_secret())), False, sent.extend)
    assert len(full) == 1 and full[0][0] == "evc/evc-a1/authlist" and full[0][2] is False
    doc = body(full[0][1])
    assert (doc["type"], doc["dev"], doc["full"], doc["part"], doc["parts"]) == ("authlist", "evc-a1", True, 0, 1)
    assert [e["token"] for e in doc["entries"]] == sorted(TOKENS[:3])
    # Records charge the prepaid card: seq 1 and 5 carry TOKENS[0]. Two chargers are registered, so
    # each list gives this one half of what is left as its offline allowance (docs/prepaid.md).
    assert doc["entries"][[e["token"] for e in doc["entries"]].index(TOKENS[0])]["balance"] == 5000
    ing = Ingestor(sessions)
    for r in charger.records[:6]:
        ing.ingest("evc/evc-a1/rec", r)
    clock[0] += 10
    diff = down.authlist("evc-a1", None, True, sent.extend)
    d = body(diff[0][1])
    assert (d["full"], d["base"], d["ver"] > doc["ver"]) == (False, doc["ver"], True)
    assert d["entries"] == [{"token": TOKENS[0], "status": "accepted", "exp": 0, "contract": "C-1",
                             "balance": (10_000 - 500) // 2, "bal_seq": 6}]
    assert down.authlist("evc-a1", None, True, sent.extend) == []  # nothing moved: nothing to send
    # A differential CSV: delete one card, add one by UID.
    delta = tmp_path / "delta.csv"
    delta.write_text(f"uid,token,status\n,{TOKENS[1]},delete\n{uid},,accepted\n")
    clock[0] += 10
    d2 = body(down.authlist("evc-a1", list(read_csv(delta, keys.site_secret(), allow_delete=True)), True, sent.extend)[0][1])
    assert {"token": TOKENS[1]} in d2["entries"]
    assert card_token(bytes.fromhex("11" * 32), bytes.fromhex(uid)) in {e["token"] for e in d2["entries"]}
    state = firmware_apply(tmp_path, keys, [m[1] for m in sent])
    assert state["done"] == [True, True, True]  # full, balance diff, CSV diff: each on top of the last
    assert state["ver"] == d2["ver"] and state["count"] == 3
    assert state["entries"][TOKENS[0]]["balance"] == 4750 and state["entries"][TOKENS[0]]["bal_seq"] == 6
    assert state["entries"][TOKENS[1]] is None


def test_large_full_list_is_chunked_and_applies_on_the_device(setup, tmp_path):
    keys, _, down, _ = setup
    csv = tmp_path / "big.csv"
    csv.write_text("token\n" + "".join("%032x\n" % (i * 7919 + 1) for i in range(1203)) + "".join(t + "\n" for t in TOKENS))
    msgs = down.authlist("evc-a1", list(read_csv(csv, None)), False, lambda m: None)
    from backend.downlink import LIST_CHUNK

    parts = -(-1207 // LIST_CHUNK)
    assert [(body(m[1])["part"], body(m[1])["parts"]) for m in msgs] == [(i, parts) for i in range(parts)]
    state = firmware_apply(tmp_path, keys, [m[1] for m in msgs], name="in-order")
    assert state["done"] == [False] * (parts - 1) + [True]
    assert state["count"] == 1207 and state["entries"][TOKENS[3]]["status"] == "accepted"
    # parts in any order (and some twice, as QoS 1 allows): parts ahead of their turn wait on flash, at
    # most 16 (firmware/uplink/downlink.py _MAX_STAGED), the rest is dropped; the version sent again
    # (backend/converge.py) completes it: the same list, applied once
    shuffled = [m[1] for m in msgs]
    random.Random(15).shuffle(shuffled)
    shuffled[4:4] = shuffled[:2]
    other = firmware_apply(tmp_path, keys, shuffled + [m[1] for m in msgs], name="shuffled")
    assert sum(other["done"]) == 1
    assert (other["ver"], other["count"], other["entries"]) == (state["ver"], state["count"], state["entries"])
    assert get_file(tmp_path / "shuffled", "auth/list.bin") == get_file(tmp_path / "in-order", "auth/list.bin")


def test_a_list_with_more_parts_than_a_device_takes_is_refused_and_nothing_is_sent(setup, tmp_path, monkeypatch):
    import backend.downlink as downlink

    _, _, down, _ = setup
    monkeypatch.setattr(downlink, "MAX_PARTS", 3)  # as if the list had 65,537 cards
    csv = tmp_path / "big.csv"
    csv.write_text("token\n" + "".join("%032x\n" % (i * 7919 + 1) for i in range(3 * downlink.LIST_CHUNK + 1)))
    sent = []
    with pytest.raises(downlink.DownlinkError, match="at most 3"):
        down.authlist("evc-a1", list(read_csv(csv, None)), False, sent.append)
    assert sent == []


@pytest.mark.parametrize("text, message", [
    ("uid,status\nzz,accepted\n", "uid"), ("token\nABC\n", "token"), ("token,status\n%s,ok\n" % TOKENS[0], "status"),
    ("name\nx\n", "header"), ("token,balance\n%s,1.5\n" % TOKENS[0], "balance"), ("token\n%s\n%s\n" % (TOKENS[0], TOKENS[0]), "twice"),
])
def test_bad_card_lists_are_refused_with_the_line(tmp_path, text, message):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(CardListError, match=message):
        list(read_csv(f, b"k" * 16))


def test_tariff_document_compiles_signs_and_loads_on_the_device(setup, mpy):
    keys, _, down, _ = setup
    pytest.importorskip("evc.tariff")
    from evc.tariff import compile_doc

    default = ocpi_tariff("tariff_12_025kwh_min_price")
    other = ocpi_tariff("tariff_13_simple_3hour_5parking")
    build = lambda d, c, v: compile_doc(d, c, ver=v, tz="Europe/Berlin")  # noqa: E731
    down.tariff(None, default, None, build, lambda m: None)
    msgs = down.tariff("evc-a1", other, "C-1", build, lambda m: None)
    assert msgs[0][0] == "evc/evc-a1/tariff" and msgs[0][2] is True  # retained
    doc = body(msgs[0][1])
    assert doc["type"] == "tariff" and "C-1" in doc["contracts"]
    code = f"""
import json, binascii
from crypto import jws
from billing.tariff import TariffSet
doc = json.loads(jws.verify({msgs[0][1]!r}, binascii.unhexlify({keys.public_hex()!r}), "backend"))
ts = TariffSet.from_doc(doc)
emit({{"ver": doc["ver"], "ok": ts is not None}})
"""
    assert mpy.run(code).value == {"ver": doc["ver"], "ok": True}


def test_cli_publishes_signed_documents_to_the_broker(broker, tmp_path, charger):
    from backend.mqtt import connect, make_client

    common = ["--db", str(tmp_path / "b.db"), "--keys", str(tmp_path / "k"), "--broker", broker.url]
    run = lambda *a: subprocess.run([sys.executable, "-m", "backend", *a, *common], cwd=REPO,  # noqa: E731
                                    capture_output=True, text=True, timeout=60)
    (tmp_path / "d.pem").write_bytes(charger.pubkey_pem)
    (tmp_path / "cards.csv").write_text(f"token\n{TOKENS[0]}\n")
    assert run("keys", "init").returncode == 0
    assert run("device", "add", "evc-a1", "--pubkey", str(tmp_path / "d.pem")).returncode == 0
    got: list = []
    done = threading.Event()
    sub = make_client(broker.url, "test-sub")
    sub.on_message = lambda c, u, m: (got.append((m.topic, m.payload.decode())), len(got) >= 2 and done.set())
    connect(sub, broker.url)
    sub.subscribe("evc/evc-a1/#", qos=1)
    try:
        import time

        time.sleep(0.3)
        r = run("authlist", "push", "evc-a1", str(tmp_path / "cards.csv"))
        assert r.returncode == 0, r.stderr
        r = run("cmd", "stop", "evc-a1")
        assert r.returncode == 0, r.stderr
        assert done.wait(10)
    finally:
        sub.disconnect()
        sub.loop_stop()
    docs = {t: body(p) for t, p in got}
    assert docs["evc/evc-a1/cmd"]["cmd"] == "stop" and docs["evc/evc-a1/cmd"]["dev"] == "evc-a1"
    assert docs["evc/evc-a1/authlist"]["entries"][0]["token"] == TOKENS[0]
    assert run("authlist", "push", "--all").returncode == 2  # a full list needs a CSV: clear error


def test_largest_authlist_part_fits_the_devices_document_bound(tmp_path):
    """A part of LIST_CHUNK worst-case entries stays under uplink.max_doc_bytes (8 KiB) as a JWS."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from backend.downlink import LIST_CHUNK
    from backend.keys import sign_document

    worst = {"token": "a" * 32, "status": "accepted", "exp": 4102444800, "contract": "C" * 32,
             "balance": 2147483647, "bal_seq": 4294967295}
    doc = {"type": "authlist", "dev": "d" * 32, "ver": 1 << 40, "full": False, "base": (1 << 40) - 1,
           "part": 2047, "parts": 2048, "entries": [worst] * LIST_CHUNK}  # the device takes at most 2048 parts
    jws = sign_document(ec.generate_private_key(ec.SECP256R1()), doc)
    assert len(jws) < 8192
