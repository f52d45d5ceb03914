"""Lessons page, driven through Streamlit's AppTest: every lesson from prediction to reveal, the instructor link's
parameters (good and bad), and the instructor panel's link and QR code.

The lessons run their real presets (a handful of short trainings each, lesson 2 the longest) against the
session's default teachers; the tests depend on `fast_run` so those teachers are already cached.
"""

import base64
import json
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the page imports `ui` and `charts` from the repository root
    sys.path.insert(0, str(ROOT))

import charts  # noqa: E402
import ui  # noqa: E402
from kdcore import jobs, lessons, links, studies  # noqa: E402
from kdcore.experiments import default_config  # noqa: E402

PAGE = str(ROOT / "pages" / "0_Lessons.py")
ALL = lessons.load_lessons()
JOB_TIMEOUT = 180


def page(**params: str) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params.update(params)
    return at.run()


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def sidebar_labels(at: AppTest) -> set[str]:
    widgets = [*at.sidebar.selectbox, *at.sidebar.multiselect, *at.sidebar.slider, *at.sidebar.number_input]
    return {w.label for w in widgets} | {w.label for w in at.sidebar.get("select_slider")}


def run_and_wait(at: AppTest, button: str, job_key: str):
    at.button(key=button).click().run()
    assert not at.exception, [e.value for e in at.exception]
    job = ui.runner().get(at.session_state[job_key])
    assert job is not None, f"{button} did not submit a job"
    assert job.wait(JOB_TIMEOUT), f"{job.name} did not finish within {JOB_TIMEOUT} s"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return job.result()


# What each chart must show, computed here from the result (in %), trace by trace.
def chart_values(chart: str, r) -> list[list[float]]:
    if chart == "soft-targets":
        return [r.probabilities(1.0), r.probabilities(r.config.temperature)]
    if chart == "gain-vs-temperature":
        return [[row[j] for row in r.gain] for j in range(len(r.alphas))]
    if chart == "gain-vs-alpha":
        return list(r.gain)
    if chart in ("gain-vs-student", "gain-vs-fraction"):
        return [[p.gain for p in r.points]]
    if chart == "missing-class":
        return [[row.missing_acc] for row in r.rows]
    raise AssertionError(f"no check for chart {chart}")


# Numbers of this run that the explanation must quote, in both its expected and its unexpected wording.
def quoted(lesson: lessons.Lesson, r) -> list[str]:
    if lesson.grader == "soft-targets":
        return [f"{(1 - max(r.probabilities(r.config.temperature))) * 100:.1f} %"]  # the others' share at T
    if lesson.grader == "best-temperature":
        return [f"{g * 100:+.1f} points" for g in chart_values("gain-vs-temperature", r)[0]]
    if lesson.grader == "best-alpha":
        return [f"{a * 100:.1f} %" for a in r.accuracy[0]]
    if lesson.grader in ("capacity", "fraction"):
        return [f"{p.gain * 100:+.1f} points" for p in r.points]
    if lesson.grader == "missing-class":
        return [f"{r.row('distilled + bias fix').missing_acc * 100:.1f} %"]
    raise AssertionError(f"no check for grader {lesson.grader}")


def prediction(lesson: lessons.Lesson) -> str:
    """The textbook answer for odd lessons, another one for even lessons, so both kinds of verdict are drawn."""
    if lesson.number % 2:
        return lesson.expected
    return next(c.outcome for c in lesson.choices if c.outcome != lesson.expected)


