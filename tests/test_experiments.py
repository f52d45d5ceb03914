"""Distillation runs: validated configs, per-dataset presets, and what a finished or stopped run reports."""

import json
import threading
from dataclasses import replace

import pytest
import torch

from kdcore import data as kdata
from kdcore import events as ev
from kdcore import experiments, teachers
from kdcore.experiments import RunConfig, default_config, distill

MODEL_KEYS = {
    "name",
    "role",
    "accuracy",
    "params",
    "size_bytes",
    "latency_ms_b1",
    "throughput_b256",
    "agreement",
    "ece",
}


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs,names",
    [
        ({"dataset": "imagenet"}, ["dataset", "mnist-sample", "fashion-mnist", "cifar10"]),
        ({"student": "resnet-50"}, ["student", "mlp-tiny", "cnn-medium"]),
        ({"teachers": ("cnn-wide", "vit")}, ["teacher", "cnn-wide", "cnn-deep", "mlp-wide"]),
        ({"teachers": ("cnn-wide", "cnn-wide")}, ["@1"]),
        ({"teachers": ()}, ["1 to 5"]),
        ({"temperature": 0}, ["temperature", "from 0.1 to 100"]),
        ({"temperature": -2.0}, ["temperature", "from 0.1 to 100"]),
        ({"temperature": 1e-30}, ["temperature", "from 0.1 to 100", "one-hot"]),
        ({"temperature": float("nan")}, ["temperature"]),
        ({"alpha": 1.5}, ["alpha", "[0, 1]"]),
        ({"alpha": -0.1}, ["alpha", "[0, 1]"]),
        ({"fraction": 0}, ["fraction", "(0, 1]"]),
        ({"fraction": 1.5}, ["fraction", "(0, 1]"]),
        ({"exclude_class": 10}, ["exclude_class", "0 to 9"]),
        ({"exclude_class": -1}, ["exclude_class", "0 to 9"]),
        ({"epochs": 0}, ["epochs", "1 to 500"]),
        ({"epochs": 501}, ["epochs", "1 to 500"]),
        ({"epochs": 2.5}, ["epochs", "whole number"]),
        ({"teacher_epochs": 0}, ["teacher_epochs", "1 to 500"]),
        ({"seed": 2**70}, ["seed", "0 to 4,294,967,295"]),
        ({"seed": -1}, ["seed", "0 to 4,294,967,295"]),
        ({"seed": 2.5}, ["seed", "whole number"]),
        ({"combine": "median"}, ["combine", "prob", "logit"]),
    ],
)
def test_bad_config_names_the_argument_and_the_allowed_values(kwargs, names):
    with pytest.raises(ValueError) as info:
        RunConfig(**kwargs)
    message = str(info.value)
    assert all(name in message for name in names), message


def test_a_fractional_class_index_is_rejected_up_front():
    # Accepting 3.5 here would only fail inside distill(), after the teachers have been trained.
    with pytest.raises(ValueError, match="exclude_class"):
        RunConfig(exclude_class=3.5)


def test_config_normalises_teacher_names_and_is_frozen():
    config = RunConfig(teachers=["cnn-wide@0", "mlp-wide@2"])
    assert config.teachers == ("cnn-wide", "mlp-wide@2")
    assert config.to_dict()["teachers"] == ["cnn-wide", "mlp-wide@2"]
    with pytest.raises(AttributeError):
        config.alpha = 0.9  # type: ignore[misc]
    assert config.key() == RunConfig(teachers=("cnn-wide", "mlp-wide@2")).key()
    assert config.key() != replace(config, temperature=2.0).key()


def test_default_config_per_dataset():
    sample = default_config("mnist-sample")
    assert (sample.dataset, sample.student, sample.teachers) == (
        "mnist-sample",
        "mlp-medium",
        ("cnn-wide", "cnn-deep", "mlp-wide"),
    )
    assert (sample.temperature, sample.alpha, sample.fraction, sample.exclude_class) == (4.0, 0.5, 1.0, None)
    assert default_config("mnist").dataset == "mnist" and default_config("mnist").epochs == 5
    fashion = default_config("fashion-mnist")
    assert (fashion.dataset, fashion.epochs, fashion.fraction) == ("fashion-mnist", 25, 0.2)
    cifar = default_config("cifar10")
    assert cifar.student == "bn-small" and len(cifar.teachers) == 3 and cifar.augment
    assert all(t.startswith("air-") for t in cifar.teachers)
    assert default_config() == sample


