"""The payment service with the Adyen adapter, through the official `Adyen` SDK pointed at a small
local Adyen emulator (sim/adyen_emu.py, which signs its webhooks with its own implementation of
Adyen's HMAC scheme; the adapter checks them with the SDK's): hold through the hosted page, start
command, capture of exactly the signed total, release, partial refund, forged notifications."""
from __future__ import annotations

import copy
import json

import pytest
import requests

from backend.payments.adyen_gateway import AdyenGateway
from backend.payments.gateway import GatewayError, WebhookError
from host_tests.payments.test_stripe_service import CODE, DEV, HOLD, Rig
from sim.adyen_emu import API_KEY, HMAC_KEY, MERCHANT, AdyenEmulator, sign_item


@pytest.fixture
def adyen_emu():
    with AdyenEmulator() as emu:
        yield emu


class AdyenRig(Rig):
    def __init__(self, db_target, emu, tmp_path):
        super().__init__(db_target, emu, tmp_path, AdyenGateway(API_KEY, MERCHANT, HMAC_KEY, checkout_base=f"{emu.url}/v72"))

    def pay(self, card: str = "4111111111111111"):
        p, url, _ = self.service.begin(DEV, CODE, lambda pid: f"http://pay.example/p/{pid}")
        assert url.startswith(self.emu.url) and p.hold_id.startswith("CS")
        r = requests.post(url, data={"card": card}, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["Location"] == f"http://pay.example/p/{p.id}"
        self.deliver()
        return self.row(p.id)

    def deliver(self):
        for note in self.emu.notifications:
            if not note.get("seen"):
                note["seen"] = True
                body = json.dumps({k: v for k, v in note.items() if k != "seen"}).encode()
                self.service.on_webhook(body, {})


@pytest.fixture
def rig(db_target, adyen_emu, tmp_path):
    r = AdyenRig(db_target, adyen_emu, tmp_path)
    yield r
    r.close()


def test_adyen_hold_capture_exact_total_and_partial_refund(rig):
    p = rig.pay()
    assert p.state == "commanded" and not p.hold_id.startswith("CS"), p.hold_id  # the pspReference now
    cmd = rig.command()
    assert (cmd["cmd"], cmd["hold"], cmd["ref"]) == ("start", HOLD, p.id)
    rig.record(p, 5, 1717)
    rig.service.sweep()
    p = rig.row(p.id)
    assert (p.state, p.captured) == ("captured", 1717)
    assert rig.emu.payments[p.hold_id]["captured"] == 1717
    # the same key again: Adyen's saved answer, no second capture
    assert rig.gateway.capture(p.hold_id, 1717, "EUR", f"capture:{DEV}:5") == 1717
    assert [e for e in rig.emu.executed if e[0] == "capture"] == [("capture", p.hold_id, 1717)]
    rig.service.refund(p.id, 700)
    assert rig.emu.payments[p.hold_id]["refunded"] == 700
    with pytest.raises(GatewayError):  # the gateway itself refuses more than is left
        rig.gateway.refund(p.hold_id, 2000, "EUR", "refund:other")


def test_adyen_never_started_releases_and_refused_card_starts_nothing(rig):
    p = rig.pay()
    rig.clock.t += 1000
    rig.service.sweep()
    assert rig.row(p.id).state == "released" and rig.emu.payments[p.hold_id]["cancelled"]
    rig.service.on_status(DEV, {"state": "idle", "pay": "ZZZZZZZ2"})
    rig.sent.clear()
    p2, url, _ = rig.service.begin(DEV, "ZZZZZZZ2", lambda pid: "http://pay.example/")
    requests.post(url, data={"card": "4000000000000002"}, allow_redirects=False, timeout=10)
    rig.deliver()
    assert rig.row(p2.id).state == "failed" and rig.sent == []


def test_adyen_notifications_are_checked_with_their_hmac(rig):
    p, url, _ = rig.service.begin(DEV, CODE, lambda pid: "http://pay.example/")
    item = {"additionalData": {}, "amount": {"currency": "EUR", "value": HOLD}, "eventCode": "AUTHORISATION",
            "merchantAccountCode": MERCHANT, "merchantReference": p.id, "originalReference": "",
            "pspReference": "8815000000000001", "reason": "", "success": "true"}
    forged_key = copy.deepcopy(item)
    forged_key["additionalData"]["hmacSignature"] = sign_item(item, "00" * 32)
    tampered = copy.deepcopy(item)
    tampered["additionalData"]["hmacSignature"] = sign_item(item, HMAC_KEY)
    tampered["amount"]["value"] = 1  # changed after signing
    for bad in (forged_key, tampered, item):  # another key, a changed amount, no signature
        body = json.dumps({"live": "false", "notificationItems": [{"NotificationRequestItem": bad}]}).encode()
        with pytest.raises(WebhookError):
            rig.service.on_webhook(body, {})
    assert rig.row(p.id).state == "new" and rig.sent == []
