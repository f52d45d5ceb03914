"""Distillation methods beyond Hinton 2015 on mnist-sample: decoupled KD, a teacher assistant, born-again
generations; the probe set that watches both students learn; RunConfig's method fields and key stability.

Every run uses the fast preset's teachers (trained once per session by the `fast_run` fixture) with a
small student and a few epochs.
"""

import threading
from dataclasses import replace

import pytest
import torch

from kdcore import assistant, studies
from kdcore import data as kdata
from kdcore import events as ev
from kdcore import probes as kprobes
from kdcore.experiments import RunConfig, default_config, distill

TEACHER_ROWS = ["teacher"] * 3 + ["ensemble"]


def small(fast_config, **overrides):
    """The fast preset's (already cached) teachers with a tiny student."""
    return replace(fast_config, **{"student": "mlp-tiny", "epochs": 2, **overrides})


# --------------------------------------------------------------------------- RunConfig


# The default preset's key before methods existed: saved runs and caches are found under it.
DEFAULT_KEY = "dfc798b58df9e0bc"


def test_the_default_configs_key_and_fields_are_unchanged_by_methods():
    config = default_config()
    assert config.method == "kd"
    assert config.key() == DEFAULT_KEY
    assert set(config.to_dict()) == {
        "dataset",
        "teachers",
        "student",
        "temperature",
        "alpha",
        "epochs",
        "teacher_epochs",
        "fraction",
        "exclude_class",
        "seed",
        "combine",
    }
    # Another method's settings do not touch a kd run's key, since they do not touch the run.
    assert replace(config, beta_nc=2.0, generations=3, assistant="mlp-wide").key() == DEFAULT_KEY


@pytest.mark.parametrize(
    "overrides,keys",
    [
        ({"method": "dkd", "beta_nc": 2.0}, {"method", "alpha_tc", "beta_nc"}),
        ({"method": "ta", "student": "mlp-tiny"}, {"method", "assistant"}),
        ({"method": "self", "generations": 3}, {"method", "generations"}),
    ],
)
def test_a_methods_own_fields_enter_its_dict_and_key_and_survive_a_round_trip(overrides, keys):
    config = default_config(**overrides)
    values = config.to_dict()
    assert keys <= set(values) and not ({"alpha_tc", "beta_nc", "assistant", "generations"} - keys) & set(values)
    assert config.key() != DEFAULT_KEY
    assert RunConfig(**values) == config
    if config.method == "dkd":
        assert replace(config, beta_nc=4.0).key() != config.key()


def test_dkds_nckd_weight_defaults_to_the_measured_one_for_mnist_sample_and_the_papers_elsewhere():
    config = default_config(method="dkd")
    assert config.beta_nc is None and config.nckd_weight == 0.5
    assert default_config("cifar10", method="dkd").nckd_weight == 8.0
    assert replace(config, dataset="mnist").nckd_weight == 8.0
    assert replace(config, beta_nc=2.0).nckd_weight == 2.0


def test_the_default_assistant_follows_the_student():
    config = default_config(method="ta", student="mlp-tiny")
    assert config.assistant is None and config.assistant_arch == "mlp-small"
    # Kept as "the default", so choosing another student never leaves a too-small assistant behind.
    assert replace(config, student="mlp-small").assistant_arch == "mlp-medium"
    assert replace(config, student="mlp-medium").assistant_arch == "mlp-wide"
    assert default_config(method="ta", student="cnn-small").assistant_arch == "cnn-medium"


@pytest.mark.parametrize(
    "kwargs,names",
    [
        ({"method": "fitnets"}, ["method", "'kd'", "'dkd'", "'ta'", "'self'"]),
        ({"method": "dkd", "alpha_tc": -1}, ["alpha_tc", "0 to 100"]),
        ({"method": "dkd", "beta_nc": 1e6}, ["beta_nc", "0 to 100"]),
        ({"method": "dkd", "beta_nc": "8"}, ["beta_nc", "0 to 100"]),
        ({"method": "self", "generations": 0}, ["generations", "1 to 3"]),
        ({"method": "self", "generations": 4}, ["generations", "1 to 3"]),
        ({"method": "self", "generations": 1.5}, ["generations", "whole number"]),
        ({"method": "ta", "student": "mlp-small", "assistant": "mlp-tiny"}, ["assistant", "not larger", "mlp-medium"]),
        ({"method": "ta", "student": "mlp-small", "assistant": "resnet"}, ["assistant", "not a model", "mlp-wide"]),
    ],
)
def test_bad_method_settings_name_the_argument_and_the_allowed_values(kwargs, names):
    with pytest.raises(ValueError) as info:
        RunConfig(**kwargs)
    assert all(name in str(info.value) for name in names), str(info.value)


