"""The Compare table, its Pareto front, the plain-words summary and the downloads: hand-made runs and one real run."""

import io
import math

import pandas as pd
import pytest
import torch
from safetensors.torch import load
from torch import nn

from kdcore import report
from kdcore.experiments import ModelRow, RunResult, default_config

TEACHERS = ("cnn-wide", "cnn-deep", "mlp-wide")


def _row(name, role, acc, params, latency, agreement=0.95):
    return ModelRow(
        name=name,
        role=role,
        accuracy=acc,
        params=params,
        size_bytes=params * 4,
        latency_ms_b1=latency,
        throughput_b256=None if latency is None else 256_000 / latency,
        agreement=None if role == "ensemble" else agreement,
        kl_to_teacher=None,
        ece=0.03,
        per_class=[acc] * 10,
    )


def _run(
    temperature=4.0,
    dataset="mnist-sample",
    teachers=TEACHERS,
    distilled_acc=0.95,
    scratch_acc=0.93,
    student_latency=0.5,
    partial=False,
):
    cfg = default_config(dataset, teachers=teachers, student="mlp-small", temperature=temperature, alpha=0.9)
    rows = [_row(t, "teacher", 0.97, 400_000, 2.0) for t in teachers]
    rows.append(_row("ensemble", "ensemble", 0.98, 1_200_000, 6.0))
    rows.append(_row("scratch (mlp-small)", "scratch", scratch_acc, 30_000, student_latency))
    rows.append(_row("distilled (mlp-small)", "distilled", distilled_acc, 30_000, student_latency))
    students = {r: nn.Linear(4, 3) for r in ("scratch", "distilled")}
    return RunResult(cfg, rows, {"scratch": [], "distilled": []}, partial, 1.0, tuple("0123456789"), students)


def test_table_has_the_user_facing_columns():
    df = report.comparison_table([_run()])
    assert list(df.columns) == [
        "Model",
        "Role",
        "Dataset",
        "Run",
        "Accuracy (%)",
        "Params",
        "Size (MB)",
        "Latency b=1 (ms)",
        "Throughput b=256 (img/s)",
        "Speed-up vs ensemble (×)",
        "Compression vs ensemble (×)",
        "Agreement with teacher (%)",
        "ECE",
        "Partial",
    ]
    assert len(df) == 6
    assert df["Accuracy (%)"].tolist()[-1] == pytest.approx(95.0)


def test_runs_sharing_teachers_show_each_teacher_and_the_ensemble_once():
    df = report.comparison_table([_run(temperature=2.0), _run(temperature=8.0)])
    assert (df["Role"] == "ensemble").sum() == 1
    assert (df["Role"] == "teacher").sum() == 3
    assert (df["Role"] == "distilled").sum() == 2 and (df["Role"] == "scratch").sum() == 2
    assert df.loc[df["Role"] == "ensemble", "Run"].item() == "1, 2"
    labels = df.loc[df["Role"] == "distilled", "Model"].tolist()
    assert labels == ["run 1: distilled mlp-small (T=2, α=0.9)", "run 2: distilled mlp-small (T=8, α=0.9)"]


def test_another_dataset_gets_its_own_ensemble_row():
    df = report.comparison_table([_run(), _run(dataset="mnist")])
    ens = df[df["Role"] == "ensemble"]
    assert sorted(ens["Dataset"]) == ["mnist", "mnist-sample"]


def test_speed_up_and_compression_are_relative_to_the_ensemble():
    df = report.comparison_table([_run(student_latency=0.5)])
    d = df[df["Role"] == "distilled"].iloc[0]
    assert d["Speed-up vs ensemble (×)"] == pytest.approx(6.0 / 0.5)
    assert d["Compression vs ensemble (×)"] == pytest.approx(1_200_000 / 30_000)
    e = df[df["Role"] == "ensemble"].iloc[0]
    assert e["Speed-up vs ensemble (×)"] == pytest.approx(1.0)
    assert math.isnan(e["Agreement with teacher (%)"])


def test_missing_latency_is_nan_not_an_error():
    df = report.comparison_table([_run(student_latency=None)])
    d = df[df["Role"] == "distilled"].iloc[0]
    assert math.isnan(d["Latency b=1 (ms)"]) and math.isnan(d["Speed-up vs ensemble (×)"])


def test_partial_runs_are_flagged_on_their_students_only():
    df = report.comparison_table([_run(partial=True)])
    assert df.set_index("Role")["Partial"].to_dict() == {
        "teacher": False,
        "ensemble": False,
        "scratch": True,
        "distilled": True,
    }


def test_pareto_front_drops_the_dominated_point():
    df = pd.DataFrame(
        {"Latency b=1 (ms)": [1.0, 2.0, 3.0, 2.5, float("nan")], "Accuracy (%)": [90.0, 95.0, 99.0, 94.0, 99.9]}
    )
    assert report.pareto_front(df).tolist() == [True, True, True, False, False]


def test_pareto_front_names_a_missing_column():
    with pytest.raises(ValueError, match="Latency"):
        report.pareto_front(pd.DataFrame({"Accuracy (%)": [1.0]}))


