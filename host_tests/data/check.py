"""Check the test facts in host_tests/data against the reference copy of the third-party vectors.

    python -m host_tests.data.check [--shared PATH]

The test suite reads only host_tests/data, where the third-party test vectors are written out as
facts in our own format (the repository never carries third-party files). This script re-derives
every one of those facts from the reference folder (default: ../shared/vectors beside the
checkout) and reports each difference:

- ocpi: per case the tariff (every pricing field of the OCPI Tariff), the CDR's session, periods,
  volumes and totals, the expected and exact totals, the source (spec example, published file);
  every reference case must be present here and nothing extra; fields we do not hold must be
  known non-pricing ones.
- ocmf: per indexed record the signed string, the public key, the expected classification and the
  project/file/index it comes from (also found in that file); per road-labs case the payload,
  signature, key, curve and expectation; each source's repository, commit and licence holder.

Exit status: 0 all facts agree, 1 differences (listed), 2 the reference folder is missing.
Not a pytest test on purpose: the suite must run (and not skip) without the reference folder.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from host_tests import data  # noqa: E402

# Tariff/CDR fields the pricing does not read, which the data therefore does not hold.
TARIFF_NOT_HELD = {"last_updated", "type", "tariff_alt_text", "tariff_alt_url"}
# Of cdr_location only time_zone is held.
CDR_NOT_HELD = {"country_code", "party_id", "cdr_token", "auth_method", "tariffs", "total_time_cost", "last_updated"}
PERIOD_NOT_HELD = {"tariff_id"}
OCMF_DIRS = {"safe-ev_transparenzsoftware": "tps", "pyocmf_examples": "pyocmf"}
ROAD_LABS = "road-labs_ocmf-js"


class Report:
    def __init__(self) -> None:
        self.diffs: list[str] = []
        self.checked = 0

    def eq(self, where: str, ours: Any, ref: Any, names: tuple[str, str] = ("data", "reference")) -> None:
        self.checked += 1
        for path, a, b in differences(canon(ours), canon(ref)):
            self.diffs.append(f"{where}{path}: {names[0]} has {short(a)}, {names[1]} has {short(b)}")

    def same_set(self, where: str, ours: Any, ref: Any) -> None:
        self.checked += 1
        ours, ref = set(ours), set(ref)
        if ref - ours:
            self.diffs.append(f"{where}: missing from the data: {sorted(ref - ours)}")
        if ours - ref:
            self.diffs.append(f"{where}: not in the reference: {sorted(ours - ref)}")

    def true(self, where: str, ok: bool, what: str) -> None:
        self.checked += 1
        if not ok:
            self.diffs.append(f"{where}: {what}")


def canon(v: Any) -> Any:
    """Compare numbers by value (0.50 == 0.5, 20 == 20.0), everything else exactly."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float, Decimal)):
        return ("num", Decimal(str(v)).normalize())
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [canon(x) for x in v]
    raise TypeError(type(v))


_ABSENT = "<absent>"


