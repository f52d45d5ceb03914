"""Speed notes and estimates: how long a job should take here, told before it starts."""

import dataclasses
import json

import pytest

from kdcore import data as kdata
from kdcore import jobs, speed
from kdcore.experiments import default_config
from kdcore.train import teacher_settings
from tests.synthetic import synthetic


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    return tmp_path


def test_notes_keep_the_recent_ones_and_estimate_from_their_median(data_dir):
    for seconds in (10.0, 1.0, 2.0, 3.0, 4.0, 5.0):  # the first falls out: five are kept
        speed.note("mnist-sample", "mlp-medium", "pair", 2, 1000, seconds)
    assert speed.seconds_per_image("mnist-sample", "mlp-medium", "pair", 2) == pytest.approx(0.003)
    # Other threads, modes and datasets are other speeds.
    assert speed.seconds_per_image("mnist-sample", "mlp-medium", "pair", 1) is None
    assert speed.seconds_per_image("mnist-sample", "mlp-medium", "single", 2) is None
    assert speed.seconds_per_image("mnist", "mlp-medium", "pair", 2) is None


def test_an_estimate_sums_the_work_and_says_when_it_cannot(data_dir):
    speed.note("mnist-sample", "mlp-medium", "pair", 2, 1000, 2.0)
    known = speed.estimate([("mnist-sample", "mlp-medium", "pair", 2, 4000)])
    assert known.seconds == pytest.approx(8.0 * (1 + speed.OVERHEAD))
    assert known.text.startswith("About 9 s on this machine")
    unknown = speed.estimate(
        [("mnist-sample", "mlp-medium", "pair", 2, 10), ("mnist-sample", "cnn-wide", "teacher", 1, 5)]
    )
    assert unknown.seconds is None and unknown.text == "No estimate yet: cnn-wide has not trained on this machine yet."


def test_a_damaged_speed_file_is_no_estimate_and_is_replaced_by_the_next_note(data_dir):
    (data_dir / "cache").mkdir()
    (data_dir / "cache" / "speed.json").write_text("{not json")
    assert speed.seconds_per_image("mnist-sample", "mlp-tiny", "single", 1) is None
    speed.note("mnist-sample", "mlp-tiny", "single", 1, 100, 1.0)
    assert speed.seconds_per_image("mnist-sample", "mlp-tiny", "single", 1) == pytest.approx(0.01)
    assert isinstance(json.loads((data_dir / "cache" / "speed.json").read_text()), dict)


def test_each_job_kind_counts_the_training_it_will_do(data_dir):
    data = synthetic(n_train=400, n_test=40)  # 40 of each class
    cfg = default_config("mnist-sample", epochs=3, fraction=0.5)
    half = len(kdata.subset_indices(data.train_y, fraction=0.5, seed=0))

    def work(kind, **options):
        return speed.job_work(jobs.JobSpec(kind, cfg, options), data, ["cnn-wide@1"], threads=2)

    teacher = ("mnist-sample", "cnn-wide", "teacher", 1, 400 * 6)  # cnn-wide gains nothing from a second thread
    assert work(jobs.JobKind.DISTILL) == [teacher, ("mnist-sample", "mlp-medium", "pair", 2, half * 3)]
    sweep = work(jobs.JobKind.SWEEP, temperatures=(1.0, 4.0), alphas=(0.0, 0.5))
    assert sweep[1:] == [("mnist-sample", "mlp-medium", "single", 1, half * 3)] * 3  # scratch + 2 cells with α > 0
    fraction = work(jobs.JobKind.FRACTION, fractions=(0.1, 1.0))[1:]
    # Epochs count from the run's own half of the data: all of it gets 2 epochs, a tenth of it 15.
    assert [w[4] for w in fraction] == [40 * 15] * 2 + [400 * 2] * 2
    missing = work(jobs.JobKind.MISSING_CLASS, missing=3)[1:]
    assert missing[0][4] == len(kdata.subset_indices(data.train_y, fraction=0.5, exclude_class=3, seed=0)) * 3
    capacity = work(jobs.JobKind.CAPACITY, students=("mlp-tiny", "mlp-small"))[1:]
    assert [w[1] for w in capacity] == ["mlp-tiny", "mlp-tiny", "mlp-small", "mlp-small"]


