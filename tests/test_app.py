"""The Streamlit pages, driven in-process with AppTest: they render, run the demo, and explain bad input."""

from __future__ import annotations

import base64
import json
import math
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from kdcore import data as kdata
from kdcore import glossary, jobs, models, report, teachers
from kdcore.experiments import default_config

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))
TIMEOUT = 180


def _app(path: str) -> AppTest:
    return AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT)


def _wait_for_jobs(timeout: float = 300) -> None:
    deadline = time.time() + timeout
    for job in jobs.default_runner().jobs():
        job.wait(max(0.0, deadline - time.time()))


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [e.value for e in at.info]
    parts += [e.value for e in at.error] + [e.value for e in at.warning] + [e.value for e in at.success]
    return "\n".join(str(p) for p in parts)


def _metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _distilled(epochs: int = 1, dataset: str = "mnist-sample") -> AppTest:
    """The Distill page after pressing Start and waiting for the run (or its failure)."""
    at = _app("pages/2_Distill.py")
    at.session_state["config"] = default_config(dataset, epochs=epochs)
    at.run()
    next(b for b in at.button if b.label == "Start").click().run()
    _wait_for_jobs()
    at.run()
    return at


def _compare_of(distill_page: AppTest) -> AppTest:
    """The Compare page in the same browser session as this Distill page."""
    compare = _app("pages/4_Compare.py")
    compare.session_state["session_id"] = distill_page.session_state["session_id"]
    return compare.run()


@pytest.mark.parametrize("path", ["app.py", *PAGES])
def test_every_page_renders_in_a_fresh_session(path, fast_run):
    at = _app(path).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title or at.header or at.markdown, "the page drew nothing"


def test_the_default_demo_through_the_ui_gives_the_model_table(fast_run):
    at = _distilled(epochs=2)
    assert not at.exception, [e.value for e in at.exception]
    gain = _metric(at, "KD gain")
    assert gain.endswith("points")
    table = next(df.value for df in at.dataframe if "Accuracy (%)" in df.value.columns)
    assert {"Model", "Role", "Accuracy (%)", "Params", "Size (MB)", "Latency b=1 (ms)"} <= set(table.columns)
    assert set(table["Role"]) >= {"teacher", "ensemble", "scratch", "distilled"}
    # Two epochs on the MNIST sample are far above the 10 % of guessing.
    assert (table["Accuracy (%)"] > 70).all(), table


