"""tools/invoice_sample.py: the command that makes docs/img/invoice-sample.png and sample files."""
from __future__ import annotations

from host_tests.documents.conftest import weasyprint_or_skip


def test_sample_tool_writes_png_pdfs_and_exports(tmp_path):
    weasyprint_or_skip()
    from PIL import Image

    from tools import invoice_sample

    png = tmp_path / "page.png"
    assert invoice_sample.main(["--png", str(png), "--out", str(tmp_path / "out"), "--lang", "de"]) == 0
    with Image.open(png) as im:
        w, h = im.size
        assert abs(h / w - 297 / 210) < 0.01 and w > 800  # an A4 page, readable size
        assert len(im.convert("RGB").resize((64, 90)).getcolors(64 * 90)) > 20  # not a blank page
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == ["credit-note.pdf", "credit-note.xml", "invoice.pdf", "invoice.xml", "receipt.pdf", "sessions.safe.xml"]
    assert (tmp_path / "out" / "invoice.pdf").read_bytes().startswith(b"%PDF-")
