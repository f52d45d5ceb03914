"""Beyond Hinton 2015 in the app (issue 10): the sidebar's Method box and each method's own controls, what the
Distill page draws for DKD, the teacher assistant and born-again students, and the capacity study's assistant
line. AppTests assert what a user sees; the rest checks the rows those charts are drawn from."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import charts
from kdcore import assistant, glossary, jobs, methods, report, studies
from kdcore import data as kdata
from kdcore import events as ev
from kdcore.experiments import default_config
from tests.synthetic import run_result

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180


def _distill_page(cfg=None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages/2_Distill.py"), default_timeout=TIMEOUT)
    if cfg is not None:
        at.session_state["config"] = cfg
    return at.run()


def _ran(cfg) -> AppTest:
    """The Distill page after pressing Start with this config and waiting for the run."""
    at = _distill_page(cfg)
    next(b for b in at.button if b.label == "Start").click().run()
    deadline = time.time() + 600
    for job in jobs.default_runner().jobs():
        job.wait(max(0.0, deadline - time.time()))
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _figures(at: AppTest) -> dict[str, dict]:
    """Every plotly chart on the page by its title."""
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figures}


def _labels(at: AppTest) -> set[str]:
    sb = at.sidebar
    return {w.label for kind in (sb.selectbox, sb.slider, sb.toggle, sb.multiselect) for w in kind}


# --------------------------------------------------------------------------- the sidebar


def test_the_method_box_names_the_four_methods_in_words_and_shows_only_the_chosen_ones_controls():
    at = _distill_page()
    assert not at.exception, [e.value for e in at.exception]
    box = at.sidebar.selectbox(key="w_method")
    assert box.options == [
        "Hinton KD (2015)",
        "Decoupled KD (DKD)",
        "Teacher assistant",
        "Self-distillation (born-again)",
    ]
    assert box.value == "kd" and glossary.define("Decoupled KD (DKD)") in box.proto.help
    own = {"Weight α_tc of the target class (TCKD)", "Teacher assistant", "Born-again generations"}
    assert not own & _labels(at) and "Weight α of the teacher" in _labels(at)

    box.set_value("dkd").run()
    assert {"Weight α_tc of the target class (TCKD)", "Weight β_nc of the other classes (NCKD)"} <= _labels(at)
    assert "Weight α of the teacher" not in _labels(at)  # DKD does not use α
    assert at.sidebar.slider(key="w_beta_nc").value == 0.5  # mnist-sample's measured default
    hint = next(c.value for c in at.main.caption if "are in the sidebar" in c.value)
    assert "Decoupled KD (DKD), T = 4, α_tc = 1, β_nc = 0.5" in hint
    assert "Teacher assistant" not in _labels(at) and "Born-again generations" not in _labels(at)

    at.sidebar.selectbox(key="w_method").set_value("self").run()
    assert "Born-again generations" in _labels(at) and "Weight α_tc of the target class (TCKD)" not in _labels(at)


def test_dkd_weights_go_into_the_runs_config_and_the_link():
    at = _distill_page()
    at.sidebar.selectbox(key="w_method").set_value("dkd").run()
    cfg = at.session_state["config"]
    assert cfg.method == "dkd" and cfg.beta_nc is None and cfg.nckd_weight == 0.5
    at.sidebar.slider(key="w_alpha_tc").set_value(2.0).run()
    at.sidebar.slider(key="w_beta_nc").set_value(4.0).run()
    cfg = at.session_state["config"]
    assert (cfg.alpha_tc, cfg.beta_nc) == (2.0, 4.0)
    assert at.query_params["method"] == "dkd" and at.query_params["beta_nc"] == "4"


def test_the_assistant_box_offers_only_models_larger_than_the_student_and_follows_a_new_student():
    at = _distill_page(default_config("mnist-sample", student="mlp-tiny"))
    at.sidebar.selectbox(key="w_method").set_value("ta").run()
    box = at.sidebar.selectbox(key="w_assistant")
    choices = assistant.choices("mlp-tiny", "mnist-sample")
    assert [o.split(" (")[0] for o in box.options] == choices and "mlp-tiny" not in choices
    assert box.value == "mlp-small" and any("next size up" in o for o in box.options)
    assert at.session_state["config"].assistant_arch == "mlp-small"
    box.set_value("mlp-medium").run()
    assert at.session_state["config"].assistant == "mlp-medium" and at.query_params["assistant"] == "mlp-medium"
    # A student as large as that assistant gets its own default instead.
    at.sidebar.selectbox(key="w_student").set_value("mlp-medium").run()
    assert at.sidebar.selectbox(key="w_assistant").value == "mlp-wide"
    assert at.session_state["config"].assistant_arch == "mlp-wide"


def test_a_student_with_no_larger_model_gets_a_warning_not_a_traceback():
    at = _distill_page()
    at.sidebar.selectbox(key="w_method").set_value("ta").run()
    at.sidebar.selectbox(key="w_student").set_value("bn-medium").run()
    assert not at.exception
    warnings = " ".join(w.value for w in at.sidebar.warning)
    assert "No model is larger than the student bn-medium" in warnings
    assert not at.sidebar.error


def test_generations_go_into_the_config_and_the_link():
    at = _distill_page()
    at.sidebar.selectbox(key="w_method").set_value("self").run()
    at.sidebar.slider(key="w_generations").set_value(3).run()
    assert at.session_state["config"].generations == 3 and at.query_params["generations"] == "3"


def test_consistent_augmentation_is_a_toggle_with_help_that_methods_without_views_turn_off_with_a_warning():
    at = _distill_page()
    toggle = at.sidebar.toggle(key="w_augment")
    assert toggle.label == "Consistent augmentation" and glossary.define("consistent augmentation") in toggle.help
    toggle.set_value(True).run()
    assert at.session_state["config"].augment
    at.sidebar.selectbox(key="w_method").set_value("ta").run()
    assert not at.exception
    assert any("it is off for Teacher assistant" in w.value for w in at.sidebar.warning)
    assert not at.session_state["config"].augment and at.session_state["config"].method == "ta"


def test_the_augmentation_toggle_is_absent_where_the_dataset_has_no_views(monkeypatch):
    monkeypatch.delitem(kdata.VIEWS, "mnist-sample")
    at = _distill_page()
    assert not at.exception and "Consistent augmentation" not in _labels(at)


def test_a_link_with_a_method_sets_its_controls_and_an_instructor_can_hide_them():
    at = AppTest.from_file(str(ROOT / "pages/2_Distill.py"), default_timeout=TIMEOUT)
    at.query_params.update({"method": "dkd", "beta_nc": "2", "hide": "alpha_tc"})
    at.run()
    assert not at.exception
    assert at.sidebar.selectbox(key="w_method").value == "dkd" and at.sidebar.slider(key="w_beta_nc").value == 2.0
    assert "Weight α_tc of the target class (TCKD)" not in _labels(at)
    assert at.session_state["config"].beta_nc == 2.0


def test_the_experiments_page_offers_no_method_its_studies_do_not_use():
    at = AppTest.from_file(str(ROOT / "pages/5_Experiments.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "Method" not in _labels(at) and "Consistent augmentation" in _labels(at)


def test_the_capacity_studys_plan_counts_the_students_it_distils_through_the_assistant():
    at = AppTest.from_file(str(ROOT / "pages/5_Experiments.py"), default_timeout=TIMEOUT)
    at.session_state["config"] = default_config("mnist-sample", student="mlp-small", epochs=2)
    at.run()
    plan = next(c.value for c in at.caption if c.value.startswith("9 students of 2 epochs"))
    assert "the teacher assistant mlp-medium, and mlp-tiny, mlp-small also distilled through it" in plan


def test_every_method_name_the_app_shows_is_in_the_glossary():
    for name in methods.LABELS.values():
        assert glossary.define(name)
    for term in ("TCKD", "NCKD", "born-again", "teacher assistant", methods.AUGMENT_LABEL):
        assert glossary.define(term)


# --------------------------------------------------------------------------- what the charts are drawn from


def _epoch(model, epoch, parts=None, acc=0.9):
    return ev.Epoch(model=model, epoch=epoch, epochs=3, loss=1.0, hard=0.5, soft=0.2, test_acc=acc, parts=parts)


def test_dkds_parts_per_epoch_come_from_the_distilled_students_epochs():
    curves = {
        "distilled": [
            ev.Step(model="distilled", epoch=0.5, epochs=3, loss=1, hard=1, soft=1, parts={"tckd": 9, "nckd": 9}),
            _epoch("distilled", 1, {"tckd": 0.3, "nckd": 1.2}),
            _epoch("distilled", 2, {"tckd": 0.2, "nckd": 0.8}),
        ],
        "scratch": [_epoch("scratch", 1, {"tckd": 5.0, "nckd": 5.0})],
    }
    assert methods.loss_parts(curves) == {"tckd": [(1, 0.3), (2, 0.2)], "nckd": [(1, 1.2), (2, 0.8)]}
    assert methods.loss_parts({"distilled": [_epoch("distilled", 1)]}) == {"tckd": [], "nckd": []}
    fig = charts.dkd_parts(curves, 3)
    assert [t.name for t in fig.data] == ["TCKD (target class)", "NCKD (non-target classes)"]
    assert list(fig.data[1].y) == [1.2, 0.8]


def _born_again(generations=(0.80, 0.84, 0.83)):
    result = run_result(scratch=generations[0], distilled=generations[-1])
    result.generations = list(generations)
    return result


def test_generation_rows_start_at_the_scratch_student_and_end_at_the_distilled_one():
    rows = methods.generation_rows(_born_again())
    assert [(r.generation, r.name, r.distilled) for r in rows] == [
        (0, "scratch", False),
        (1, "generation 1", False),
        (2, "generation 2", True),
    ]
    reading = methods.generations_reading(_born_again())
    assert "80.0 %" in reading and "83.0 %" in reading and "went up and down" in reading and "96.0 %" in reading
    assert "each generation beat" in methods.generations_reading(_born_again((0.8, 0.81, 0.82)))
    assert methods.generation_rows(run_result()) == [] and methods.generations_reading(run_result()) == ""


def test_the_generation_chart_has_a_bar_per_generation_and_the_ensembles_line():
    fig = charts.generation_accuracy(methods.generation_rows(_born_again()), 0.96)
    (bars,) = fig.data
    assert list(bars.x) == ["0: scratch", "1: born-again", "2: distilled"]
    assert [round(v, 1) for v in bars.y] == [80.0, 84.0, 83.0]
    assert fig.layout.shapes[0].y0 == pytest.approx(96.0)
    assert "teacher ensemble 96.0 %" in fig.layout.annotations[0].text


def test_the_comparison_table_labels_an_assistants_row_as_such():
    result = run_result()
    ta = default_config("mnist-sample", student="mlp-tiny", method="ta")
    result.config = ta
    result.rows.insert(2, replace(result.row("scratch"), name="assistant (mlp-small)", role="assistant"))
    table = report.comparison_table([result])
    row = table[table[report.ROLE] == "assistant"]
    assert row[report.MODEL].tolist() == ["run 1: teacher assistant mlp-small (from the ensemble, T=4, α=0.5)"]
    assert "via assistant mlp-small" in table[table[report.ROLE] == "distilled"][report.MODEL].item()
    assert "Chain: teacher ensemble → assistant mlp-small → student mlp-tiny" in methods.chain_caption(ta)


def test_the_capacity_chart_draws_the_assistant_line_with_a_legend_entry():
    snap = {
        "teacher_acc": 0.97,
        "teacher_params": 3_000_000,
        "points": [
            {"student": "mlp-tiny", "params": 25_000, "scratch_acc": 0.85, "distilled_acc": 0.86,
             "assistant": "mlp-medium", "assisted_acc": 0.88},
            {"student": "mlp-small", "params": 50_000, "scratch_acc": 0.9, "distilled_acc": 0.91,
             "assistant": "mlp-medium", "assisted_acc": None},
            {"student": "mlp-medium", "params": 270_000, "scratch_acc": 0.93, "distilled_acc": 0.95,
             "assistant": None, "assisted_acc": None},
        ],
    }  # fmt: skip
    fig = charts.capacity_accuracy(snap)
    line = next(t for t in fig.data if t.name == "Distilled through the assistant mlp-medium")
    assert list(line.x) == [25_000, 50_000] and list(line.y) == [pytest.approx(88.0), None]
    assert fig.layout.showlegend is not False
    assert studies.assisted_sizes("mlp-tiny", ["mlp-tiny", "mlp-small", "mlp-medium"], "mnist-sample") == [
        "mlp-tiny",
        "mlp-small",
    ]


# --------------------------------------------------------------------------- runs on the Distill page


def test_a_dkd_run_shows_its_two_parts_per_epoch(fast_run):
    at = _ran(default_config("mnist-sample", epochs=2, method="dkd"))
    figures = _figures(at)
    parts = figures["DKD's two parts (distilled student)"]
    names = [t["name"] for t in parts["data"]]
    assert names == ["TCKD (target class)", "NCKD (non-target classes)"]
    assert all(len(t["x"]) == 2 for t in parts["data"])  # one point per epoch
    assert any("DKD's two parts" in m.value for m in at.markdown)


def test_a_born_again_run_shows_accuracy_per_generation_against_the_ensemble(fast_run):
    at = _ran(default_config("mnist-sample", epochs=1, method="self", generations=2))
    fig = _figures(at)["Test accuracy per generation"]
    (bars,) = [t for t in fig["data"] if t["type"] == "bar"]
    assert list(bars["x"]) == ["0: scratch", "1: born-again", "2: distilled"]
    assert any("teacher ensemble" in a["text"] for a in fig["layout"]["annotations"])
    assert any("Born-again generations" in m.value for m in at.markdown)
    curves = _figures(at)["Test accuracy"]
    assert [t["name"] for t in curves["data"]] == [
        "Scratch student (no teacher)",
        "Born-again generation 1",
        "Distilled student",
    ]
    table = next(df.value for df in at.dataframe if report.ACCURACY in df.value.columns)
    assert "generation" in set(table[report.ROLE])


def test_a_teacher_assistant_run_lists_the_assistant_and_explains_the_chain(fast_run):
    at = _ran(default_config("mnist-sample", epochs=1, student="mlp-tiny", method="ta"))
    table = next(df.value for df in at.dataframe if report.ACCURACY in df.value.columns)
    (label,) = table[table[report.ROLE] == "assistant"][report.MODEL]
    assert label.startswith("teacher assistant mlp-small")
    assert any("Chain: teacher ensemble → assistant mlp-small → student mlp-tiny" in c.value for c in at.caption)
    runs = next(df.value for df in at.dataframe if "KD gain (points)" in df.value.columns)
    assert runs["Method"].tolist()[0] == "Teacher assistant"
    compare = AppTest.from_file(str(ROOT / "pages/4_Compare.py"), default_timeout=TIMEOUT)
    compare.session_state["session_id"] = at.session_state["session_id"]
    compare.run()
    assert not compare.exception, [e.value for e in compare.exception]
    table = next(df.value for df in compare.dataframe if report.MODEL in df.value.columns)
    assert any("teacher assistant mlp-small" in m for m in table[report.MODEL])
