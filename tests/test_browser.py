"""One real-browser run: `streamlit run app.py` driven by Playwright in Debian's Chromium."""

import os
from pathlib import Path

import pytest

browser_mod = pytest.importorskip("tests.browser", reason="tests/browser.py not importable")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
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
        for shown in ("Temperature T", "Student size", "Seed"):
            assert sidebar.get_by_text(shown, exact=True).count() == 1, shown
        for hidden in ("Weight α of the teacher", "Teacher ensemble (1 to 5)", "Dataset"):
            assert sidebar.get_by_text(hidden, exact=True).count() == 0, hidden
        assert page.get_by_role("button", name="Lock in my prediction").count() == 1
        assert page.get_by_text("Traceback").count() == 0
        page.screenshot(path=str(ARTIFACTS / "lesson-link.png"), full_page=True)
        assert not errors, errors
