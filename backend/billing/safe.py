"""S.A.F.E. transparency software input: sessions as its XML container.

The Transparenzsoftware of S.A.F.E. e.V. reads a `<values>` root holding one `<value>` per
dataset (attributes `transactionId`: the number shown in its tree, `context`: a description);
each `<value>` holds one `<signedData format="OCMF" encoding="plain">` with the OCMF string as
signed (no white space before or after it: the software checks those exact characters) and a
`<publicKey encoding="plain">` with the device key as hex SubjectPublicKeyInfo DER (the form the
software decodes "plain" keys in). docs/billing.md shows an example.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from xml.etree import ElementTree as ET

from backend.billing.document import SessionRef

_HEX = re.compile(r"^[0-9A-Fa-f]+$")


class SafeExportError(ValueError):
    """A session that cannot go into the export (the message says which and why)."""


def _check(s: SessionRef) -> None:
    where = f"session {s.dev}/{s.seq}"
    if not isinstance(s.ocmf, str) or not s.ocmf.startswith("OCMF|") or s.ocmf != s.ocmf.strip():
        raise SafeExportError(f"{where}: OCMF string missing or not as signed")
    if not isinstance(s.pubkey_hex, str) or not _HEX.match(s.pubkey_hex) or len(s.pubkey_hex) % 2:
        raise SafeExportError(f"{where}: public key is not hex DER")
    if any(ord(c) < 32 for c in s.ocmf):
        raise SafeExportError(f"{where}: OCMF string holds control characters XML cannot carry")


def safe_xml(sessions: Iterable[SessionRef]) -> bytes:
    """The S.A.F.E. XML container of sessions (UTF-8 bytes); SafeExportError on an unfit session
    or none at all."""
    root = ET.Element("values")
    for n, s in enumerate(sessions, 1):
        _check(s)
        value = ET.SubElement(root, "value", {"transactionId": str(n), "context": "Transaction.End"})
        data = ET.SubElement(value, "signedData", {"format": "OCMF", "encoding": "plain", "transactionId": str(s.seq)})
        data.text = s.ocmf
        key = ET.SubElement(value, "publicKey", {"encoding": "plain"})
        key.text = s.pubkey_hex.upper()
    if not len(root):
        raise SafeExportError("no sessions to export")
    ET.indent(root, space="  ")  # only between elements; signedData's text stays exact
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode() + b"\n"