# --------------------------------------------------------------------------- decoupled KD


@pytest.fixture(scope="module")
def dkd_run(fast_run, fast_config):
    events = []
    return distill(replace(fast_config, method="dkd"), on_event=events.append, measure=False), events


def test_dkd_gives_the_full_table_against_the_same_scratch_student(fast_run, dkd_run):
    result, _ = dkd_run
    assert [r.role for r in result.rows] == TEACHER_ROWS + ["scratch", "distilled"]
    assert result.row("scratch").accuracy == fast_run[0].row("scratch").accuracy
    assert result.kd_gain == pytest.approx(result.row("distilled").accuracy - result.row("scratch").accuracy)
    assert result.row("distilled").accuracy > 0.5


def test_dkd_curves_show_both_parts_for_both_students(dkd_run):
    result, events = dkd_run
    for role in ("scratch", "distilled"):
        for e in result.curves[role]:
            assert set(e.parts) == {"tckd", "nckd"} and all(v >= 0 for v in e.parts.values())
    last = result.curves["distilled"][-1]
    c = result.config
    assert last.soft == pytest.approx(c.alpha_tc * last.parts["tckd"] + c.nckd_weight * last.parts["nckd"], rel=1e-4)
    # The scratch student learns from labels alone: its total is its hard part.
    assert all(e.loss == pytest.approx(e.hard) for e in result.curves["scratch"])
    assert any(isinstance(e, ev.Epoch) and e.parts for e in events)


def test_dkd_with_both_weights_zero_is_training_on_labels(fast_run, fast_config):
    result = distill(small(fast_config, method="dkd", alpha_tc=0.0, beta_nc=0.0, epochs=1), measure=False)
    assert torch.equal(result.test_logits["scratch"], result.test_logits["distilled"])


# --------------------------------------------------------------------------- teacher assistant


@pytest.fixture(scope="module")
def ta_runs(fast_run, fast_config):
    config = small(fast_config, method="ta", student="mlp-small", epochs=2)
    runs = []
    for _ in range(2):
        events = []
        runs.append((distill(config, on_event=events.append, measure=False), events))
    return runs


def test_ta_adds_the_assistant_to_the_table(ta_runs):
    result, _ = ta_runs[0]
    assert [r.role for r in result.rows] == TEACHER_ROWS + ["assistant", "scratch", "distilled"]
    row = result.row("assistant")
    assert row.name == "assistant (mlp-medium)"
    assert row.params > result.row("distilled").params and row.accuracy > 0.5
    assert result.kd_gain is not None and not result.partial


def test_ta_trains_the_assistant_once_then_loads_it_from_the_cache(ta_runs):
    (first, first_events), (second, second_events) = ta_runs

    def statuses(events):
        return [e.status for e in events if isinstance(e, ev.AssistantUpdate)]

    assert statuses(first_events) == [ev.TeacherStatus.TRAINING, ev.TeacherStatus.TRAINED]
    assert statuses(second_events) == [ev.TeacherStatus.CACHED]
    assert not any(isinstance(e, ev.Epoch) and e.model.startswith("assistant") for e in second_events)
    # The cached assistant teaches exactly what the freshly trained one did.
    assert second.row("assistant").accuracy == first.row("assistant").accuracy
    assert torch.equal(second.test_logits["distilled"], first.test_logits["distilled"])


def test_a_damaged_cached_assistant_is_trained_again(ta_runs, fast_config):
    from kdcore import teachers

    (first, _), _ = ta_runs
    for path in teachers.cache_dir().glob("*-assistant-mlp-medium-*.safetensors"):
        path.write_bytes(b"not a tensor file")
    events = []
    again = distill(small(fast_config, method="ta", student="mlp-small"), on_event=events.append, measure=False)
    statuses = [e.status for e in events if isinstance(e, ev.AssistantUpdate)]
    assert statuses == [ev.TeacherStatus.TRAINING, ev.TeacherStatus.TRAINED]
    assert torch.equal(again.test_logits["distilled"], first.test_logits["distilled"])


