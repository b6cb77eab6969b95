"""Screenshots for the README: `python -m scripts.screenshots` (needs chromium; writes docs/*.png).

The Advisor page as each of the four personas of ``webapp.personas`` sees it (the advice, from the recommendation
down; the form above it is the same for everyone), then the other pages whole."""
from pathlib import Path

from webapp.personas import PERSONAS, persona_path
from webapp.server import ROOT, browser_page, serve, wait_for_app

DOCS = ROOT / "docs"
WIDTH = 1400
PAGES = {"evidence": "/evidence", "guidelines": "/guidelines", "method": "/method"}
MAIN = "[data-testid='stMain']"


def _fit_to_content(page) -> int:
    """Streamlit scrolls inside its main block, not the document: grow the window to the content instead, once
    tables and charts have finished laying out (the height stops changing)."""
    heights = [0, -1]
    while heights[-1] != heights[-2]:
        page.wait_for_timeout(1000)
        heights.append(page.evaluate(f"document.querySelector(\"{MAIN}\").scrollHeight"))
    height = min(heights[-1], 8000)
    page.set_viewport_size({"width": WIDTH, "height": height})
    page.wait_for_timeout(2000)  # let the charts redraw at the new size
    return height


def _open(page, url: str) -> None:
    page.set_viewport_size({"width": WIDTH, "height": 900})
    page.goto(url)
    page.get_by_role("heading", level=1).first.wait_for(timeout=180_000)
    wait_for_app(page, timeout_ms=180_000)


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with serve(timeout_s=120) as (url, _), browser_page(width=WIDTH, height=900) as page:
        for name in PERSONAS:
            _open(page, url + persona_path(name))
            page.get_by_role("heading", name="Recommended:").wait_for(timeout=180_000)
            height = _fit_to_content(page)
            card = page.get_by_role("heading", name="Recommended:").bounding_box()
            top = max(0, card["y"] - 40)  # the card's top edge
            path = DOCS / f"advisor-{name}.png"
            page.screenshot(path=path, clip={"x": 0, "y": top, "width": WIDTH, "height": height - top})
            print(f"wrote {path.relative_to(ROOT)}")
        for name, route in PAGES.items():
            _open(page, url + route)
            _fit_to_content(page)
            page.screenshot(path=DOCS / f"{name}.png")
            print(f"wrote {Path('docs') / f'{name}.png'}")


if __name__ == "__main__":
    main()
