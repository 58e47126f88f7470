"""Exports (CSV, OCPI 2.2.1 CDR with the OCMF string as signed data) and the USB journal import."""
from __future__ import annotations

import csv
import io
import json

from backend import export
from backend.db import open_db
from backend.importer import import_dir
from backend.ingest import Ingestor
from backend.keys import load_public_key
from backend.models import Device
from evc import verify as ev


def loaded(tmp_path, charger, records):
    sessions = open_db(str(tmp_path / "b.db"))
    with sessions.begin() as db:
        db.add(Device(id=charger.dev, pubkey=load_public_key(charger.pubkey_pem), added_at=0, head_seq=0, head_hash=""))
    folder = tmp_path / "usb"
    folder.mkdir()
    (folder / "journal-1.jws").write_text("\n".join(records[:7]) + "\n")
    (folder / "journal-2.jws").write_text("# exported by tools/flash.py\n" + "\n".join(records[5:]) + "\nnot a record\n")
    return sessions, folder


def test_import_dir_uses_the_same_verify_and_store_path(tmp_path, charger):
    sessions, folder = loaded(tmp_path, charger, charger.records)
    counts = import_dir(Ingestor(sessions), folder)
    assert counts == {"stored": 12, "duplicate": 2, "bad-topic": 1}
    again = import_dir(Ingestor(sessions), folder)
    assert again["stored"] == 0 and again["duplicate"] == 14


def test_csv_and_ocpi_cdr_exports(tmp_path, charger):
    sessions, folder = loaded(tmp_path, charger, charger.records)
    import_dir(Ingestor(sessions), folder)
    out = io.StringIO()
    first_start = json.loads(ev.verify_record(charger.records[2], charger.pubkey_pem.decode()).payload)["start"]["t"]
    n = export.to_csv(export.select_sessions(sessions, first_start, None, charger.dev), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert n == len(rows) == 10 and rows[0]["seq"] == "3" and rows[0]["energy_wh"] == "1500"
    out = io.StringIO()
    assert export.to_cdrs(export.select_sessions(sessions, None, None, None), out) == 12
    cdrs = json.loads(out.getvalue())
    c = cdrs[0]
    assert c["total_cost"] == {"excl_vat": 2.1, "incl_vat": 2.5} and c["total_energy"] == 1.5 and c["total_time"] == 0.5
    assert c["id"] == f"{charger.dev}-1" and c["auth_method"] == "WHITELIST" and c["currency"] == "EUR"
    signed = c["signed_data"]["signed_values"][0]
    assert c["signed_data"]["encoding_method"] == "OCMF"
    # The OCMF string verifies on its own with the published public key, as a customer's verifier would.
    assert ev.verify_ocmf(signed["signed_data"], bytes.fromhex(c["signed_data"]["public_key"]))