def differences(a: Any, b: Any, path: str = "") -> list[tuple[str, Any, Any]]:
    """Where two canonical values differ, down to the leaves: [(path, ours, reference)]."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += differences(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [(path, _plain(a), _plain(b))]


def _plain(v: Any) -> Any:
    if isinstance(v, tuple) and v[:1] == ("num",):
        return format(v[1], "f")
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def short(v: Any) -> str:
    s = json.dumps(v, default=str)
    return s if len(s) <= 160 else s[:150] + f"... ({len(s)} chars)"


def ref_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_float=Decimal)


# ---------------------------------------------------------------- OCPI

def check_ocpi(ref: Path, r: Report) -> None:
    expected = ref_json(ref / "expected.json")
    by_id = {e["id"]: e for e in expected}
    ours = {c["id"]: c for c in data.ocpi_cases()}
    r.same_set("ocpi: case ids", ours, by_id)
    r.eq("ocpi: case count", len(ours), 19)
    used_tariffs = set()
    for cid in sorted(set(ours) & set(by_id)):
        c, e = ours[cid], by_id[cid]
        w = f"ocpi/{cid}"
        case_dir = ref / "cases" / cid
        ref_tariff = ref_json(case_dir / "tariff.json")
        ref_cdr = ref_json(case_dir / "cdr.json")
        tariff, cdr, want = data.ocpi_case(cid)
        used_tariffs.add(c["tariff"])

        # expected totals and the exact value
        r.eq(f"{w}: expected total_cost", want, e["expected_total_cost"])
        r.true(f"{w}: expected total_cost", all(isinstance(v, str) for v in want.values()),
               "must be strings at the printed precision")
        r.eq(f"{w}: expected total_cost (printed form)", want, {k: str(v) for k, v in e["expected_total_cost"].items()})
        r.eq(f"{w}: exact", {k: Decimal(v) for k, v in c["exact"].items()},
             {k: Decimal(v) for k, v in e["reference_pricer_exact"].items()})

        # source: the spec example and the published file
        src = c["source"]
        r.true(f"{w}: source.example", src.get("example", "") != "" and src["example"] in e["spec_section"],
               f"{src.get('example')!r} is not the reference's spec section {e['spec_section']!r}")
        published = src.get("published_as", "").split(" examples/")[-1].split(" ")[0]
        ref_file = "cdr_example.json" if cid == "cdr_example" else e["tariff"]
        r.eq(f"{w}: source.published_as file", published, ref_file)
        r.true(f"{w}: source.spec", src.get("spec", "").startswith("OCPI 2.2.1"), "spec must name OCPI 2.2.1")

        # tariff: every field the pricing reads; the rest must be known non-pricing fields
        extra = set(ref_tariff) - TARIFF_NOT_HELD - set(tariff)
        r.true(f"{w}: tariff fields", not extra, f"reference tariff has fields the data does not hold: {sorted(extra)}")
        r.eq(f"{w}: tariff", tariff, {k: v for k, v in ref_tariff.items() if k not in TARIFF_NOT_HELD})
        r.eq(f"{w}: tariff name", c["tariff"] + ".json" if cid != "cdr_example" else "cdr_example.json", ref_file)
        published_tariff = ref / "tariffs" / ref_file
        if published_tariff.exists():
            pub = ref_json(published_tariff)
            if cid == "cdr_example":
                r.eq(f"{w}: case cdr.json vs published", ref_cdr, pub, ("case file", "published file"))
                pub = pub["tariffs"][0]
            r.eq(f"{w}: case tariff.json vs published", ref_tariff, pub, ("case file", "published file"))
        else:
            r.true(w, False, f"published file tariffs/{ref_file} not in the reference")

        # CDR: session, periods and volumes, totals
        extra = set(ref_cdr) - CDR_NOT_HELD - {"cdr_location"} - set(cdr)
        r.true(f"{w}: cdr fields", not extra, f"reference CDR has fields the data does not hold: {sorted(extra)}")
        for key in ("id", "start_date_time", "end_date_time", "currency", "total_energy", "total_time",
                    "total_parking_time", "total_cost"):
            r.eq(f"{w}: cdr.{key}", cdr.get(key), ref_cdr.get(key))
        loc = ref_cdr.get("cdr_location") or {}
        r.eq(f"{w}: cdr time zone", (cdr.get("cdr_location") or {}).get("time_zone"), loc.get("time_zone"))
        periods = []
        for p in ref_cdr["charging_periods"]:
            extra = set(p) - PERIOD_NOT_HELD - {"start_date_time", "dimensions"}
            r.true(f"{w}: period fields", not extra, f"reference period has fields the data does not hold: {sorted(extra)}")
            types = [d["type"] for d in p["dimensions"]]
            r.true(f"{w}: period dimensions", len(types) == len(set(types)), f"a dimension twice in one period: {types}")
            periods.append({"start_date_time": p["start_date_time"], "dimensions": p["dimensions"]})
        r.eq(f"{w}: charging_periods", cdr["charging_periods"], periods)
        if cid == "cdr_example":
            r.eq(f"{w}: embedded tariff", ref_cdr["tariffs"][0], ref_tariff, ("cdr.json", "tariff.json"))
        r.eq(f"{w}: cdr total_cost", ref_cdr["total_cost"],
             {k: Decimal(v) for k, v in e["expected_total_cost"].items()}, ("cdr.json", "expected.json"))
    r.same_set("ocpi: tariffs held = tariffs the cases use", data.ocpi_tariff_names(), used_tariffs)


# ---------------------------------------------------------------- OCMF

def classify(check: str) -> str:
    if check.startswith("VALID"):
        return "valid"
    if check == "INVALID":
        return "invalid"
    if check.startswith("unsupported"):
        return "unsupported"
    raise ValueError(f"unknown independent_check {check!r}")


def check_ocmf(ref: Path, r: Report) -> None:
    readme = (ref / "README.md").read_text(encoding="utf-8")
    sources = data.ocmf_sources()
    folders = {v: k for k, v in OCMF_DIRS.items()} | {"road-labs": ROAD_LABS}
    r.same_set("ocmf: sources", sources, folders)
    for name, s in sources.items():
        w = f"ocmf: source {name}"
        for key in ("repository", "commit", "licence", "holder"):
            r.true(w, bool(s.get(key)) and s[key] in readme, f"{key} {s.get(key)!r} not named in the reference README")
        lic = ref / folders.get(name, "?") / "LICENSE"
        r.true(w, lic.exists() and s["holder"] in lic.read_text(encoding="utf-8"),
               f"holder {s['holder']!r} not in {lic.relative_to(ref) if lic.exists() else lic}")

    index = ref_json(ref / "ocmf_records_index.json")
    ours = {(e["file"], e["index"]): e for e in data.ocmf_records()}
    r.eq("ocmf: record count", len(ours), len(index))
    r.same_set("ocmf: records", ours, ((e["file"], e["index"]) for e in index))
    texts: dict[Path, str] = {}
    for e in index:
        key = (e["file"], e["index"])
        w = f"ocmf/{e['file']}#{e['index']}"
        o = ours.get(key)
        if o is None:
            continue
        r.eq(f"{w}: record", o["record"], e["record"])
        r.eq(f"{w}: public_key", o["public_key"], e["public_key"])
        r.eq(f"{w}: expect", o["expect"], classify(e["independent_check"]))
        r.eq(f"{w}: note", bool(o["note"]), "raw-rs" in e["independent_check"])
        homes = [d for d in OCMF_DIRS if (ref / d / e["file"]).exists()]
        r.true(w, len(homes) == 1, f"file found in {homes}")
        if len(homes) == 1:
            r.eq(f"{w}: source", o["source"], sources[OCMF_DIRS[homes[0]]])
            path = ref / homes[0] / e["file"]
            if path not in texts:
                texts[path] = html.unescape(path.read_text(encoding="utf-8"))
            r.true(f"{w}: record", o["record"] in texts[path], f"record not found in {homes[0]}/{e['file']}")
            r.true(f"{w}: public_key", o["public_key"] in texts[path], f"key not found in {homes[0]}/{e['file']}")

    cases = ref_json(ref / ROAD_LABS / "verify_cases.json")
    mine = {c["name"]: c for c in data.ocmf_signature_cases()}
    r.same_set("ocmf: road-labs case names", mine, (c["name"] for c in cases))
    r.eq("ocmf: road-labs case count", len(data.ocmf_signature_cases()), len(cases))
    for c in cases:
        o = mine.get(c["name"])
        if o is None:
            continue
        w = f"ocmf/road-labs/{c['name']}"
        r.eq(f"{w}: hash", "SHA-256", c["hash"])
        for ours_key, ref_key in (("curve", "curve"), ("payload", "payload"), ("signature_der_hex", "signature_der_hex"),
                                  ("public_key_spki_der_hex", "public_key_spki_der_hex"), ("upstream_valid", "expected_valid")):
            r.eq(f"{w}: {ours_key}", o[ours_key], c[ref_key])
        want = "unsupported" if c["curve"] == "secp192k1" else ("valid" if c["expected_valid"] else "invalid")
        r.eq(f"{w}: expect", o["expect"], want)
        r.eq(f"{w}: source", o["source"], sources["road-labs"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared" / "vectors",
                    help="the reference vectors folder (default: ../shared/vectors beside the checkout)")
    a = ap.parse_args(argv)
    ref = a.shared
    missing = [p for p in (ref / "ocpi" / "expected.json", ref / "ocmf" / "ocmf_records_index.json") if not p.is_file()]
    if missing:
        print(f"check: reference vectors not found at {ref} (missing {', '.join(map(str, missing))}); "
              "pass --shared PATH", file=sys.stderr)
        return 2
    r = Report()
    check_ocpi(ref / "ocpi", r)
    check_ocmf(ref / "ocmf", r)
    for d in r.diffs:
        print(f"MISMATCH {d}")
    if r.diffs:
        print(f"check: {len(r.diffs)} of {r.checked} checks differ from {ref}")
        return 1
    print(f"check: host_tests/data agrees with {ref} ({r.checked} checks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