def test_ta_progress_shows_the_assistant_as_its_own_step(ta_runs):
    _, events = ta_runs[0]
    tracker = ev.ProgressTracker(steps=2)
    seen = []
    for e in events:
        tracker.apply(e)
        p = tracker.progress()
        seen.append((p.phase, p.step, p.steps))
    assert (ev.Phase.ASSISTANT, 2, 3) in seen and (ev.Phase.STUDENTS, 3, 3) in seen
    final = tracker.progress()
    assert final.assistant[0] == "assistant (mlp-medium)" and final.assistant[1].status == "trained"
    assert set(final.curves) == {"scratch", "distilled"}


def test_an_assistant_for_other_settings_is_another_cache_entry(fast_run, fast_config):
    data = kdata.load(fast_config.dataset)
    from kdcore.experiments import load_ensemble

    _, ens = load_ensemble(fast_config, data=data)
    idx = torch.arange(len(data.train_y))
    settings = studies.student_settings(data.name, 2)
    key = assistant.assistant_key(data, ens, "mlp-medium", settings, temperature=4.0, alpha=0.5, seed=0, train_idx=idx)
    others = [
        assistant.assistant_key(data, ens, "mlp-small", settings, temperature=4.0, alpha=0.5, seed=0, train_idx=idx),
        assistant.assistant_key(data, ens, "mlp-medium", settings, temperature=2.0, alpha=0.5, seed=0, train_idx=idx),
        assistant.assistant_key(data, ens, "mlp-medium", settings, temperature=4.0, alpha=0.5, seed=1, train_idx=idx),
        assistant.assistant_key(
            data, ens, "mlp-medium", settings, temperature=4.0, alpha=0.5, seed=0, train_idx=idx[: len(idx) // 2]
        ),
    ]
    assert len({key, *others}) == 5


# --------------------------------------------------------------------------- born-again generations


@pytest.fixture(scope="module")
def self_run(fast_run, fast_config):
    events = []
    return distill(small(fast_config, method="self", generations=2), on_event=events.append, measure=False), events


def test_self_keeps_every_generation_and_the_last_is_the_distilled_student(fast_run, fast_config, self_run):
    result, events = self_run
    assert [r.role for r in result.rows] == TEACHER_ROWS + ["scratch", "generation", "distilled"]
    assert [r.name for r in result.rows[-3:]] == [
        "scratch (mlp-tiny)",
        "generation 1 (mlp-tiny)",
        "generation 2 (mlp-tiny)",
    ]
    assert len(result.generations) == 3
    assert result.generations[0] == result.row("scratch").accuracy
    assert result.generations[-1] == result.row("distilled").accuracy
    assert result.kd_gain == pytest.approx(result.generations[-1] - result.generations[0])
    assert set(result.curves) == {"scratch", "generation 1", "distilled"}
    assert result.to_json()["generations"] == result.generations
    start = next(e for e in events if isinstance(e, ev.StudentsStart))
    assert start.models == ("scratch", "generation 1", "distilled")
    # Generation 0 is the scratch student of a kd run with the same settings.
    kd = distill(small(fast_config), measure=False)
    assert torch.equal(kd.test_logits["scratch"], result.test_logits["scratch"])


def test_self_stopped_in_a_later_generation_keeps_the_finished_ones(fast_run, fast_config):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Epoch) and e.model == "distilled":
            cancel.set()

    config = small(fast_config, method="self", generations=2)
    result = distill(config, on_event=on_event, cancel=cancel, measure=False)
    assert result.partial and len(result.generations) == 2
    assert [r.role for r in result.rows][-2:] == ["scratch", "distilled"]
    assert result.row("distilled").name == "generation 1 (mlp-tiny)"
    assert set(result.probes.students) == {"scratch", "distilled"}
    assert result.probes.epochs("distilled") == config.epochs


def test_self_stopped_in_the_first_generation_returns_nothing(fast_run, fast_config):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Epoch) and e.model == "scratch":
            cancel.set()

    assert distill(small(fast_config, method="self", generations=1), on_event=on_event, cancel=cancel) is None


