"""kdcore.describe: the words and tables the pages show about settings, runs and saved records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from kdcore import describe, jobs, studies
from kdcore.experiments import ModelRow, TeachersResult, default_config


def _row(name: str, role: str, accuracy: float, params: int = 1000, latency: float | None = 1.0) -> ModelRow:
    return ModelRow(name, role, accuracy, params, 4 * params, latency, 100.0, None, None, 0.01, [accuracy])


def test_a_config_summary_names_every_setting_but_those_a_study_varies():
    cfg = default_config("mnist-sample", epochs=1, student="mlp-small", temperature=4.0, alpha=0.5)
    text = describe.config_summary(cfg)
    assert text.startswith("mnist-sample, student mlp-small, T = 4, α = 0.5, 1 epoch, 100% of the training images")
    varied = describe.config_summary(cfg, skip=("temperature", "alpha"))
    assert "T = " not in varied and "α" not in varied and "student mlp-small" in varied


def test_a_config_summary_refuses_a_setting_it_does_not_know():
    with pytest.raises(ValueError, match="skip must name settings among student, temperature"):
        describe.config_summary(default_config(), skip=("temprature",))


def test_changed_settings_name_what_differs_since_the_run_started():
    run = default_config("mnist-sample", temperature=4.0, alpha=0.5)
    now = default_config("mnist-sample", temperature=8.0, alpha=0.5, fraction=0.5)
    assert describe.changed_settings(run, now) == ["T", "data fraction"]
    assert describe.changed_settings(run, run) == []


def test_a_sweep_trains_one_student_per_cell_with_a_teacher_and_the_scratch_one():
    assert studies.sweep_students([1.0, 2.0, 4.0], [0.0, 0.5, 0.9]) == 3 * 2 + 1
    assert studies.sweep_students([2.0], [0.0]) == 1  # α = 0 is the scratch student itself


def test_counts_and_shares_read_as_words():
    assert describe.plural(1, "epoch") == "1 epoch" and describe.plural(3, "epoch") == "3 epochs"
    assert describe.share(0.05) == "5 %" and describe.share(1.0) == "100 %"
    assert [describe.params(n) for n in (850, 85_000, 1_234_567)] == ["850", "85.0 k", "1.23 M"]
    assert describe.class_names("cifar10")[0] == "airplane" and describe.class_names("unknown")[9] == "9"


def test_the_bias_fix_sentence_says_what_was_raised_and_why():
    snap = {
        "bias_fix": True,
        "bias_value": 2.5,
        "bias_rule": "given",
        "class_name": "5",
        "share_before": 0.01,
        "share_after": 0.09,
        "teacher_share": 0.1,
    }
    text = describe.bias_fix_sentence(snap)
    assert "raised by **2.50** (the value you set)" in text and "1.0 % before, 9.0 % after" in text
    assert describe.bias_fix_sentence({**snap, "bias_fix": False}) == "**Bias fix:** switched off for this run."


def test_the_teachers_summary_calls_a_tiny_gap_the_same():
    members = [_row("cnn-wide", "teacher", 0.974), _row("mlp-wide", "teacher", 0.961)]
    same = describe.teachers_summary([*members, _row("ensemble", "ensemble", 0.9743, params=2_000_000)])
    assert "the same as its best member (cnn-wide)" in same and "2.00 M parameters" in same
    above = describe.teachers_summary([*members, _row("ensemble", "ensemble", 0.979)])
    assert "0.5 points above its best member (cnn-wide)" in above
    alone = describe.teachers_summary([_row("cnn-wide", "ensemble", 0.97)])
    assert alone.startswith("This single teacher reaches **97.0 %**")


def test_the_teachers_table_says_which_member_was_trained_now():
    rows = [_row("cnn-wide", "teacher", 0.97), _row("mlp-wide", "teacher", 0.96), _row("ens", "ensemble", 0.98)]
    result = TeachersResult(default_config(), ("0",), rows, {"cnn-wide": True, "mlp-wide": False}, {"mlp-wide": 75})
    table = describe.teachers_table(result)
    assert table["Source"].tolist() == ["loaded from cache", "trained in 1 min 15 s", "members combined"]
    assert table["Model"].tolist()[-1] == "Ensemble of 2"


def test_the_student_against_the_ensemble_in_times_smaller_and_faster():
    rows = [_row("d", "distilled", 0.96, params=1000, latency=0.05), _row("e", "ensemble", 0.98, 12_000, 1.2)]
    result = SimpleNamespace(row=lambda role: next((r for r in rows if r.role == role), None))
    assert describe.student_vs_ensemble(result) == ("12× smaller", "24× faster")
    rows[0] = _row("d", "distilled", 0.96, params=1000, latency=None)
    assert describe.student_vs_ensemble(result) == ("12× smaller", None)


def test_session_runs_say_each_jobs_state_and_mark_a_partial_result():
    def job(state, result=None):
        cfg = default_config("mnist-sample", epochs=2)
        return SimpleNamespace(state=state, config=cfg, created=0.0, result=lambda timeout=None: result)

    partial = SimpleNamespace(partial=True, run_id=4, kd_gain=0.0123, row=lambda role: _row(role, role, 0.9))
    table = describe.session_runs([job(jobs.JobState.RUNNING), job(jobs.JobState.CANCELLED, partial)])
    assert table["Status"].tolist() == ["running", "partial"]
    assert table["KD gain (points)"].tolist()[1] == 1.23 and table["Run"].tolist()[1] == 4


def test_deleting_runs_is_asked_and_told_in_plain_words():
    assert describe.deletion_question([3, 1]) == "Delete runs **1, 3** and their saved students? This cannot be undone."
    assert describe.deletion_done(1) == "Deleted 1 run and its saved student file."
    assert describe.deletion_done(2) == "Deleted 2 runs and their saved student files."
