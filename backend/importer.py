"""Records exported over USB (tools/flash.py export-journal): files of JWS records, one per line
(blank lines and lines starting with # are skipped). Same verify/store path as MQTT; no acks are
sent (the device learns them when it next connects and resends)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from backend import verify
from backend.ingest import Ingestor

BATCH = 200


def records_in(folder: Path):
    """(file, JWS) for every record line in the folder's files, in name order."""
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        with open(path, encoding="utf-8", errors="backslashreplace") as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield path, line


def import_dir(ingestor: Ingestor, folder: Path, prefix: str = "evc") -> Counter:
    counts: Counter = Counter()
    batch: list[tuple[str, str]] = []
    for path, jws in records_in(folder):
        kid, _ = verify.peek(jws)
        # The topic a device would have used; a record without a readable kid lands as an anomaly.
        batch.append((f"{prefix}/{kid}/rec" if kid else f"import:{path.name}", jws))
        if len(batch) >= BATCH:
            counts.update(o.kind for o in ingestor.ingest_many(batch))
            batch.clear()
    if batch:
        counts.update(o.kind for o in ingestor.ingest_many(batch))
    ingestor.sweep_gaps()
    return counts