def test_default_config_overrides_are_validated():
    assert default_config("mnist", alpha=0.9).alpha == 0.9
    with pytest.raises(ValueError, match="alpha"):
        default_config("mnist", alpha=2)
    with pytest.raises(ValueError, match="mnist-sample"):
        default_config("svhn")


# --------------------------------------------------------------------------- a finished run


def test_rows_come_in_display_order(fast_run, fast_config):
    result, _ = fast_run
    assert [r.role for r in result.rows] == ["teacher"] * 3 + ["ensemble", "scratch", "distilled"]
    assert [r.name for r in result.rows[:3]] == list(fast_config.teachers)
    assert result.rows[-2].name == f"scratch ({fast_config.student})"
    assert result.row("distilled") is result.rows[-1]
    assert result.partial is False
    assert result.classes == kdata.load("mnist-sample").classes


def test_everyone_beats_chance_by_far(fast_run):
    result, _ = fast_run
    for row in result.rows:
        assert 0.2 < row.accuracy <= 1.0, row
    for role in ("ensemble", "scratch", "distilled"):
        assert result.row(role).accuracy > 0.5
    assert len(result.per_class_gain) == 10


def test_sizes_params_and_latency_add_up(fast_run):
    result, _ = fast_run
    members = result.rows[:3]
    for row in result.rows:
        assert row.params > 0 and row.size_bytes >= 4 * row.params
        assert row.latency_ms_b1 > 0 and row.throughput_b256 > 0
    ens = result.row("ensemble")
    assert ens.params == sum(r.params for r in members)
    assert ens.size_bytes == sum(r.size_bytes for r in members)
    assert ens.latency_ms_b1 >= max(r.latency_ms_b1 for r in members)
    assert result.row("scratch").params == result.row("distilled").params < ens.params
    # Same architecture, same cost: the table must not present timing noise as one student being faster.
    scratch, distilled = result.row("scratch"), result.row("distilled")
    assert (scratch.latency_ms_b1, scratch.throughput_b256) == (distilled.latency_ms_b1, distilled.throughput_b256)


def test_agreement_with_the_teacher(fast_run):
    result, _ = fast_run
    assert result.row("ensemble").agreement is None
    for row in result.rows:
        if row.role != "ensemble":
            assert 0.0 <= row.agreement <= 1.0
    # A student that learns from the ensemble should mostly agree with it.
    assert result.row("distilled").agreement > 0.5


def test_run_events_cover_teachers_students_and_the_end(fast_run, fast_config):
    result, events = fast_run
    kinds = [type(e) for e in events]
    assert kinds.index(ev.StudentsStart) > max(i for i, k in enumerate(kinds) if k is ev.TeacherStart)
    start = next(e for e in events if isinstance(e, ev.StudentsStart))
    assert start.epochs == fast_config.epochs and start.train_size == len(kdata.load("mnist-sample").train_y)
    assert start.models == ("scratch", "distilled")
    for role in ("scratch", "distilled"):
        epochs = [e for e in events if isinstance(e, ev.Epoch) and e.model == role]
        assert [e.epoch for e in epochs] == list(range(1, fast_config.epochs + 1))
        assert epochs == result.curves[role]
    assert ev.Measuring in kinds
    done = events[-1]
    assert isinstance(done, ev.Finished) and done.partial is False and done.kd_gain == result.kd_gain
    assert result.epochs_done == fast_config.epochs and result.notices == []