def _values(array) -> list:
    """A Plotly JSON array: a plain list, or numpy data Plotly sent as {"dtype", "bdata": base64}."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _probability_traces(at: AppTest) -> list:
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [
        tuple(round(y, 6) for y in trace["y"])
        for fig in figures
        for trace in fig["data"]
        if trace.get("type") == "bar" and "y" in trace
    ]


def test_teachers_already_trained_here_show_without_pressing_the_button(fast_run, fast_config):
    at = _app("pages/1_Teachers.py")
    at.session_state["config"] = fast_config
    at.run()
    _wait_for_jobs()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(df.value for df in at.dataframe if "Test accuracy (%)" in df.value.columns)
    assert len(table) == len(fast_config.teachers) + 1  # every member and the ensemble
    assert "loaded from cache" in set(table.astype(str).to_numpy().ravel())


def test_untrained_teachers_are_named_and_wait_for_the_button(fast_run, fast_config):
    at = _app("pages/1_Teachers.py")
    at.session_state["config"] = default_config("mnist-sample", teachers=("cnn-wide", "mlp-wide@2"))
    jobs_before = len(jobs.default_runner().jobs())
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    note = "\n".join(e.value for e in at.info)
    assert "mlp-wide@2" in note and "is not trained on this machine yet" in note and "1 of the 2" in note, note
    assert len(jobs.default_runner().jobs()) == jobs_before  # nothing trains until the user asks


def test_moving_t_changes_the_soft_targets_without_training(fast_run, fast_config):
    at = _app("pages/3_Dark_knowledge.py")
    at.session_state["config"] = fast_config
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    cache = list(teachers.cache_dir().glob("*.safetensors"))
    before_mtimes = {p: p.stat().st_mtime for p in cache}
    jobs_before = len(jobs.default_runner().jobs())
    low = _probability_traces(at)
    at.slider(key="w_temperature").set_value(12.0).run()
    assert not at.exception, [e.value for e in at.exception]
    high = _probability_traces(at)
    assert low and high and low != high, "the soft-target bars did not change with T"
    assert len(jobs.default_runner().jobs()) == jobs_before, "moving T started a job"
    assert {p: p.stat().st_mtime for p in cache} == before_mtimes, "moving T rewrote a cached teacher"


@pytest.fixture
def offline(monkeypatch):
    """No network at all, whatever the machine has: downloads and the probe both fail."""

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(kdata, "_urlopen", refuse)
    monkeypatch.setattr(kdata, "_can_connect", lambda *a, **k: False)


def test_an_unavailable_dataset_gives_the_explained_error(offline, fast_run):
    at = _distilled(dataset="mnist")
    assert not at.exception, [e.value for e in at.exception]
    text = "\n".join(e.value for e in at.error)
    assert "mnist" in text and "train-images-idx3-ubyte.gz" in text and "KD_DATA_DIR" in text, text
    assert "Traceback" not in _texts(at)


def test_a_shared_link_sets_the_controls_and_the_url_follows_them(fast_run):
    at = _app("pages/2_Distill.py")
    at.query_params.update({"student": "cnn-small", "T": "8", "alpha": "0.7", "epochs": "3", "seed": "5"})
    at.run()
    assert not at.exception
    assert at.slider(key="w_temperature").value == 8.0 and at.slider(key="w_alpha").value == 0.7
    assert at.session_state["config"].student == "cnn-small"
    at.slider(key="w_temperature").set_value(2.5).run()
    assert at.query_params["T"] == "2.5" and at.query_params["student"] == "cnn-small"


def test_a_bad_link_is_clamped_with_a_visible_warning(fast_run):
    at = _app("pages/2_Distill.py")
    at.query_params.update({"T": "99", "alpha": "banana", "dataset": "imagenet"})
    at.run()
    assert not at.exception
    warnings = "\n".join(w.value for w in at.warning)
    assert "T='99'" in warnings and "alpha" in warnings and "imagenet" in warnings
    assert at.slider(key="w_temperature").value == 20.0


def test_compare_offers_the_table_weights_and_onnx_of_this_sessions_run(fast_run):
    compare = _compare_of(_distilled())
    assert not compare.exception, [e.value for e in compare.exception]
    labels = [b.label for b in compare.get("download_button")]
    assert "Download table (CSV)" in labels and "Download as ONNX + model card (.zip)" in labels
    assert any("ONNX Runtime runs this student" in c.value for c in compare.caption)
    (chart,) = [json.loads(c.proto.spec) for c in compare.get("plotly_chart")]
    xaxis = chart["layout"]["xaxis"]
    latencies = [x for trace in chart["data"] if trace.get("mode") == "markers+text" for x in _values(trace["x"])]
    assert xaxis["type"] == "log" and len(latencies) == 6  # 3 teachers, the ensemble, 2 students
    # Every tick carries its value in ms, and the axis runs from a tick below the fastest model to one
    # above the slowest, so each latency can be read off between two labels.
    ticks = xaxis["tickvals"]
    assert xaxis["ticktext"] == [f"{t:g}" for t in ticks] and len(ticks) >= 2
    assert ticks[0] < min(latencies) and ticks[-1] > max(latencies)
    assert xaxis["range"] == pytest.approx([math.log10(ticks[0]), math.log10(ticks[-1])])


def test_an_instructor_link_hides_controls_and_can_lock_the_rest(fast_run):
    at = _app("pages/2_Distill.py")
    at.query_params.update({"hide": "alpha,teachers,dataset", "lock": "1", "T": "8"})
    at.run()
    assert not at.exception
    labels = {w.label for w in at.sidebar.selectbox} | {w.label for w in at.sidebar.slider}
    labels |= {w.label for w in at.sidebar.multiselect}
    assert "Weight α of the teacher" not in labels and "Dataset" not in labels
    assert "Teacher ensemble (1 to 5)" not in labels
    assert at.slider(key="w_temperature").value == 8.0 and at.slider(key="w_temperature").disabled
    assert not any(b.label == "Reset to defaults" for b in at.sidebar.button)
    assert at.session_state["config"].alpha == default_config().alpha  # hidden controls keep the preset
    assert at.query_params["hide"] == "dataset,teachers,alpha" and at.query_params["lock"] == "1"


def test_bad_instructor_link_values_are_dropped_with_a_warning(fast_run):
    at = _app("pages/2_Distill.py")
    at.query_params.update({"hide": "alpha,wings", "lock": "maybe", "lesson": "99"})
    at.run()
    assert not at.exception
    warnings = "\n".join(w.value for w in at.warning)
    assert "'wings'" in warnings and "lock='maybe'" in warnings and "lesson='99'" in warnings
    assert not at.slider(key="w_temperature").disabled


def test_distill_says_how_long_a_run_should_take_before_start(fast_run):
    at = _app("pages/2_Distill.py")
    at.session_state["config"] = default_config("mnist-sample", epochs=3)
    at.run()
    assert not at.exception
    # fast_run trained the same students on this machine, so the estimate comes from its speed.
    schedule = [c.value for c in at.caption if c.value.startswith(":material/schedule: ")]
    assert len(schedule) == 1 and schedule[0].endswith("on this machine (from the speed of recent runs).")
    assert not schedule[0].startswith(":material/schedule: No estimate")


def test_dark_knowledge_opens_on_an_image_with_a_clear_runner_up(fast_run, fast_config):
    at = _app("pages/3_Dark_knowledge.py")
    at.session_state["config"] = fast_config
    at.run()
    assert not at.exception
    assert at.radio(key="dark_source").value == "Clear runner-up"
    teacher_t1 = next(t for t in _probability_traces(at) if t)
    top_two = sorted(teacher_t1, reverse=True)[:2]
    assert top_two[1] > 5.0, f"the opening image's runner-up has only {top_two[1]:.2f} %"  # not a flat, sure image
    assert any("looks most like" in m.value for m in at.markdown)


def test_distill_and_compare_call_a_run_by_its_history_number(fast_run):
    distill_page = _distilled()
    saved = next(c.value for c in distill_page.caption if "Saved as run" in c.value)
    number = int(saved.split("Saved as run ")[1].split()[0])
    compare = _compare_of(distill_page)
    models = compare.dataframe[0].value["Model"].tolist()
    assert any(m.startswith(f"run {number}: distilled") for m in models), models


def test_distill_headlines_the_gain_with_its_range_and_can_repeat_it_over_seeds(fast_run):
    at = _distilled()
    text = _texts(at)
    assert "95 % range" in text and "1,000 test images" in text
    assert "test-set noise" in text  # within it, or beyond it: said in words either way
    next(b for b in at.button if b.label.startswith("Repeat over seeds")).click().run()
    _wait_for_jobs()
    at.run()
    assert not at.exception
    assert any("over 3 seeds" in i.value for i in at.info), [i.value for i in at.info]


def _help(element) -> str:
    return element.proto.help


def test_home_has_the_glossary_and_the_formula_explains_its_terms(fast_run):
    at = _app("app.py").run()
    assert not at.exception
    words = next(e for e in at.expander if e.label == "Words used here")
    assert glossary.as_markdown() in [m.value for m in words.markdown]
    (formula,) = at.latex
    for term in ("CE", "KL", "logits"):
        assert glossary.define(term) in _help(formula), term


def test_the_student_box_shows_the_name_and_its_description_below(fast_run):
    at = _app("pages/2_Distill.py").run()
    box = at.sidebar.selectbox(key="w_student")
    # A description inside the box was cut off mid-word ("mlp-medium (Medium MLP (two").
    assert box.options == [m.name for m in models.available("student")]
    assert models.ZOO[box.value].description in [c.value for c in at.sidebar.caption]


@pytest.mark.parametrize(
    "path", ["pages/1_Teachers.py", "pages/2_Distill.py", "pages/3_Dark_knowledge.py", "pages/5_Experiments.py"]
)
def test_pages_with_settings_say_where_the_sidebar_is(path, fast_run, fast_config):
    at = _app(path)
    at.session_state["config"] = fast_config
    at.run()
    hint = [c.value for c in at.main.caption if "are in the sidebar" in c.value]
    assert hint and "»" in hint[0], "a phone shows the sidebar closed: the page must say where the settings are"


def test_jargon_on_the_pages_is_explained_from_the_glossary(fast_run, fast_config):
    dark_page = _app("pages/3_Dark_knowledge.py")
    dark_page.session_state["config"] = fast_config
    dark_page.run()
    helps = " ".join(_help(h) for h in dark_page.subheader)
    for term in ("logits", "entropy", "soft targets"):
        assert glossary.define(term) in helps, term
    teachers_page = _app("pages/1_Teachers.py")
    teachers_page.session_state["config"] = fast_config
    teachers_page.run()
    _wait_for_jobs()
    teachers_page.run()
    assert glossary.define("ensemble") in " ".join(_help(m) for m in teachers_page.markdown)
    experiments_page = _app("pages/5_Experiments.py").run()
    helps = " ".join(_help(m) for m in experiments_page.markdown)
    for term in ("MLP", "temperature", "alpha", "data fraction"):
        assert glossary.define(term) in helps, term


def _columns(frame) -> dict[str, dict]:
    """A dataframe's column settings as the browser gets them: label, help, width."""
    return json.loads(frame.proto.columns)


