"""The Dark knowledge page's decoupled-KD split and its "Watching the students learn" panel, driven with AppTest."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import pytest
from streamlit.testing.v1 import AppTest

from kdcore import jobs
from kdcore import probes as kprobes
from kdcore.experiments import default_config
from tests.test_app import ROOT, TIMEOUT, _texts, _values, _wait_for_jobs

EPOCHS = 3


def _dark(session_id: str | None = None, temperature: float | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/3_Dark_knowledge.py"), default_timeout=TIMEOUT)
    cfg = default_config("mnist-sample", epochs=EPOCHS)
    if temperature is not None:
        cfg = dataclasses.replace(cfg, temperature=temperature)
    at.session_state["config"] = cfg
    if session_id is not None:
        at.session_state["session_id"] = session_id
    return at.run()


def _figures(at: AppTest) -> dict[str, dict]:
    """Every plotly figure on the page by its title."""
    out = {}
    for chart in at.get("plotly_chart"):
        fig = json.loads(chart.proto.spec)
        title = fig["layout"].get("title", {})
        out[title.get("text", "") if isinstance(title, dict) else title] = fig
    return out


def _trace(fig: dict, name_start: str) -> list:
    trace = next(t for t in fig["data"] if t.get("name", "").startswith(name_start))
    return _values(trace["x"] if trace.get("orientation") == "h" else trace["y"])


@pytest.fixture(scope="module")
def distilled_session(fast_run):
    """A session id whose last distillation (mnist-sample, EPOCHS epochs) has finished, with its probes."""
    at = AppTest.from_file(str(ROOT / "pages/2_Distill.py"), default_timeout=TIMEOUT)
    at.session_state["config"] = default_config("mnist-sample", epochs=EPOCHS)
    at.run()
    next(b for b in at.button if b.label == "Start").click().run()
    _wait_for_jobs()
    at.run()
    assert not at.exception
    return at.session_state["session_id"]


def test_split_panel_shows_the_images_two_parts_and_their_means_against_t(fast_run):
    at = _dark(temperature=4.0)
    assert not at.exception, [e.value for e in at.exception]
    figs = _figures(at)
    bar = figs["The soft target's two parts at T = 4"]
    tckd = _trace(bar, "TCKD")
    used, lost = _trace(bar, "NCKD: how"), _trace(bar, "NCKD that")
    # Classical KD's bar is TCKD + (1 - p_t) NCKD; DKD's keeps NCKD whole, i.e. used + lost.
    assert tckd[0] == pytest.approx(tckd[1])
    assert used[0] + lost[0] == pytest.approx(used[1], rel=1e-4)
    assert lost[0] > 0 and lost[1] == 0
    caption = next(c.value for c in at.caption if "Classical KD multiplies NCKD by" in c.value)
    weight = float(caption.split("1 − p_t = **")[1].split("**")[0])
    assert used[0] == pytest.approx(weight * used[1], abs=0.01 * used[1] + 1e-3)
    curve = figs["The two parts over the test images vs T"]
    t_grid = _values(curve["data"][0]["x"])
    assert t_grid[0] == 1.0 and t_grid[-1] == 20.0
    marker = next(t for t in curve["data"] if t.get("name") == "T = 4")
    assert _values(marker["x"]) == [4.0, 4.0, 4.0]
    # The marked values are the curves' values at T = 4.
    i = t_grid.index(4.0)
    assert _values(marker["y"])[0] == pytest.approx(_values(curve["data"][0]["y"])[i], rel=1e-5)
    assert "Run a distillation on mnist-sample on the **Distill** page first" in _texts(at)


def test_split_panel_moves_with_t(fast_run):
    cold, hot = _dark(temperature=2.0), _dark(temperature=10.0)
    w_cold = _trace(_figures(cold)["The soft target's two parts at T = 2"], "NCKD: how")[0]
    w_hot = _trace(_figures(hot)["The soft target's two parts at T = 10"], "NCKD: how")[0]
    assert w_cold != pytest.approx(w_hot)


def test_watch_panel_scrubs_the_last_runs_epochs(distilled_session):
    at = _dark(distilled_session)
    assert not at.exception, [e.value for e in at.exception]
    slider = at.slider(key="watch_epoch")
    assert (slider.min, slider.max, slider.value) == (1, EPOCHS, EPOCHS)
    figs = _figures(at)
    bars = figs[f"This image after epoch {EPOCHS}"]
    assert [t["name"] for t in bars["data"]] == [
        "Teacher ensemble",
        "Scratch student (no teacher)",
        "Distilled student",
    ]
    late = [_values(t["y"]) for t in bars["data"]]
    slider.set_value(1).run()
    assert not at.exception
    figs = _figures(at)
    early = [_values(t["y"]) for t in figs["This image after epoch 1"]["data"]]
    assert early[0] == pytest.approx(late[0])  # the teacher does not train
    assert early[2] != pytest.approx(late[2])  # the distilled student does
    for title in ("Agrees with the teacher (probe images)", "Mean KL to the teacher (probe images)"):
        fig = figs[title]
        assert len([t for t in fig["data"] if t.get("mode") == "lines+markers"]) == 2
        assert fig["layout"]["shapes"][0]["x0"] == 1  # the shown epoch is marked
    points = figs["Probe images after epoch 1"]
    assert sum(len(_values(t["x"])) for t in points["data"]) == 2 * 100  # both students, 100 probe images


def test_play_steps_through_every_epoch_and_stops_at_the_last(distilled_session, monkeypatch):
    shown = []
    monkeypatch.setattr(kprobes, "next_epoch", _recording(kprobes.next_epoch, shown))
    at = _dark(distilled_session)
    at.slider(key="watch_epoch").set_value(1).run()
    next(b for b in at.button if b.label == "Play").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert shown == list(range(1, EPOCHS + 1))  # each epoch shown once, in order
    assert at.slider(key="watch_epoch").value == EPOCHS
    assert any(b.label == "Play" for b in at.button) and not any(b.label == "Pause" for b in at.button)
    # Play at the last epoch starts again from the first.
    shown.clear()
    next(b for b in at.button if b.label == "Play").click().run()
    assert shown == list(range(1, EPOCHS + 1))


def _recording(fn, shown):
    def wrapper(p, epoch):
        shown.append(epoch)
        return fn(p, epoch)

    return wrapper


def test_picking_a_probe_image_selects_it_at_the_top_of_the_page_too(distilled_session):
    at = _dark(distilled_session)
    p = next(
        j.result(timeout=0).probes
        for j in jobs.default_runner().jobs()
        if j.owner == distilled_session and j.result(timeout=0) is not None
    )
    position = 37
    at.selectbox(key="watch_image").set_value(position).run()
    assert not at.exception, [e.value for e in at.exception]
    options = at.selectbox(key="watch_image").options
    assert options[position] == f"test image #{int(p.indices[position])}: a 3"  # 10 probe images per class
    assert options[80].endswith(": an 8")
    figs = _figures(at)
    teacher = (p.teacher[position] * 100).tolist()
    # The scrub panel and the image at the top of the page both show that probe image.
    assert _values(figs[f"This image after epoch {EPOCHS}"]["data"][0]["y"]) == pytest.approx(teacher, rel=1e-4)
    top = next(fig for title, fig in figs.items() if title.startswith("Teacher at T = 1"))
    assert _values(top["data"][0]["y"]) == pytest.approx(teacher, rel=1e-4)
    points = figs[f"Probe images after epoch {EPOCHS}"]
    sizes = _values(points["data"][1]["marker"]["size"])
    assert sizes.index(max(sizes)) == position  # the picked image's dot stands out
    assert at.selectbox(key="watch_image").value == position
    # Choosing another way to pick images at the top lets the top show that way's images again.
    at.radio(key="dark_source").set_value("Most ambiguous to the teacher").run()
    assert not any(c.value.startswith("Showing test image #") for c in at.caption)
    top = next(fig for title, fig in _figures(at).items() if title.startswith("Teacher at T = 1"))
    assert _values(top["data"][0]["y"]) != pytest.approx(teacher, rel=1e-4)


def _chromium() -> bool:
    import os

    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    from tests.browser import CHROMIUM

    return os.path.exists(CHROMIUM)


@pytest.mark.skipif(not _chromium(), reason="needs playwright and /usr/bin/chromium")
def test_in_a_real_browser_a_clicked_dot_selects_its_image_and_play_reaches_the_last_epoch(fast_run):
    from playwright.sync_api import expect

    from tests import browser

    with browser.serve() as url, browser.browser() as b:
        page = b.new_page(viewport=browser.DESKTOP)
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        browser.run_default_demo(page, url)
        browser.open_page(page, "Dark knowledge")
        chart = page.locator('[data-testid="stPlotlyChart"]').filter(has_text="Probe images after epoch")
        chart.scroll_into_view_if_needed()
        page.wait_for_timeout(1000)
        plot = chart.locator(".js-plotly-plot")
        dots = plot.evaluate("d => d.data.map(t => Array.from(t.x).map((x, i) => [Math.log10(x), t.y[i] / 50]))")
        custom = plot.evaluate("d => d.data[1].customdata.map(c => c[1])")
        everyone = dots[0] + dots[1]

        def room(i):  # how far the distilled student's dot i is from every other dot: click one nothing covers
            x, y = dots[1][i]
            return min(math.dist((x, y), q) for j, q in enumerate(everyone) if j != len(dots[0]) + i)

        pick = max(range(len(custom)), key=room)
        chart.locator("g.points path").nth(len(dots[0]) + pick).click(force=True)
        browser.wait_idle(page)
        # The picked test image now shows in the scrub panel's picker and at the top of the page.
        picker = page.get_by_role("combobox", name="Probe image")
        expect(picker).to_have_value(re.compile(f"^test image #{custom[pick]}: "), timeout=30_000)
        expect(page.get_by_text(f"test image #{custom[pick]}", exact=True)).to_be_visible()  # the top image's caption
        slider = page.get_by_role("slider").last
        last = slider.get_attribute("aria-valuemax")
        page.get_by_role("button", name="Play").click()
        page.get_by_role("button", name="Pause").wait_for(timeout=30_000)
        page.get_by_role("button", name="Play").wait_for(timeout=180_000)  # back to Play after the last epoch
        browser.wait_idle(page)
        assert page.get_by_role("slider").last.get_attribute("aria-valuenow") == last
        assert page.get_by_text("Traceback").count() == 0 and not errors, errors


def test_the_dark_knowledge_pickers_are_the_engines_pick_modes():
    import ui  # pytest puts the repository root, which holds the tests package, on sys.path
    from kdcore import dark

    assert tuple(ui.PICK_LABELS.values()) == dark.PICK_MODES