def test_to_json_matches_the_published_schema(fast_run, fast_config):
    result, _ = fast_run
    out = json.loads(json.dumps(result.to_json()))  # plain JSON types only
    assert {"dataset", "config", "models", "kd_gain"} <= set(out)
    assert out["dataset"] == "mnist-sample"
    assert out["config"] == fast_config.to_dict()
    assert len(out["models"]) == 6
    for model, row in zip(out["models"], result.rows):
        assert set(model) >= MODEL_KEYS
        assert model["name"] == row.name and model["role"] == row.role and model["accuracy"] == row.accuracy
    by_role = {m["role"]: m for m in out["models"]}
    assert out["kd_gain"] == pytest.approx(by_role["distilled"]["accuracy"] - by_role["scratch"]["accuracy"])
    assert out["kd_gain"] == pytest.approx(result.kd_gain)


# --------------------------------------------------------------------------- runs with other settings


def small(fast_config, **overrides):
    """The fast preset's (already cached) teachers with a tiny student."""
    return replace(fast_config, **{"student": "mlp-tiny", "epochs": 2, **overrides})


def test_alpha_zero_makes_the_two_students_identical(fast_run, fast_config):
    # Same initial weights and batch order: with no teacher term the students cannot differ at all.
    result = distill(small(fast_config, alpha=0.0, epochs=1, fraction=0.25), measure=False)
    assert torch.equal(result.test_logits["scratch"], result.test_logits["distilled"])
    assert result.kd_gain == 0.0


def test_excluding_a_class_removes_it_from_the_students_training_set(fast_run, fast_config):
    config = small(fast_config, exclude_class=3)
    data = kdata.load(config.dataset)
    idx = kdata.subset_indices(data.train_y, fraction=config.fraction, exclude_class=3, seed=config.seed)
    assert (data.train_y[idx] == 3).sum() == 0
    assert set(data.train_y[idx].tolist()) == set(range(10)) - {3}

    events = []
    result = distill(config, on_event=events.append, measure=False)
    start = next(e for e in events if isinstance(e, ev.StudentsStart))
    assert start.train_size == len(idx) < len(data.train_y)
    assert result.partial is False and len(result.rows) == 6
    # Never shown a 3 with its label, the scratch student cannot name one.
    assert result.row("scratch").per_class[3] < 0.05
    assert result.row("scratch").per_class[1] > 0.5


def test_cancel_during_student_training_keeps_a_partial_result(fast_run, fast_config):
    cancel = threading.Event()
    events = []

    def on_event(e):
        events.append(e)
        if sum(isinstance(x, ev.Epoch) for x in events) == 2:  # both students finished epoch 1
            cancel.set()

    result = distill(small(fast_config, epochs=4), on_event=on_event, cancel=cancel, measure=False)
    assert result.partial is True
    assert [r.role for r in result.rows] == ["teacher"] * 3 + ["ensemble", "scratch", "distilled"]
    assert all(0.0 <= r.accuracy <= 1.0 for r in result.rows)
    assert [len(result.curves[k]) for k in ("scratch", "distilled")] == [1, 1] and result.epochs_done == 1
    assert result.kd_gain is not None
    assert isinstance(events[-1], ev.Finished) and events[-1].partial is True


def test_load_ensemble_and_teacher_rows_without_a_student(fast_run, fast_config):
    data, ens = experiments.load_ensemble(fast_config)
    assert all(t.cached for t in ens.members)
    rows = experiments.teacher_rows(data, ens, measure=False)
    assert [r.role for r in rows] == ["teacher"] * 3 + ["ensemble"]
    assert rows[-1].accuracy == fast_run[0].row("ensemble").accuracy
    assert rows[0].latency_ms_b1 is None


def test_the_same_teachers_show_the_same_latency_in_every_run(fast_run, fast_config):
    # Teachers are measured once per process: a second run must neither re-measure them (seconds of
    # waiting) nor show different numbers for models that did not change.
    first = fast_run[0].rows[:4]
    data, ens = experiments.load_ensemble(fast_config)
    again = experiments.teacher_rows(data, ens)
    assert [(r.latency_ms_b1, r.throughput_b256) for r in again] == [
        (r.latency_ms_b1, r.throughput_b256) for r in first
    ]


# --------------------------------------------------------------------------- a run that goes nowhere


def epoch_event(model, acc, n=1):
    return ev.Epoch(model=model, epoch=n, epochs=5, loss=1.0, hard=1.0, soft=1.0, test_acc=acc)


