"""Experiments built from the engine's parts; `distill` trains a scratch and a distilled student side by side.

The two students share architecture, initial weights, data order and epochs; only the teacher
differs (the scratch student trains with alpha = 0). Results come back as a RunResult with a row
per model (each teacher, the ensemble, both students), the learning curves and the KD gain.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from dataclasses import asdict, dataclass, field, replace

import torch
from torch import nn

from . import budget, metrics, models, speed, stats, teachers
from . import data as kdata
from . import events as ev
from .limits import check_alpha, check_epochs, check_fraction, check_seed, check_temperature
from .train import Trainer, default_device, predict_logits, student_settings, train_together

ROLES = ("teacher", "ensemble", "scratch", "distilled")


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a distillation run. Defaults: `default_config(dataset)`."""

    dataset: str = "mnist-sample"
    teachers: tuple[str, ...] = ("cnn-wide", "cnn-deep", "mlp-wide")
    student: str = "mlp-medium"
    temperature: float = 4.0
    alpha: float = 0.5
    epochs: int = 20
    teacher_epochs: int | None = None  # None: the dataset's teacher default
    fraction: float = 1.0
    exclude_class: int | None = None
    seed: int = 0
    combine: str = "prob"

    def __post_init__(self):
        object.__setattr__(self, "teachers", tuple(m.name for m in teachers.parse_members(self.teachers)))
        if self.dataset not in kdata.DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of: {', '.join(kdata.DATASETS)}")
        students = [s.name for s in models.available("student")]
        if self.student not in students:
            raise ValueError(f"unknown student {self.student!r}; choose one of: {', '.join(students)}")
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "epochs", check_epochs(self.epochs))
        if self.teacher_epochs is not None:
            object.__setattr__(self, "teacher_epochs", check_epochs(self.teacher_epochs, "teacher_epochs"))
        object.__setattr__(self, "fraction", check_fraction(self.fraction))
        object.__setattr__(self, "seed", check_seed(self.seed))
        if self.exclude_class is not None:
            if (
                isinstance(self.exclude_class, bool)
                or int(self.exclude_class) != self.exclude_class
                or not 0 <= int(self.exclude_class) < models.NUM_CLASSES
            ):
                raise ValueError(
                    f"exclude_class must be a class index from 0 to {models.NUM_CLASSES - 1}, "
                    f"got {self.exclude_class!r}"
                )
            object.__setattr__(self, "exclude_class", int(self.exclude_class))
        if self.combine not in teachers.COMBINES:
            raise ValueError(f"combine must be one of {teachers.COMBINES}, got {self.combine!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "teachers": list(self.teachers)}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


_DEFAULTS = {
    "mnist-sample": RunConfig(),
    "mnist": RunConfig(dataset="mnist", epochs=5),
    "fashion-mnist": RunConfig(dataset="fashion-mnist", epochs=5),
    "cifar10": RunConfig(
        dataset="cifar10", teachers=("cnn-deep", "cnn-deep@1", "cnn-wide"), student="cnn-small", epochs=10
    ),
}


def default_config(dataset: str = "mnist-sample", **overrides) -> RunConfig:
    """The preset both the CLI and the UI start from; keyword arguments replace fields."""
    if dataset not in _DEFAULTS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(kdata.DATASETS)}")
    return replace(_DEFAULTS[dataset], **overrides)


@dataclass
class ModelRow:
    name: str
    role: str
    accuracy: float
    params: int
    size_bytes: int
    latency_ms_b1: float | None
    throughput_b256: float | None
    agreement: float | None  # top-1 agreement with the ensemble teacher
    kl_to_teacher: float | None
    ece: float
    per_class: list

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class RunResult:
    config: RunConfig
    rows: list[ModelRow]
    curves: dict[str, list[ev.Epoch]]  # "scratch"/"distilled" -> one event per epoch
    partial: bool
    seconds: float
    classes: tuple[str, ...]
    students: dict[str, nn.Module] = field(default_factory=dict, repr=False)
    test_logits: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    epochs_done: int = 0  # epochs both students finished; a stopped run compares them after exactly these
    notices: list[str] = field(default_factory=list)  # things the user should know, e.g. a collapsed student
    run_id: int | None = None  # its number in the run history, once saved: the one number every page shows
    intervals: dict[str, stats.Interval] = field(default_factory=dict)  # role -> its test accuracy's range
    gain_stats: stats.Gain | None = None  # distilled against scratch on the same test images

    def row(self, role: str) -> ModelRow | None:
        return next((r for r in self.rows if r.role == role), None)

    @property
    def kd_gain(self) -> float | None:
        """Distilled minus scratch test accuracy, as a fraction (x100 for points)."""
        d, s = self.row("distilled"), self.row("scratch")
        return None if d is None or s is None else d.accuracy - s.accuracy

    @property
    def per_class_gain(self) -> list[float | None]:
        d, s = self.row("distilled"), self.row("scratch")
        if d is None or s is None:
            return []
        return [None if a is None or b is None else a - b for a, b in zip(d.per_class, s.per_class)]

    def to_json(self) -> dict:
        return {
            "dataset": self.config.dataset,
            "config": self.config.to_dict(),
            "models": [r.to_json() for r in self.rows],
            "kd_gain": self.kd_gain,
            "partial": self.partial,
            "epochs_done": self.epochs_done,
            "notices": list(self.notices),
            "seconds": round(self.seconds, 2),
        }