# --------------------------------------------------------------------------- probes


def test_the_probe_set_is_ten_test_images_per_class_chosen_once():
    data = kdata.load("mnist-sample")
    idx = kprobes.probe_indices(data.test_y)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert data.test_y[idx].bincount(minlength=10).tolist() == [10] * 10
    assert torch.equal(idx, kprobes.probe_indices(data.test_y))


def test_probes_keep_both_students_after_every_epoch(fast_run, fast_config):
    result, _ = fast_run
    p = result.probes
    assert p.teacher.shape == (100, 10) and torch.allclose(p.teacher.sum(-1), torch.ones(100))
    assert torch.equal(p.labels, kdata.load(fast_config.dataset).test_y[p.indices])
    for role in ("scratch", "distilled"):
        probs = p.probs(role)
        assert probs.shape == (fast_config.epochs, 100, 10) and p.students[role][0].dtype == torch.float16
        assert len(kprobes.agreement(p, role)) == len(kprobes.kl_to_teacher(p, role)) == fast_config.epochs


def test_probe_metrics_after_the_last_epoch_match_the_final_students(fast_run):
    result, _ = fast_run
    p = result.probes
    teacher = torch.softmax(result.test_logits["ensemble"][p.indices].double(), -1)
    for role in ("scratch", "distilled"):
        student = torch.log_softmax(result.test_logits[role][p.indices].double(), -1)
        kl = (teacher * (torch.log(teacher) - student)).sum(-1).mean().item()
        agree = (student.argmax(-1) == teacher.argmax(-1)).double().mean().item()
        assert kprobes.kl_to_teacher(p, role)[-1] == pytest.approx(kl, rel=1e-4)
        assert kprobes.agreement(p, role)[-1] == agree
        torch.testing.assert_close(p.probs(role)[-1], student.exp().float(), atol=1e-3, rtol=0)


def test_a_stopped_run_keeps_probes_for_the_epochs_both_students_finished(fast_run, fast_config):
    cancel = threading.Event()

    def on_event(e):
        if isinstance(e, ev.Epoch) and e.epoch == 2:
            cancel.set()

    result = distill(small(fast_config, epochs=4), on_event=on_event, cancel=cancel, measure=False)
    assert result.partial
    for role in ("scratch", "distilled"):
        assert result.probes.epochs(role) == result.epochs_done == len(result.curves[role])


def test_a_run_without_probes_has_none(fast_run, fast_config):
    assert distill(small(fast_config, epochs=1), probes=False, measure=False).probes is None


# --------------------------------------------------------------------------- capacity study


def test_the_capacity_study_adds_a_line_through_the_medium_assistant(fast_run, fast_config):
    config = replace(fast_config, epochs=2)
    result = studies.capacity_study(config, ["mlp-tiny", "mlp-medium"])
    tiny, medium = result.points
    assert tiny.assistant == "mlp-medium" and tiny.assisted_acc is not None and tiny.assisted_acc > 0.5
    assert tiny.assisted_gain == pytest.approx(tiny.assisted_acc - tiny.scratch_acc)
    assert medium.assistant is None and medium.assisted_acc is None  # it cannot assist itself
    assert not result.partial
    text = result.assistant_reading()
    assert "mlp-medium" in text and "mlp-tiny" in text and text.count(".") >= 1
    points = result.to_json()["points"]
    assert points[0]["assisted_acc"] == tiny.assisted_acc and points[1]["assistant"] is None
    assert result.to_json()["assistant_reading"] == text


# --------------------------------------------------------------------------- benchmark script


def test_the_methods_benchmark_prints_one_gain_per_method_against_one_scratch_student(fast_run, tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "kd_methods.py"
    spec = importlib.util.spec_from_file_location("kd_methods", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "methods.json"
    assert script.main(["--students", "mlp-tiny", "--seeds", "0", "--epochs", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| student | scratch acc (%) | kd | dkd | ta | self |" in printed
    assert next(line for line in printed.splitlines() if line.startswith("| mlp-tiny |")).count("±") == 5
    runs = json.loads(out.read_text())["runs"]
    assert [r["method"] for r in runs] == ["kd", "dkd", "ta", "self"]
    assert len({r["scratch"] for r in runs}) == 1  # every method's gain is against the same scratch student
