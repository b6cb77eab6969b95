"""Screenshots of every page for the README: `python -m scripts.screenshots` (needs chromium; writes docs/*.png)."""
from pathlib import Path

from webapp.server import ROOT, browser_page, serve, wait_for_app

DOCS = ROOT / "docs"
EXAMPLE = ("?n_classes=6&images_per_class=10&domain=textures&image_size_px=300&colour=true&hardware=l4&region=DEU"
           "&budget_money_usd=400&budget_co2_kg=0.01&accuracy_weight=0.7")
PAGES = {"advisor": "/" + EXAMPLE, "evidence": "/evidence", "guidelines": "/guidelines", "method": "/method"}


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    with serve() as (url, _), browser_page(width=1400, height=900) as page:
        for name, path in PAGES.items():
            page.set_viewport_size({"width": 1400, "height": 900})
            page.goto(url + path)
            page.get_by_role("heading", level=1).first.wait_for(timeout=120_000)
            wait_for_app(page, timeout_ms=120_000)
            # Streamlit scrolls inside its main block, not the document: grow the window to the content instead,
            # once tables and charts have finished laying out (the height stops changing).
            heights = [0, -1]
            while heights[-1] != heights[-2]:
                page.wait_for_timeout(1000)
                heights.append(page.evaluate("document.querySelector(\"[data-testid='stMain']\").scrollHeight"))
            page.set_viewport_size({"width": 1400, "height": min(heights[-1], 6000)})
            page.wait_for_timeout(2000)  # let the charts redraw at the new size
            page.screenshot(path=DOCS / f"{name}.png")
            print(f"wrote {Path('docs') / f'{name}.png'}")


if __name__ == "__main__":
    main()
