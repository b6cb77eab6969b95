"""End to end in a real browser: Debian's chromium (Playwright) against `streamlit run app.py` on a free localhost
port. Fills the form, gets the recommendation, downloads the personal PDF and reads it back; opens the Method page
and finds every source named there. (tests/test_personas.py tries the four personas of issue #16.)"""
import io
import re

import pytest
from pypdf import PdfReader

from evidence_snapshot import snapshot_db
from webapp.server import browser_page, chromium_path, serve, wait_for_app

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (scripts/bootstrap.sh installs it with apt)")


def choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox by typing its text."""
    page.get_by_label(label, exact=True).click()
    page.keyboard.type(option)
    page.keyboard.press("Enter")


def test_the_form_gives_a_recommendation_and_a_readable_pdf_report(tmp_path):
    with serve(snapshot_db(tmp_path), timeout_s=120) as (url, _), browser_page() as page:
        page.goto(url)
        page.get_by_label("Classes", exact=True).fill("6")
        page.get_by_label("Labelled images per class").fill("10")
        choose(page, "Image domain", "textures")
        choose(page, "Hardware", "NVIDIA L4")
        page.get_by_role("spinbutton", name="Working resolution (px)").fill("160")
        page.get_by_label("Money budget (USD, compute + labour)").fill("400")
        page.get_by_role("button", name="Recommend").click()
        heading = page.get_by_role("heading", name=re.compile("^Recommended: "))
        heading.wait_for(timeout=120_000)
        wait_for_app(page)
        recommended = heading.inner_text().removeprefix("Recommended: ").strip()
        assert "n_classes=6" in page.url and "hardware=l4" in page.url and "domain=textures" in page.url
        assert "working_resolution_px=160" in page.url
        assert "Working resolution 160 px" in page.inner_text("[data-testid='stMain']")

        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("button", name="Download your report (PDF)").click()
        path = tmp_path / "report.pdf"
        download.value.save_as(path)

        page.goto(url + "/method")
        page.get_by_role("heading", name="Decision quality of the recommender").wait_for(timeout=120_000)
        wait_for_app(page)
        method = page.inner_text("[data-testid='stMain']")
        assert "Sources of every number the advice uses" in method and "{" not in method  # no raw JSON

    reader = PdfReader(io.BytesIO(path.read_bytes()))
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert len(reader.pages) >= 2
    assert f"Recommended: {recommended}" in " ".join(text.split())
    assert "CO₂" in text and "NVIDIA L4" in text and "160 px" in text