def test_csv_round_trips_with_the_same_columns():
    df = report.comparison_table([_run(), _run(temperature=2.0)])
    back = pd.read_csv(io.BytesIO(report.to_csv_bytes(df)))
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    assert back["Accuracy (%)"].tolist() == pytest.approx(df["Accuracy (%)"].tolist())


def test_weights_load_back_into_an_identical_state_dict():
    model = nn.Linear(5, 3)
    state = load(report.student_weights_bytes(model))
    assert state.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(state[k], v)


def test_weights_filename_names_the_run():
    run = _run()
    assert report.weights_filename(run, "distilled") == "kd-mnist-sample-distilled-mlp-small-T4-a0.9-seed0.safetensors"
    assert report.weights_filename(run, "scratch") == "kd-mnist-sample-scratch-mlp-small-seed0.safetensors"
    assert report.weights_filename(_run(partial=True), "distilled").endswith("-partial.safetensors")
    with pytest.raises(ValueError, match="scratch, distilled"):
        report.weights_filename(run, "ensemble")


def test_summary_sentence_reads_the_latest_run():
    df = report.comparison_table([_run(distilled_acc=0.90), _run(temperature=2.0, distilled_acc=0.961)])
    text = report.summary_sentence(df)
    assert text.startswith("Run 2: the distilled student is 40× smaller and 12× faster than the teacher ensemble")
    assert "loses 1.9 points of accuracy" in text
    assert "trained without a teacher reaches 93.0 %, so distillation adds 3.1 points" in text


def test_summary_sentence_prefers_a_finished_run_over_a_later_stopped_one():
    df = report.comparison_table([_run(distilled_acc=0.96), _run(temperature=2.0, distilled_acc=0.2, partial=True)])
    assert report.summary_sentence(df).startswith("Run 1:")
    only_stopped = report.comparison_table([_run(partial=True)])
    assert "stopped early" in report.summary_sentence(only_stopped)


def test_summary_sentence_handles_gains_slow_students_and_no_students():
    df = report.comparison_table([_run(distilled_acc=0.99, scratch_acc=0.995, student_latency=12.0)])
    text = report.summary_sentence(df)
    assert "2.0× slower" in text and "gains 1.0 points" in text and "cost 0.5 points" in text
    assert report.summary_sentence(df[df["Role"] != "distilled"]) == ""


def test_real_distill_gives_one_row_per_model_above_chance(fast_run):
    """A real (short) distillation on the offline MNIST sample, shared with other tests."""
    result, _ = fast_run
    df = report.comparison_table([result])
    assert len(df) == 6
    assert (df.loc[df["Role"] != "teacher", "Accuracy (%)"] > 50).all(), df[["Model", "Accuracy (%)"]]
    assert report.summary_sentence(df).startswith("Run 1: the distilled student is")


def test_the_student_is_compared_with_the_ensemble_and_with_its_best_single_teacher(fast_run):
    result, _ = fast_run
    text = report.against_teachers(result)
    members = [r for r in result.rows if r.role == "teacher"]
    best = max(members, key=lambda r: r.accuracy)
    assert text.startswith("The distilled student is ") and "than the teacher ensemble" in text
    assert f"than its best single teacher, {best.name} ({best.accuracy * 100:.1f} %)" in text
    d = result.row("distilled")
    # mlp-medium has more parameters than cnn-deep: the comparison says larger rather than hiding it.
    word = "smaller" if best.params > d.params else "larger"
    assert word in text.split("; ")[1]


def test_the_loss_chart_notes_quote_this_runs_numbers(fast_run):
    result, _ = fast_run
    notes = report.loss_notes(result)
    scratch, distilled = result.curves["scratch"], result.curves["distilled"]
    assert f"from {scratch[0].soft:.2f} to {scratch[-1].soft:.2f}" in notes[0]
    assert "never trains on the teacher's soft targets" in notes[0]
    assert f"{distilled[-1].hard:.3f} against {scratch[-1].hard:.3f}" in notes[1]
    higher = distilled[-1].hard > scratch[-1].hard
    assert ("higher hard loss" in notes[1]) is higher


def test_runs_are_numbered_by_their_history_id_like_every_page(fast_run):
    import copy

    result, _ = fast_run
    saved = copy.copy(result)
    saved.run_id = 42
    table = report.comparison_table([result, saved])
    students = table[table[report.ROLE] == "distilled"]
    assert students[report.RUN].tolist() == ["1", "42"]  # an unsaved run keeps its place; a saved one its id
    assert students[report.MODEL].iloc[1].startswith("run 42: distilled")


def test_what_to_try_next_points_the_fraction_the_way_this_run_has_not_gone():
    full, part = report.try_next(default_config()), report.try_next(default_config("cifar10"))
    assert any("smaller fraction" in line for line in full) and not any("Raise the **fraction**" in x for x in full)
    assert any("Raise the **fraction** from 20 %" in line for line in part)
    assert not any("smaller fraction" in line for line in part)
    assert all(line.startswith("- ") for line in full + part) and len(full) == len(part) == 4


def test_one_runs_table_names_its_models_without_the_run_number(fast_run):
    result, _ = fast_run
    names = report.run_table(result)[report.MODEL].tolist()
    assert len(names) == len(report.comparison_table([result]))
    assert not any(name.startswith("run ") for name in names)
    assert any("distilled" in name for name in names) and any("ensemble" in name for name in names)
