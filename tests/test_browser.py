"""One real-browser run: `streamlit run app.py` driven by Playwright in Debian's Chromium."""

import os
from pathlib import Path

import pytest

browser_mod = pytest.importorskip("tests.browser", reason="tests/browser.py not importable")
expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect
if not os.path.exists(browser_mod.CHROMIUM):
    pytest.skip(f"{browser_mod.CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"


def test_default_demo_in_a_real_browser_shows_the_table(fast_run, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with browser_mod.serve() as url, browser_mod.browser() as b:
        page = b.new_page(viewport=browser_mod.DESKTOP)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser_mod.run_default_demo(page, url)
        table = page.locator('[data-testid="stDataFrame"]').first
        assert table.is_visible()
        assert page.get_by_text("KD gain", exact=True).first.is_visible()
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(ARTIFACTS / "default-demo.png"), full_page=True)

        # A file that is not an image, uploaded on the Dark knowledge page, is explained, not a traceback.
        browser_mod.open_page(page, "Dark knowledge")
        page.get_by_text("Upload an image").click()
        browser_mod.wait_idle(page)
        bogus = tmp_path / "not-an-image.png"
        bogus.write_bytes(b"this is not a PNG at all" * 10)
        page.locator('input[type="file"]').set_input_files(str(bogus))
        page.get_by_text("Could not read the image").first.wait_for(timeout=30_000)
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(ARTIFACTS / "bad-upload.png"), full_page=True)
        assert not errors, errors


def test_a_lesson_link_opens_the_lesson_with_the_named_controls_hidden(fast_run):
    ARTIFACTS.mkdir(exist_ok=True)
    with browser_mod.serve() as url, browser_mod.browser() as b:
        page = b.new_page(viewport=browser_mod.DESKTOP)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser_mod.open_link(
            page, url + "/Lessons?lesson=2&hide=alpha,teachers,dataset", "Lesson 2: T too low, T too high"
        )
        sidebar = page.get_by_test_id("stSidebar")
        # The controls the link does not name are there; the three it names are not.
        # The page may rerun once more as it writes the lesson's settings into the link: wait for its sidebar.
        for shown in ("Temperature T", "Student size", "Seed"):
            expect(sidebar.get_by_text(shown, exact=True)).to_have_count(1, timeout=30_000)
        for hidden in ("Weight α of the teacher", "Teacher ensemble (1 to 5)", "Dataset"):
            assert sidebar.get_by_text(hidden, exact=True).count() == 0, hidden
        assert page.get_by_role("button", name="Lock in my prediction").count() == 1
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(ARTIFACTS / "lesson-link.png"), full_page=True)
        assert not errors, errors


