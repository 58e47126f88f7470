"""Brand files (TOML or JSON): what an operator writes, and clear errors for what is wrong."""
from __future__ import annotations

import json

import pytest

from backend.billing.brand import BrandError, load_brand

TOML = """
logo = "logo.svg"
primary_colour = "#aa3300"
accent_colour = "#112233"
footer = "Example Charge GmbH · HRB 1"
bank = "IBAN DE02 1203 0000 0000 2020 51"
timezone = "Europe/Berlin"

[seller]
name = "Example Charge GmbH"
address = ["Ladeweg 2"]
postcode = "10115"
city = "Berlin"
country = "DE"
vat_id = "DE123456789"
email = "billing@example.org"
legal_id = "HRB 1"
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "logo.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    return tmp_path


def test_toml_brand(folder):
    (folder / "brand.toml").write_text(TOML)
    b = load_brand(folder / "brand.toml")
    assert b.seller.name == "Example Charge GmbH" and b.seller.address == ("Ladeweg 2",)
    assert (b.seller.postcode, b.seller.city, b.seller.country, b.seller.vat_id) == ("10115", "Berlin", "DE", "DE123456789")
    assert b.seller.legal_id == "HRB 1"
    assert b.logo == str(folder / "logo.svg")
    assert (b.primary_colour, b.accent_colour) == ("#aa3300", "#112233")
    assert b.extra["timezone"] == "Europe/Berlin" and b.bank.startswith("IBAN")


def test_json_brand_with_defaults(folder):
    (folder / "brand.json").write_text(json.dumps({"seller": {"name": "Solo", "country": "AT"}}))
    b = load_brand(folder / "brand.json")
    assert b.seller.name == "Solo" and b.logo is None and b.primary_colour == "#0b6e4f"


@pytest.mark.parametrize("change, message", [
    ({"colour": "#fff"}, "unknown brand keys: colour"),
    ({"primary_colour": "red"}, "primary_colour must be a hex colour"),
    ({"logo": "missing.png"}, "must be an existing PNG, SVG or JPEG"),
    ({"timezone": "Mars/Olympus"}, "not an IANA zone"),
    ({"seller": {"name": "X"}}, "seller.country"),
    ({"seller": {"name": "X", "country": "Germany"}}, "seller.country"),
    ({"seller": {"name": "", "country": "DE"}}, "seller.name"),
    ({"seller": {"name": "X", "country": "DE", "iban": "1"}}, "unknown seller keys: iban"),
    ({"footer": "two\nlines"}, "footer"),
])
def test_bad_brand_files_name_the_problem(folder, change, message):
    data = {"seller": {"name": "Solo", "country": "DE"}, **change}
    (folder / "brand.json").write_text(json.dumps(data))
    with pytest.raises(BrandError, match=message):
        load_brand(folder / "brand.json")


def test_unreadable_and_malformed_files(folder):
    with pytest.raises(BrandError, match="cannot read"):
        load_brand(folder / "nope.toml")
    (folder / "b.toml").write_text("seller = [")
    with pytest.raises(BrandError, match="not valid TOML"):
        load_brand(folder / "b.toml")