@pytest.mark.parametrize("lesson", ALL, ids=[f"lesson-{x.number}-{x.id}" for x in ALL])
def test_every_lesson_from_prediction_to_reveal(lesson, fast_run):
    n = lesson.number
    at = page()
    at.button(key=f"open_{n}").click().run()
    assert at.main.header[0].value == f"Lesson {n}: {lesson.title}"
    assert lesson.goal in markdown(at) and lesson.question in markdown(at)
    assert at.button(key=f"lesson_{n}_run").disabled, "Run must wait for a locked-in prediction"
    assert at.button(key=f"lesson_{n}_lock").disabled, "nothing is picked yet"

    choice = prediction(lesson)
    at.radio(key=f"lesson_{n}_radio").set_value(choice).run()
    at.button(key=f"lesson_{n}_lock").click().run()
    assert at.radio(key=f"lesson_{n}_radio").disabled and at.radio(key=f"lesson_{n}_radio").value == choice
    assert not at.button(key=f"lesson_{n}_run").disabled

    result = run_and_wait(at, f"lesson_{n}_run", f"lesson_{n}_job")
    # Run put the lesson's preset in the sidebar and the URL, like a shared link would.
    assert at.session_state["config"] == lesson.preset.config
    assert at.query_params["T"] == f"{lesson.preset.config.temperature:g}" and at.query_params["lesson"] == str(n)

    reveal = lessons.grade(lesson, choice, result)
    assert reveal.outcome is not None
    if reveal.matched:
        assert f"**✓ Right.** {reveal.verdict}" in [s.value for s in at.success]
    else:
        assert f"**✗ Not this time.** {reveal.verdict}" in [w.value for w in at.warning]
    (fig,) = figures(at)
    assert fig["layout"]["title"]["text"] == charts.TITLES[lesson.chart]
    expected = chart_values(lesson.chart, result)
    assert len(fig["data"]) == len(expected)
    for trace, values in zip(fig["data"], expected):
        assert trace["y"] == pytest.approx([100 * v for v in values])
    text = markdown(at)
    assert f"**What this run measured.** {reveal.measured}" in text
    why = next(m.value for m in at.markdown if m.value.startswith("**Why.**"))
    assert why == f"**Why.** {reveal.explanation}"
    for number in quoted(lesson, result):
        assert number in why, f"the explanation does not quote {number}: {why}"
    assert lesson.try_next.text in text
    assert not at.button(key=f"lesson_{n}_next").disabled


def test_try_this_next_applies_its_one_change_and_reveals_again(fast_run):
    lesson = lessons.find(ALL, 1)
    at = page(lesson="1")
    at.radio(key="lesson_1_radio").set_value("softer").run()
    at.button(key="lesson_1_lock").click().run()
    first = run_and_wait(at, "lesson_1_run", "lesson_1_job")
    then = run_and_wait(at, "lesson_1_next", "lesson_1_next_job")
    tried = lesson.tried_next()
    assert first.config.temperature == 8 and then.config.temperature == 20
    assert at.session_state["config"] == tried.preset.config
    assert at.slider(key="w_temperature").value == 20.0 and at.query_params["T"] == "20"
    # Both reveals stay, the second graded against the same locked-in prediction.
    verdicts = [s.value for s in at.success] + [w.value for w in at.warning]
    assert any(lessons.grade(tried, "softer", then).verdict in v for v in verdicts)
    assert any(lessons.grade(lesson, "softer", first).verdict in v for v in verdicts)
    subtitles = [f["layout"]["title"]["subtitle"]["text"] for f in figures(at)]
    assert [s.endswith(t) for s, t in zip(subtitles, ("T = 8", "T = 20"))] == [True, True]


def test_a_link_opens_its_lesson_and_the_list_is_one_click_away(fast_run):
    at = page(lesson="3")
    assert not at.exception
    assert at.main.header[0].value == "Lesson 3: From labels only to teacher only"
    assert list(at.radio(key="lesson_3_radio").options) == [c.text for c in lessons.find(ALL, 3).choices]
    at.button(key="lesson_back").click().run()
    assert not at.main.header and {f"open_{x.number}" for x in ALL} <= {b.key for b in at.button}
    assert "lesson" not in at.query_params


def test_a_link_to_an_unknown_lesson_warns_and_shows_the_list(fast_run):
    at = page(lesson="99")
    assert not at.exception
    assert any("lesson='99'" in w.value and "lessons: 1, 2, 3, 4, 5, 6" in w.value for w in at.warning)
    assert not at.main.header
    assert [b.key for b in at.button if b.key and b.key.startswith("open_")] == [f"open_{x.number}" for x in ALL]


def test_the_lessons_page_hides_and_locks_the_controls_a_link_names(fast_run):
    at = page(lesson="2", hide="alpha,teachers,dataset", lock="1")
    assert not at.exception
    labels = sidebar_labels(at)
    assert not labels & {"Weight α of the teacher", "Teacher ensemble (1 to 5)", "Dataset"}
    assert "Temperature T" in labels and at.slider(key="w_temperature").disabled
    assert at.main.header[0].value == "Lesson 2: T too low, T too high"
    assert at.query_params["hide"] == "dataset,teachers,alpha" and at.query_params["lock"] == "1"