@pytest.mark.parametrize(
    "overrides,teacher_acc,expected",
    [
        ({}, 0.1, "the teacher ensemble itself is at chance (10%)"),
        ({"temperature": 0.5}, 0.97, "T = 0.5 is below 1"),
        ({"alpha": 1.0}, 0.97, "with α = 1 it learns from the teacher's soft targets alone"),
        ({}, 0.97, "try the preset's T = 4 and α = 0.5"),
    ],
)
def test_a_collapsed_student_gets_advice_that_fits_the_cause(overrides, teacher_acc, expected):
    config = default_config("mnist-sample", **overrides)
    text = experiments.collapse_notice(
        config, epoch_event("scratch", 0.9), epoch_event("distilled", 0.1), teacher_acc, 10
    )
    assert text.startswith("After epoch 1 the distilled student is at chance (10%) while the scratch one reaches 90%")
    assert expected in text


def test_no_collapse_notice_when_either_student_is_fine_or_both_are_stuck():
    config = default_config("mnist-sample")
    assert experiments.collapse_notice(config, epoch_event("s", 0.9), epoch_event("d", 0.5), 0.97, 10) is None
    # Both at chance: the data or the student size is the problem, not the teacher's targets.
    assert experiments.collapse_notice(config, epoch_event("s", 0.12), epoch_event("d", 0.1), 0.97, 10) is None


def test_distilling_from_a_teacher_that_knows_nothing_is_flagged(fast_run, fast_config, monkeypatch):
    data, ens = experiments.load_ensemble(fast_config)
    noise = torch.Generator().manual_seed(0)
    useless = replace(
        ens,
        train_logits=torch.randn(ens.train_logits.shape, generator=noise),
        test_logits=torch.randn(ens.test_logits.shape, generator=noise),
    )
    monkeypatch.setattr(experiments, "load_ensemble", lambda config, **kwargs: (data, useless))
    events = []
    result = distill(small(fast_config, alpha=1.0, epochs=3), on_event=events.append, measure=False)
    (notice,) = [e for e in events if isinstance(e, ev.Notice)]
    assert "the teacher ensemble itself is at chance" in notice.message
    assert result.notices == [notice.message]
    assert result.row("distilled").accuracy < 0.2 < result.row("scratch").accuracy


def test_prepare_teachers_reports_each_member_and_how_it_came(fast_run, fast_config):
    events = []
    result = experiments.prepare_teachers(fast_config, on_event=events.append)
    assert [r.role for r in result.rows] == ["teacher"] * 3 + ["ensemble"]
    assert result.cached == dict.fromkeys(fast_config.teachers, True)  # the fast run trained them
    assert all(r.latency_ms_b1 > 0 for r in result.rows)
    ensemble = result.rows[-1]
    # An ensemble runs its members one after another.
    assert ensemble.latency_ms_b1 == pytest.approx(sum(r.latency_ms_b1 for r in result.rows[:3]))
    assert isinstance(events[-1], ev.Finished) and result.classes == kdata.MNIST_CLASSES


def test_preparing_for_students_that_learn_from_views_scores_the_views_too(fast_run, fast_config):
    from dataclasses import replace

    def scored_views(events):
        return [e.member for e in events if isinstance(e, ev.TeacherUpdate) and e.status is ev.TeacherStatus.VIEWS]

    data = kdata.load(fast_config.dataset)
    ens = teachers.ensemble(data, teachers.parse_members(fast_config.teachers), epochs=fast_config.teacher_epochs)
    for member in ens.members:  # as if no run with views had happened yet
        for path in teachers.cache_dir().glob(f"{member.key}.views.*"):
            path.unlink()
    without = []
    experiments.prepare_teachers(fast_config, on_event=without.append)  # plain students: no views asked for
    assert scored_views(without) == []
    events = []
    experiments.prepare_teachers(replace(fast_config, augment=True), on_event=events.append)
    assert scored_views(events) == list(fast_config.teachers)
    later = []
    teachers.ensemble_views(ens, data, later.append)  # the class's first run: nothing left to score
    assert scored_views(later) == []
