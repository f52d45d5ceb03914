"""Experiments page, driven through Streamlit's AppTest: the four study tabs, a T × α sweep run to the end, and Stop.

The studies train one-epoch tiny students against the session's default teachers; the tests depend on
`fast_run` so those teachers are already cached when a study asks for them.
"""

import json
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the page imports `ui` from the repository root
    sys.path.insert(0, str(ROOT))

import ui  # noqa: E402
from kdcore import jobs  # noqa: E402
from kdcore.experiments import default_config  # noqa: E402

PAGE = str(ROOT / "pages" / "5_Experiments.py")
TABS = ["T × α sweep", "Less data", "Missing class", "Student capacity"]


def page(dataset: str = "mnist-sample", **config) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if config or dataset != "mnist-sample":
        at.session_state.config = default_config(dataset, **config)
    return at.run()


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def heatmap_cells(fig: dict) -> list[str]:
    """Text of every cell of the accuracy layer (the heatmap with a colour bar)."""
    layer = next(t for t in fig["data"] if t["type"] == "heatmap" and t.get("showscale") is not False)
    return [text for row in layer["text"] for text in row]


def start_sweep(at: AppTest, temperatures, alphas):
    at.multiselect(key="sweep_temperatures").set_value(temperatures)
    at.multiselect(key="sweep_alphas").set_value(alphas)
    at.button(key="start_sweep").click().run()
    job = ui.runner().get(at.session_state["experiment_job_sweep"])
    assert job is not None, "Start did not submit a sweep job"
    return job


def test_fresh_page_shows_the_four_studies_with_start_buttons():
    at = page()
    assert not at.exception
    assert [t.label for t in at.tabs] == TABS
    starts = [b for b in at.button if b.label == "Start"]
    assert len(starts) == 4 and not any(b.disabled for b in starts)
    assert all(b.disabled for b in at.button if b.label == "Stop")
    assert not at.get("plotly_chart")  # nothing has run yet


def test_emptying_the_grid_disables_start_and_says_why():
    at = page()
    at.multiselect(key="sweep_alphas").set_value([]).run()
    assert at.button(key="start_sweep").disabled
    assert any("at least one temperature and one α" in w.body for w in at.warning)


def test_tiny_sweep_draws_a_heatmap_around_scratch_and_its_reading(fast_run):
    at = page(epochs=1, student="mlp-tiny")
    job = start_sweep(at, [2.0, 4.0], [0.3, 0.7])
    assert job.wait(120), "the 2 × 2 sweep did not finish within two minutes"
    result = job.result()
    at.run()
    assert not at.exception and not at.error
    fig = next(f for f in figures(at) if any(t["type"] == "heatmap" for t in f["data"]))
    cells = heatmap_cells(fig)
    assert len(cells) == 4 and all("%" in c for c in cells)
    assert sum("★" in c for c in cells) == 1  # the best cell is marked, once
    layer = next(t for t in fig["data"] if t["type"] == "heatmap" and t.get("showscale") is not False)
    # The colour scale is centred on the scratch student's accuracy.
    assert (layer["zmin"] + layer["zmax"]) / 2 == pytest.approx(100 * result.scratch_acc)
    assert fig["layout"]["xaxis"]["title"]["text"] == "α (weight of the teacher)"
    assert fig["layout"]["yaxis"]["title"]["text"] == "temperature T"
    assert result.reading() in [i.body for i in at.info]


def test_stop_keeps_the_finished_cells(fast_run, monkeypatch):
    # The real sweep, held after its first distilled cell until Stop, so the stop always lands mid-grid.
    monkeypatch.setitem(jobs.FUNCTIONS, jobs.JobKind.SWEEP, "tests.jobfns:sweep_that_waits")
    at = page(epochs=1, student="mlp-tiny")
    job = start_sweep(at, [1.0, 2.0, 4.0], [0.25, 0.5, 0.75])
    deadline = time.time() + 90
    while not (job.progress().snapshot or {}).get("cells_done"):
        assert time.time() < deadline and not job.done, "no sweep cell finished in time"
        time.sleep(0.2)
    at.run()  # the live view: progress and the cells done so far
    assert any("Trained 2 of 10 students" in p.proto.text for p in at.get("progress"))  # scratch + one cell
    live = heatmap_cells(next(f for f in figures(at) if f["data"][0]["type"] == "heatmap"))
    assert sum(bool(c) for c in live) == 1
    at.button(key="stop_sweep").click().run()
    assert job.wait(60)
    at.run()
    assert not at.exception
    assert any("partial" in w.body for w in at.warning)
    cells = heatmap_cells(next(f for f in figures(at) if f["data"][0]["type"] == "heatmap"))
    assert sum(bool(c) for c in cells) == 1  # the finished cell stays; the other eight are marked "not run"
    assert job.result().reading() in [i.body for i in at.info]


