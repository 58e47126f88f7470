"""The served backend signs every ack with its key: {"type": "ack", "dev", "seq", "hash"}, hash the
SHA-256 of record seq's payload as stored (the chain hash). Records from the firmware, real broker."""
from __future__ import annotations

import json

from evc.verify import verify_jws
from sim.backend import register
from sim.records import ChargerLink, payload_hash


def test_acks_are_signed_and_name_the_stored_record(broker, backends, db_target, charger):
    register(db_target, charger)
    backend = backends(broker.url, db_target)
    pub = backend.keys.public_hex()
    dev = ChargerLink(broker.url, charger.dev, charger.records, backend_key=pub)  # counts only genuine acks
    raw: list[bytes] = []
    dev.client.message_callback_add(f"evc/{charger.dev}/ack", lambda c, u, m: (raw.append(m.payload), dev._on_message(c, u, m)))
    try:
        dev.send(range(1, 5))
        assert dev.wait_acked(4)
        dev.send([2, 3])  # duplicates: acked again with the current head
        dev.send(range(5, 9))
        assert dev.wait_acked(8)
    finally:
        dev.close()
    assert dev.bad_acks == [] and raw
    for doc in dev.ack_docs:
        assert set(doc) == {"type", "dev", "seq", "hash"} and doc["type"] == "ack" and doc["dev"] == charger.dev
        assert doc["hash"] == payload_hash(charger.records[doc["seq"] - 1])
    head, payload = verify_jws(raw[-1], pub)
    assert head == {"alg": "ES256", "kid": "backend"} and json.loads(payload)["seq"] == 8