# The grid of a st.dataframe: its scroller is wider than its box when columns run off the right edge.
TABLES_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .map(t => ({scroller: t.querySelector('.dvn-scroller'),
              heads: [...t.querySelectorAll('th')].map(h => h.textContent)}))
  .filter(t => t.scroller && t.scroller.clientWidth > 0)
  .map(t => ({heads: t.heads, overflow: t.scroller.scrollWidth - t.scroller.clientWidth}))"""


def _overlap(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return False
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and (b["y"] < a["y"] + a["height"])
    )


@pytest.mark.parametrize("viewport", ["DESKTOP", "NARROW"])
def test_nothing_is_cut_off_at_desktop_or_phone_width(viewport, fast_run):
    size = getattr(browser_mod, viewport)
    narrow = viewport == "NARROW"
    with browser_mod.serve() as url, browser_mod.browser() as b:
        page = b.new_page(viewport=size)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.get_by_role("button", name="Run the default demo").wait_for(timeout=60_000)
        browser_mod.wait_idle(page)

        # Home: the loss formula fits the screen, and the diagram drawn is the one made for this width.
        formula = page.locator(".katex-display").first
        formula.scroll_into_view_if_needed()
        box = formula.bounding_box()
        # The formula's box is as wide as the page; what overflows is its last glyphs, so measure those.
        right = page.evaluate(
            "() => Math.max(...[...document.querySelectorAll('.katex-display .base')]"
            ".map(e => e.getBoundingClientRect().right))"
        )
        assert box["x"] >= 0 and right <= min(box["x"] + box["width"], size["width"]), (box, right)
        shown, hidden = ("diagram_narrow", "diagram_wide") if narrow else ("diagram_wide", "diagram_narrow")
        assert page.locator(f".st-key-{shown} img").is_visible()
        assert not page.locator(f".st-key-{hidden} img").is_visible()
        page.get_by_text("Words used here").click()
        assert page.get_by_text("The raw scores a network gives each class").is_visible()
        page.screenshot(path=str(ARTIFACTS / f"home-{viewport.lower()}.png"))

        browser_mod.run_default_demo(page, url)
        # The settings live in the sidebar, which a phone shows closed: the page says so where it starts.
        assert page.get_by_text("are in the sidebar", exact=False).first.is_visible()
        tables = page.evaluate(TABLES_JS)
        model_table = next(t for t in tables if "Model" in t["heads"])
        if narrow:
            # The few columns a phone shows next to the model are the ones that matter.
            assert "Accuracy %" in model_table["heads"][:3], model_table["heads"]
        else:
            assert model_table["overflow"] <= 0, model_table
        assert not any(h.endswith("…") for t in tables for h in t["heads"]), tables

        # Plotly's toolbar, shown on hover, keeps clear of the chart's title.
        chart = page.locator('[data-testid="stPlotlyChart"]').first
        chart.scroll_into_view_if_needed()
        chart_box = chart.bounding_box()
        page.mouse.move(chart_box["x"] + chart_box["width"] / 2, chart_box["y"] + chart_box["height"] / 2)
        page.wait_for_timeout(500)
        toolbar = chart.locator(".modebar").bounding_box()
        title = chart.locator(".gtitle").first.bounding_box()
        assert toolbar is not None and title is not None
        assert not _overlap(toolbar, title), (toolbar, title)
        page.screenshot(path=str(ARTIFACTS / f"distill-{viewport.lower()}.png"))

        if not narrow:
            for title in ("Compare", "Teachers", "History"):
                browser_mod.open_page(page, title)
                wide = [t for t in page.evaluate(TABLES_JS) if t["overflow"] > 0]
                assert not wide, (title, wide)
        assert page.get_by_text("Traceback").count() == 0
        assert not errors, errors


def test_a_running_distillation_draws_live_curves_and_stop_keeps_the_finished_epochs(fast_run):
    # The progress bar and the live curves are separate fragments redrawn at their own pace; both must show
    # while the students train, and Stop must end the run with the epochs both students finished.
    with browser_mod.serve() as url, browser_mod.browser() as b:
        page = b.new_page(viewport=browser_mod.DESKTOP)
        page.goto(f"{url}/Distill?epochs=400")
        page.get_by_role("button", name="Start", exact=True).wait_for(timeout=120_000)
        browser_mod.wait_idle(page)
        page.get_by_role("button", name="Start", exact=True).click()
        page.get_by_text("Training both students", exact=False).first.wait_for(timeout=60_000)
        charts = page.locator('[data-testid="stPlotlyChart"]')
        expect(charts.filter(has_text="Test accuracy").first).to_be_visible(timeout=15_000)
        expect(charts.filter(has_text="Training loss").first).to_be_visible()
        expect(page.get_by_role("button", name="Stop", exact=True)).to_be_enabled()  # drawn while it still runs
        assert page.locator('[data-testid="stProgress"]').count() == 1
        page.get_by_role("button", name="Stop", exact=True).click()
        page.get_by_text("KD gain", exact=True).first.wait_for(timeout=30_000)
        expect(page.get_by_text("stopped", exact=False).first).to_be_visible()
        assert page.get_by_text("Traceback").count() == 0