def test_a_real_distillation_leaves_a_note_that_estimates_the_next_one(fast_run, fast_config):
    from kdcore import budget

    lanes = budget.lanes()
    assert speed.seconds_per_image("mnist-sample", fast_config.student, "pair", lanes) is not None
    spec = jobs.JobSpec(jobs.JobKind.DISTILL, fast_config)
    est = speed.job_estimate(spec, kdata.load("mnist-sample"), budget.job_threads())
    assert est.seconds is not None and est.seconds > 0


def test_before_this_machine_trained_a_model_the_reference_machines_speed_is_used(data_dir, tmp_path, monkeypatch):
    reference = tmp_path / "reference_speed.json"
    reference.write_text(json.dumps({"seconds_per_image": {"cifar10|air-slim|teacher|2": 0.001}}))
    monkeypatch.setattr(speed, "REFERENCE", reference)
    est = speed.estimate([("cifar10", "air-slim", "teacher", 2, 500_000)])
    assert est.seconds == pytest.approx(500 * (1 + speed.OVERHEAD))
    assert "on a 2-core machine like the one it was measured on" in est.text
    speed.note("cifar10", "air-slim", "teacher", 2, 500_000, 250.0)  # this machine's own speed wins
    assert "on this machine" in speed.estimate([("cifar10", "air-slim", "teacher", 2, 500_000)]).text
    assert speed.estimate([("cifar10", "air-wide", "teacher", 2, 1)]).seconds is None
    assert speed.estimate([("cifar10", "air-slim", "teacher", 1, 1)]).seconds is None  # measured on 2 threads only


def test_missing_teachers_that_train_side_by_side_share_the_lanes_time(data_dir):
    data = synthetic(n_train=400, n_test=40)
    cfg = default_config("cifar10")
    spec = jobs.JobSpec(jobs.JobKind.DISTILL, cfg)
    epochs = teacher_settings("cifar10", cfg.teacher_epochs).epochs
    three = speed.job_work(spec, data, ["air-slim", "air-wide@1", "air-wide@2"], threads=2)[:3]
    # One thread each, two at a time: each member costs half its images in wall time.
    assert three == [("cifar10", a, "teacher", 1, 400 * epochs // 2) for a in ("air-slim", "air-wide", "air-wide")]
    # A lone missing member trains on both threads; a budget of one thread trains members one after another.
    assert speed.job_work(spec, data, ["air-slim"], threads=2)[0] == ("cifar10", "air-slim", "teacher", 2, 400 * epochs)
    one = speed.job_work(spec, data, ["air-slim", "air-wide@1"], threads=1)[:2]
    assert [w[3:] for w in one] == [(1, 400 * epochs)] * 2


def test_an_estimate_counts_scoring_the_views_its_students_need_until_they_are_cached(data_dir):
    from kdcore import teachers

    data = synthetic(n_train=400, n_test=40, shape=(3, 32, 32), name="cifar10")
    cfg = default_config("cifar10")  # its students learn from the teachers' views
    spec = jobs.JobSpec(jobs.JobKind.TEACHERS, cfg)
    epochs = teacher_settings("cifar10", cfg.teacher_epochs).epochs
    views = len(kdata.VIEWS["cifar10"])
    for arch in ("air-slim", "air-wide"):
        speed.note("cifar10", arch, "teacher", 1, 1000, 1.0)  # 1 ms per image and epoch, on one thread
        speed.note("cifar10", arch, "views", 2, 1000, 0.1)  # 0.1 ms per image and view, on two threads
    members = teachers.parse_members(cfg.teachers)
    training = 3 * 400 * epochs // 2 * 1e-3  # three members, two at a time
    scoring = 3 * 400 * views * 1e-4
    assert speed.job_estimate(spec, data, threads=2).seconds == pytest.approx(
        (training + scoring) * (1 + speed.OVERHEAD)
    )
    # Teachers trained and their views scored: nothing left to do before a class.
    settings = teacher_settings("cifar10", cfg.teacher_epochs)
    for member in members:
        base = teachers.cache_dir() / teachers.teacher_key(data, member, settings)
        for suffix in (".json", ".views.json"):
            base.with_name(base.name + suffix).write_text("{}")
    assert speed.job_estimate(spec, data, threads=2).text.startswith("Under a second")
    plain = jobs.JobSpec(jobs.JobKind.TEACHERS, dataclasses.replace(cfg, augment=False))
    assert [w for w in speed.job_work(plain, data, [], 2, ["air-slim"]) if w[2] == "views"] == []
