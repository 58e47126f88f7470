"""Third-party test facts kept in the repository, in our own format (see each file's "about").

ocpi/tariffs.json, ocpi/cases.json: the OCPI 2.2.1 worked examples (tariff parameters, session
periods and volumes, expected totals), each with its source. ocmf/records.json: published OCMF
records and signature cases with their keys and expected classification, each with its source.

The facts were written from the published material and are checked against a reference copy of
it by `python -m host_tests.data.check` (not part of the test suite). Nothing here reads outside the repository.
"""
from __future__ import annotations

import copy
import json
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent


@lru_cache(maxsize=None)
def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- OCPI 2.2.1 worked examples

def ocpi_cases() -> list[dict]:
    """Every case as stored: id, tariff (name), source, session, expected, exact, note."""
    return copy.deepcopy(_load("ocpi/cases.json")["cases"])


def ocpi_case_ids() -> list[str]:
    return [c["id"] for c in _load("ocpi/cases.json")["cases"]]


def ocpi_tariff_names() -> list[str]:
    return list(_load("ocpi/tariffs.json")["tariffs"])


def ocpi_tariff(name: str) -> dict:
    """The named example tariff as an OCPI 2.2.1 Tariff object (a fresh dict on every call)."""
    t = _load("ocpi/tariffs.json")["tariffs"][name]
    country, party = t["party"].split(" ")
    out: dict[str, Any] = {"country_code": country, "party_id": party, "id": t["id"], "currency": t["currency"]}
    for key in ("min_price", "max_price"):
        if key in t:
            out[key] = {"excl_vat": t[key][0], "incl_vat": t[key][1]}
    elements = []
    for el in t["elements"]:
        comps = []
        for dim, price, vat, step in el["prices"]:
            pc: dict[str, Any] = {"type": dim, "price": price}
            if vat is not None:  # absent, not 0: no VAT applies
                pc["vat"] = vat
            pc["step_size"] = step
            comps.append(pc)
        e: dict[str, Any] = {"price_components": comps}
        if "when" in el:
            e["restrictions"] = copy.deepcopy(el["when"])
        elements.append(e)
    out["elements"] = elements
    if "valid_from" in t:
        out["start_date_time"] = t["valid_from"]
    if "valid_until" in t:
        out["end_date_time"] = t["valid_until"]
    return out


def _case(case_id: str) -> dict:
    for c in _load("ocpi/cases.json")["cases"]:
        if c["id"] == case_id:
            return c
    raise KeyError(case_id)


def ocpi_cdr(case_id: str) -> dict:
    """The case's session as an OCPI 2.2.1 CDR object (the fields pricing reads, plus the totals)."""
    c = _case(case_id)
    s = c["session"]
    tariff = _load("ocpi/tariffs.json")["tariffs"][c["tariff"]]
    cdr: dict[str, Any] = {"id": s.get("cdr_id", c["id"]), "start_date_time": s["start"], "end_date_time": s["end"],
                           "currency": tariff["currency"]}
    if "tz" in s:
        cdr["cdr_location"] = {"time_zone": s["tz"]}
    cdr["tariffs"] = []
    cdr["charging_periods"] = [{"start_date_time": start, "dimensions": [{"type": k, "volume": v} for k, v in dims.items()]}
                               for start, dims in s["periods"]]
    totals = s["totals"]
    cdr["total_energy"] = totals["energy"]
    cdr["total_time"] = totals["time"]
    if "parking_time" in totals:
        cdr["total_parking_time"] = totals["parking_time"]
    cdr["total_cost"] = {k: float(Decimal(v)) for k, v in c["expected"].items()}
    return cdr


def ocpi_case(case_id: str) -> tuple[dict, dict, dict]:
    """(OCPI tariff, OCPI CDR, expected total_cost {"excl_vat", "incl_vat"} as the spec prints it)."""
    c = _case(case_id)
    return ocpi_tariff(c["tariff"]), ocpi_cdr(case_id), dict(c["expected"])


def write_ocpi_case(case_id: str, directory: Path) -> tuple[Path, Path]:
    """The case as tariff.json / cdr.json files in directory (for tools/price.py): their paths."""
    tariff, cdr, _ = ocpi_case(case_id)
    directory.mkdir(parents=True, exist_ok=True)
    t, c = directory / "tariff.json", directory / "cdr.json"
    t.write_text(json.dumps(tariff, indent=1))
    c.write_text(json.dumps(cdr, indent=1))
    return t, c


# ---------------------------------------------------------------- OCMF

def ocmf_sources() -> dict:
    return copy.deepcopy(_load("ocmf/records.json")["sources"])


def ocmf_records() -> list[dict]:
    """Each published OCMF record: file, index, record (the signed string), public_key, expect, source."""
    d = _load("ocmf/records.json")
    out = []
    for r in d["records"]:
        out.append({"file": r["file"], "index": r["n"], "record": r["ocmf"], "public_key": d["keys"][r["key"]],
                    "expect": r["expect"], "note": r.get("note", ""), "source": dict(d["sources"][r["src"]])})
    return out


def ocmf_signature_cases() -> list[dict]:
    """Each signature case: name, curve, payload, signature_der_hex, public_key_spki_der_hex,
    upstream_valid (as the upstream suite asserts), expect (valid/invalid/unsupported), source."""
    d = _load("ocmf/records.json")
    return [{"name": c["name"], "curve": c["curve"], "payload": c["payload"], "signature_der_hex": c["sig"],
             "public_key_spki_der_hex": c["key"], "upstream_valid": c["upstream_valid"], "expect": c["expect"],
             "source": dict(d["sources"][c["src"]])} for c in d["signature_cases"]]