def test_the_instructor_panel_composes_a_link_and_its_qr_code(fast_run):
    at = page(lesson="2")
    for name in ("alpha", "teachers"):
        at.checkbox(key=f"instructor_hide_{name}").check()
    at.checkbox(key="instructor_lock").check().run()
    assert not at.exception
    link = at.code[0].value
    parts = urlsplit(link)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    # No browser in AppTest tells the server its address, so the link starts from the local default.
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://localhost:8501/Lessons"
    preset = links.config_to_params(lessons.find(ALL, 2).preset.config)
    assert query == {"lesson": "2", "hide": "teachers,alpha", "lock": "1", **preset}
    # Opening the link gives lesson 2 with those controls hidden and the rest locked.
    view, warnings = links.view_from_params(query)
    assert view == links.LinkView(2, ("teachers", "alpha"), True) and not warnings
    (qr,) = at.get("image")
    shown = qr.proto.imgs[0].url
    assert shown.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(shown.split(",", 1)[1]).decode()
    # The QR code of exactly this link: everything after the <svg ...> tag (Streamlit adds an xmlns to the tag).
    assert svg.split(">", 1)[1] == links.qr_svg(link).split(">", 1)[1]
    # A link to the list carries neither a lesson nor a preset.
    at.selectbox(key="instructor_lesson_2").set_value(0).run()
    query = parse_qs(urlsplit(at.code[0].value).query)
    assert "lesson" not in query and "T" not in query and query["hide"] == ["teachers,alpha"]


def locked_in(number: int, choice: str) -> AppTest:
    at = page(lesson=str(number))
    at.radio(key=f"lesson_{number}_radio").set_value(choice).run()
    at.button(key=f"lesson_{number}_lock").click().run()
    return at


def test_a_failed_lesson_run_says_why_and_how_to_go_on(fast_run, monkeypatch):
    monkeypatch.setitem(jobs.FUNCTIONS, jobs.JobKind.LOOK, "tests.jobfns:fail")
    at = locked_in(1, "softer")
    at.button(key="lesson_1_run").click().run()
    job = ui.runner().get(at.session_state["lesson_1_job"])
    assert job.wait(60) and job.state is jobs.JobState.FAILED
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "epochs must be at least 1, got 0" in error.value and "Press **Run** to try again" in error.value
    assert not at.get("plotly_chart") and not at.success
    assert not at.button(key="lesson_1_run").disabled  # the learner can run it again


def test_a_lesson_stopped_mid_sweep_gives_a_partial_note_and_no_verdict(fast_run, monkeypatch):
    # The real sweep, held after its first cell until Stop, so the stop always lands with one of three T done.
    monkeypatch.setitem(jobs.FUNCTIONS, jobs.JobKind.SWEEP, "tests.jobfns:sweep_that_waits")
    at = locked_in(2, "middle")
    at.button(key="lesson_2_run").click().run()
    job = ui.runner().get(at.session_state["lesson_2_job"])
    deadline = time.time() + JOB_TIMEOUT
    while not (job.progress().snapshot or {}).get("cells_done"):
        assert time.time() < deadline and not job.done, "no sweep cell finished in time"
        time.sleep(0.2)
    at.run()
    assert at.get("progress"), "the running lesson shows its progress"
    assert at.button(key="lesson_2_run").disabled
    at.button(key="lesson_2_stop").click().run()
    assert job.wait(60)
    at.run()
    assert not at.exception
    assert job.result().partial
    assert any("Stopped early: partial result" in w.value for w in at.warning)
    assert any(i.value.startswith("No verdict yet") for i in at.info)
    assert "Run the lesson again and let it finish." in markdown(at)
    assert not at.get("plotly_chart")  # one temperature is nothing to compare


def test_every_chart_a_lesson_may_name_is_drawn_from_its_result(fast_run):
    assert set(charts.LESSON_CHARTS) == set(lessons.CHARTS)  # an edited lessons file cannot name an undrawable chart
    run, _ = fast_run
    bars = charts.lesson_chart("students", run)
    assert [t.y[0] for t in bars.data] == pytest.approx(
        [100 * run.row(r).accuracy for r in ("ensemble", "scratch", "distilled")]
    )
    curves = charts.lesson_chart("learning-curves", run)
    assert list(curves.data[1].y) == pytest.approx([100 * e.test_acc for e in run.curves["distilled"]])
    sweep = studies.SweepResult(
        default_config("mnist-sample"), [1.0, 4.0], [0.5, 1.0], [[0.91, 0.92], [0.93, None]], 0.90
    )
    heat = charts.lesson_chart("sweep-heatmap", sweep).data[0]
    assert [[None if v is None else round(v, 6) for v in row] for row in heat.z] == [[1.0, 2.0], [3.0, None]]
    with pytest.raises(ValueError, match="chart must be one of: soft-targets"):
        charts.lesson_chart("pie", run)
