"""Documents built by hand (tools/invoice_sample.py) around session records sealed by the firmware
itself under MicroPython, so OCMF strings and public keys on them are real and verify."""
from __future__ import annotations

from pathlib import Path

import pytest

from tools import invoice_sample as sample

LOGO = Path(__file__).resolve().parents[2] / "docs" / "img" / "sample-logo.svg"


@pytest.fixture(scope="session")
def signed(tmp_path_factory):
    """(SessionRefs, record dicts) of three sealed sessions of device evc-a1."""
    return sample.signed_sessions(tmp_path_factory.mktemp("device-key"))


@pytest.fixture(scope="session")
def brand():
    return sample.sample_brand(str(LOGO))


@pytest.fixture(scope="session")
def invoice(signed, brand):
    """Three sessions (two at 19 %, one at 7 %), a discount line and a fee line."""
    return sample.sample_invoice(*signed, brand)


@pytest.fixture(scope="session")
def credit_note(signed, brand):
    return sample.sample_credit_note(*signed, brand)


@pytest.fixture(scope="session")
def receipt(signed, brand):
    return sample.sample_receipt(*signed, brand)


@pytest.fixture(scope="session")
def invoice_de(signed, brand):
    return sample.sample_invoice(*signed, brand, lang="de")


def weasyprint_or_skip():
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError) as e:  # OSError: the Pango libraries are missing
        pytest.skip(f"weasyprint cannot run here (pip install -r requirements-dev.txt; apt-get install libpango-1.0-0 libpangoft2-1.0-0): {e}")


@pytest.fixture(scope="session")
def render(brand):
    """render(doc) -> PDF bytes, cached per document (rendering is the slow part)."""
    weasyprint_or_skip()
    from backend.billing.pdf import render_pdf

    cache: dict[int, bytes] = {}

    def go(doc, b=None):
        if b is not None:  # another brand: rendered afresh
            return render_pdf(doc, b)
        if id(doc) not in cache:  # the documents are session fixtures: their ids stay theirs
            cache[id(doc)] = render_pdf(doc, brand)
        return cache[id(doc)]

    return go