def _shown_order(frame) -> list[str]:
    """The columns on screen, in their order (all of the data's when the page sets no order)."""
    return list(frame.proto.column_order) or list(frame.value.columns)


def test_model_tables_have_short_headers_explained_on_hover_and_compare_titles_its_table_first(fast_run):
    distill_page = _distilled()
    compare = _compare_of(distill_page)
    assert not compare.exception
    for at in (distill_page, compare):
        table = next(df for df in at.dataframe if report.ACCURACY in df.value.columns)
        columns, shown = _columns(table), _shown_order(table)
        # Long headers ("Speed-up vs ensemble (×)") were cut to "Speed…"; short ones fit, the meaning is on hover.
        labels = {c: columns.get(c, {}).get("label", c) for c in shown}
        assert all(len(label) <= 12 for label in labels.values()), labels
        assert all(columns.get(c, {}).get("help") for c in shown if c != report.ROLE)
        assert glossary.define("agreement") in columns[report.AGREEMENT]["help"]
        assert glossary.define("ECE") in columns[report.ECE]["help"]
        # What a phone shows next to the model name: its accuracy and how much faster it is.
        assert shown[:3] == [report.MODEL, report.ACCURACY, report.SPEEDUP]
    kinds = [(type(e).__name__, getattr(e, "value", None)) for e in compare.main]
    heading = kinds.index(("Subheader", "The table"))
    assert heading < next(i for i, (kind, _) in enumerate(kinds) if kind == "Dataframe")
    runs = next(df for df in distill_page.dataframe if "KD gain (points)" in df.value.columns)
    assert _columns(runs)["KD gain (points)"]["label"] == "KD gain"