def run_study(at: AppTest, kind: str):
    at.button(key=f"start_{kind}").click().run()
    job = ui.runner().get(at.session_state[f"experiment_job_{kind}"])
    assert job is not None and job.wait(120), f"the {kind} study did not finish within two minutes"
    at.run()
    assert not at.exception and not at.error
    assert job.result().reading() in [i.body for i in at.info]
    return job.result(), figures(at)


def test_less_data_plots_both_students_and_the_gap_per_share(fast_run):
    at = page(epochs=1, student="mlp-tiny")
    at.multiselect(key="fraction_values").set_value([0.05, 1.0])
    result, figs = run_study(at, "fraction")
    acc = next(f for f in figs if f["layout"]["title"]["text"] == "Test accuracy against training data")
    assert {t["name"] for t in acc["data"]} == {ui.ROLE_LABELS["scratch"], ui.ROLE_LABELS["distilled"]}
    assert acc["layout"]["xaxis"]["type"] == "log" and acc["layout"]["xaxis"]["ticktext"] == ["5 %", "100 %"]
    gap = next(f for f in figs if f["layout"]["yaxis"]["title"]["text"] == "KD gain (points)")
    assert gap["data"][0]["y"] == pytest.approx([100 * p.gain for p in result.points])


def test_missing_class_reports_the_class_overall_and_the_bias_value(fast_run):
    at = page(epochs=1, student="mlp-tiny")
    at.selectbox(key="missing_class_mnist-sample").set_value(5)
    at.toggle(key="missing_own_bias").set_value(True).run()
    at.number_input(key="missing_bias").set_value(2.5)
    result, figs = run_study(at, "missing-class")
    assert result.class_name == "5" and result.bias_value == 2.5
    bars = figs[0]["data"]
    assert [b["name"] for b in bars] == [
        "Teacher ensemble (saw it)",
        ui.ROLE_LABELS["scratch"],
        ui.ROLE_LABELS["distilled"],
        "Distilled + bias fix",
    ]
    assert all(b["x"] == ["class 5 (never seen)", "all classes"] for b in bars)
    assert any("raised by **2.50** (the value you set)" in m.value for m in at.markdown)


def test_capacity_plots_the_gain_against_student_size(fast_run):
    at = page(epochs=1, student="mlp-tiny")
    at.multiselect(key="capacity_students_mlp-tiny").set_value(["mlp-tiny", "mlp-small"])
    result, figs = run_study(at, "capacity")
    gain = next(f for f in figs if f["layout"]["title"]["text"] == "KD gain against student size")
    assert gain["layout"]["xaxis"]["type"] == "log"
    assert gain["data"][0]["x"] == [p.params for p in result.points]
    assert [t.split("<br>")[0] for t in gain["layout"]["xaxis"]["ticktext"]] == ["mlp-tiny", "mlp-small"]


def test_a_failed_study_shows_what_went_wrong_without_a_traceback(monkeypatch):
    monkeypatch.setitem(jobs.FUNCTIONS, jobs.JobKind.SWEEP, "tests.jobfns:fail")
    at = page()
    job = start_sweep(at, [2.0], [0.5])
    assert job.wait(30)
    at.run()
    assert not at.exception
    (error,) = at.error
    assert "epochs must be at least 1, got 0" in error.body and "Traceback" not in error.body
    assert not at.button(key="start_sweep").disabled  # the user can fix the grid and start again


def test_start_on_an_unavailable_dataset_explains_instead_of_running(monkeypatch):
    from kdcore import data as kdata

    offline = kdata.DatasetStatus(
        "cifar10",
        "unavailable",
        170_498_071,
        "",
        "CIFAR-10 is not on this computer and there is no internet connection to download it.",
    )
    monkeypatch.setattr(ui, "dataset_status", lambda: {"cifar10": offline})
    at = page("cifar10")
    at.button(key="start_capacity").click().run()
    assert not at.exception
    assert any("The dataset is not available" in e.body and "no internet" in e.body for e in at.error)
    assert "experiment_job_capacity" not in at.session_state