def _row(name, role, model_list, logits, y, num_classes, teacher_logits, latency) -> ModelRow:
    is_teacher_ref = role == "ensemble"
    return ModelRow(
        name=name,
        role=role,
        accuracy=metrics.accuracy(logits, y),
        params=metrics.param_count(model_list),
        size_bytes=metrics.size_bytes(model_list),
        latency_ms_b1=None if latency is None else latency.ms_batch1,
        throughput_b256=None if latency is None else latency.throughput_b256,
        agreement=None if is_teacher_ref else metrics.agreement(logits, teacher_logits),
        kl_to_teacher=None if is_teacher_ref else metrics.kl_to_teacher(logits, teacher_logits),
        ece=metrics.expected_calibration_error(logits, y),
        per_class=metrics.per_class_accuracy(logits, y, num_classes),
    )


def ensemble_latency(members: list[metrics.Latency]) -> metrics.Latency:
    """An ensemble runs its members one after another: its time per image is the sum of theirs."""
    ms = sum(m.ms_batch1 for m in members)
    per_image = sum(1.0 / m.throughput_b256 for m in members)
    return metrics.Latency(ms, 1.0 / per_image, members[0].threads)


def teacher_rows(data: kdata.Dataset, ens: teachers.Ensemble, *, measure: bool = True) -> list[ModelRow]:
    """A row per member and one for the ensemble (whose latency is the sum of its members')."""
    k = data.num_classes
    latencies = [teachers.model_latency(t.member.arch, data.name, t.model) if measure else None for t in ens.members]
    rows = [
        _row(t.name, "teacher", t.model, t.test_logits, data.test_y, k, ens.test_logits, lat)
        for t, lat in zip(ens.members, latencies)
    ]
    if len(ens.members) > 1:
        lat = ensemble_latency(latencies) if measure else None
        rows.append(_row("ensemble", "ensemble", ens.models, ens.test_logits, data.test_y, k, ens.test_logits, lat))
    else:
        rows[0].role = "ensemble"
        rows[0].agreement = rows[0].kl_to_teacher = None
    return rows


def load_ensemble(
    config: RunConfig, *, on_event: ev.EventFn = ev.ignore, cancel=None, data: kdata.Dataset | None = None
) -> tuple[kdata.Dataset, teachers.Ensemble]:
    """The dataset and the config's trained (or cached) teacher ensemble."""
    if data is None:
        on_event(ev.DatasetLoading(dataset=config.dataset))
        data = kdata.load(config.dataset)
    members = teachers.parse_members(config.teachers)
    ens = teachers.ensemble(
        data, members, epochs=config.teacher_epochs, combine=config.combine, on_event=on_event, cancel=cancel
    )
    return data, ens


@dataclass
class TeachersResult:
    """A prepared teacher ensemble as the Teachers page shows it: a row per model and how each member came."""

    config: RunConfig
    classes: tuple[str, ...]
    rows: list[ModelRow]
    cached: dict[str, bool]  # member -> loaded from the cache (else trained now)
    train_seconds: dict[str, float]


def prepare_teachers(config: RunConfig, *, on_event: ev.EventFn = ev.ignore, cancel=None) -> TeachersResult:
    """Train (or load) the config's teachers and measure each member and the ensemble."""
    data, ens = load_ensemble(config, on_event=on_event, cancel=cancel)
    on_event(ev.Measuring())
    rows = teacher_rows(data, ens)
    on_event(ev.Finished(partial=False))
    return TeachersResult(
        config,
        data.classes,
        rows,
        {t.name: t.cached for t in ens.members},
        {t.name: t.train_seconds for t in ens.members},
    )


# A student at most this many times chance accuracy has learnt nothing; the scratch student at least
# SCRATCH_LEARNT times chance shows the data and the student size are not to blame.
COLLAPSED, SCRATCH_LEARNT = 1.5, 3.0


def collapse_notice(
    config: RunConfig, scratch: ev.Epoch, distilled: ev.Epoch, teacher_acc: float, num_classes: int
) -> str | None:
    """Advice when the distilled student is stuck at chance while the scratch one learns, by the likely cause."""
    chance = 1.0 / num_classes
    if distilled.test_acc > COLLAPSED * chance or scratch.test_acc < SCRATCH_LEARNT * chance:
        return None
    head = (
        f"After epoch {distilled.epoch} the distilled student is at chance ({distilled.test_acc:.0%}) while the "
        f"scratch one reaches {scratch.test_acc:.0%}:"
    )
    if teacher_acc <= COLLAPSED * chance:
        return (
            f"{head} the teacher ensemble itself is at chance ({teacher_acc:.0%}), so its soft targets carry "
            "nothing to learn. Train the teachers for more epochs, or pick other teachers."
        )
    if config.temperature < 1:
        return (
            f"{head} T = {config.temperature:g} is below 1, which makes the soft targets almost one-hot and "
            "shrinks the soft loss's gradient with T. Use T from 1 to 20."
        )
    if config.alpha >= 1:
        return (
            f"{head} with α = 1 it learns from the teacher's soft targets alone. Lower α (e.g. 0.5) so the labels "
            "keep it on track."
        )
    return f"{head} try the preset's T = 4 and α = 0.5, and check the teachers on the Teachers page."


def distill(
    config: RunConfig,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    measure: bool = True,
) -> RunResult | None:
    """Train the scratch and the distilled student in lockstep from the config's teacher ensemble.

    Returns None if stopped before both students finished one epoch; a run stopped later compares the
    two students after the last epoch both finished (`epochs_done`).
    """
    cancel = cancel or threading.Event()
    started = time.perf_counter()
    data, ens = load_ensemble(config, on_event=on_event, cancel=cancel)
    idx = kdata.subset_indices(
        data.train_y, fraction=config.fraction, exclude_class=config.exclude_class, seed=config.seed
    )
    settings = student_settings(config.dataset, config.epochs)
    device = default_device()
    scratch_model = models.build(config.student, config.dataset, seed=config.seed)
    distilled_model = copy.deepcopy(scratch_model)
    common = dict(
        seed=config.seed,
        train_idx=idx,
        teacher_logits=ens.train_logits,
        temperature=config.temperature,
        on_event=on_event,
        cancel=cancel,
        device=device,
    )
    # The scratch student also gets the teacher's logits, with alpha = 0: they do not touch its
    # gradient but let the curves show how far its soft loss drifts from the teacher.
    trainers = {
        "scratch": Trainer(scratch_model, data, settings, name="scratch", alpha=0.0, **common),
        "distilled": Trainer(distilled_model, data, settings, name="distilled", alpha=config.alpha, **common),
    }
    on_event(ev.StudentsStart(models=tuple(trainers), epochs=config.epochs, train_size=len(idx)))
    teacher_acc = metrics.accuracy(ens.test_logits, data.test_y)
    notices: list[str] = []

    def check(epochs: list[ev.Epoch]) -> None:
        advice = None if notices else collapse_notice(config, *epochs, teacher_acc, data.num_classes)
        if advice:
            notices.append(advice)
            on_event(ev.Notice(message=advice, cause="collapse"))

    lanes = budget.student_lanes() if device.type == "cpu" else 1
    training = time.perf_counter()
    done = train_together(list(trainers.values()), lanes=lanes, on_epoch=check)
    if done == 0:
        return None
    speed.note(config.dataset, config.student, "pair", lanes, done * len(idx), time.perf_counter() - training)
    partial = done < config.epochs
    on_event(ev.Measuring())
    rows = teacher_rows(data, ens, measure=measure)
    test_logits = {"ensemble": ens.test_logits}
    students = {}
    # Both students are the same architecture, so they cost the same to run: one measurement serves both,
    # where two would show timing noise as a speed difference between them.
    lat = teachers.model_latency(config.student, data.name, trainers["distilled"].model.eval()) if measure else None
    for role, trainer in trainers.items():
        model = trainer.model.eval()
        logits = predict_logits(model, data.test_x, data.mean, data.std, device=device)
        rows.append(
            _row(f"{role} ({config.student})", role, model, logits, data.test_y, data.num_classes, ens.test_logits, lat)
        )
        students[role] = model
        test_logits[role] = logits
    correct = {role: logits.argmax(1) == data.test_y for role, logits in test_logits.items()}
    result = RunResult(
        config,
        rows,
        {r: list(t.history) for r, t in trainers.items()},
        partial,
        time.perf_counter() - started,
        data.classes,
        students,
        test_logits,
        epochs_done=done,
        notices=notices,
        intervals={role: stats.accuracy_interval(int(c.sum()), len(c)) for role, c in correct.items()},
        gain_stats=stats.paired_gain(correct["distilled"], correct["scratch"]),
    )
    on_event(ev.Finished(partial=partial, kd_gain=result.kd_gain))
    return result
