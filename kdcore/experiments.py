"""Experiments built from the engine's parts; `distill` trains a scratch and a distilled student side by side.

The two students share architecture, initial weights, data order and epochs; only the teacher
differs (the scratch student trains with alpha = 0). Results come back as a RunResult with a row
per model (each teacher, the ensemble, both students), the learning curves and the KD gain.

RunConfig.method picks how the distilled student learns (kdcore.limits.METHODS):
- "kd": Hinton et al. 2015, from the ensemble (`losses.distillation_loss` at T and alpha);
- "dkd": decoupled KD (Zhao et al. 2022), from the ensemble (`losses.dkd_loss` with alpha_tc and beta_nc);
- "ta": through a teacher assistant (Mirzadeh et al. 2020): the ensemble teaches `assistant`, which
  teaches the student, both with KD at T and alpha (`kdcore.assistant`);
- "self": born-again (Furlanello et al. 2018): generation 0 is the scratch student; generation k learns
  with KD at T and alpha from generation k - 1; the distilled student is the last generation.
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

from . import assistant as kassistant
from . import budget, metrics, models, speed, stats, teachers
from . import data as kdata
from . import events as ev
from .limits import (
    check_alpha,
    check_epochs,
    check_fraction,
    check_generations,
    check_method,
    check_seed,
    check_temperature,
    check_weight,
)
from .losses import dkd_loss
from .probes import Probes, probe_indices
from .train import Trainer, default_device, predict_logits, student_settings, train_together

ROLES = ("teacher", "ensemble", "scratch", "distilled")
# Rows only some methods add: the teacher assistant ("ta") and the born-again generations between the
# scratch student and the last one ("self"). Pages that colour by role draw ROLES.
METHOD_ROLES = ("assistant", "generation")
# Each method's own RunConfig fields; a config's key and to_dict() carry only its method's, so every
# "kd" config keeps the key it had before methods existed (history rows and caches stay valid).
METHOD_FIELDS = {"kd": (), "dkd": ("alpha_tc", "beta_nc"), "ta": ("assistant",), "self": ("generations",)}
# Methods whose teacher is the ensemble, whose logits for augmented views are cached.
AUGMENT_METHODS = ("kd", "dkd")


# DKD's NCKD weight when RunConfig.beta_nc is None: the paper's 8 for CIFAR-100 (at T = 4), or a dataset's
# own, measured. mnist-sample's: KD gain in points (mean ± std, seeds 0-2, preset teachers, T = 4, 20 epochs;
# `benchmarks/kd_methods.py --methods kd,dkd --beta-nc 0.5,1,2,4,8`):
#   beta_nc      0.5            1              2              4              8          (kd: +1.10 ± 0.44, -1.93 ± 0.32)
#   mlp-medium   +1.13 ± 0.35   +0.97 ± 0.06   +0.97 ± 0.32   +0.60 ± 0.35   +0.60 ± 0.30
#   mlp-tiny     -1.80 ± 0.26   -1.90 ± 0.30   -2.97 ± 0.65   -3.70 ± 0.56   -4.87 ± 0.32
# The teachers put almost all their mass on the right class here, so NCKD (renormalised) is large next to
# what classical KD gives it; up-weighting it 8x costs the tiny student 3 points. 0.5 (the paper's ImageNet
# value) did best for both students, though within one std of 1.
BETA_NC_PAPER = 8.0
BETA_NC_BY_DATASET = {"mnist-sample": 0.5}


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
    method: str = "kd"
    alpha_tc: float = 1.0  # dkd: weight of the target-class part (TCKD)
    beta_nc: float | None = None  # dkd: weight of the non-target part (NCKD); None = the dataset's (nckd_weight)
    assistant: str | None = None  # ta: None = the next size up in the student's family (assistant_arch)
    generations: int = 2  # self: born-again students after generation 0
    # Consistent teaching (Beyer et al. 2022): students train on the dataset's fixed augmented views, each
    # taught by the teacher's logits for that exact view; the scratch student sees the same views.
    augment: bool = False

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
        object.__setattr__(self, "method", check_method(self.method))
        object.__setattr__(self, "alpha_tc", check_weight(self.alpha_tc, "alpha_tc"))
        if self.beta_nc is not None:
            object.__setattr__(self, "beta_nc", check_weight(self.beta_nc, "beta_nc"))
        object.__setattr__(self, "generations", check_generations(self.generations))
        if self.augment is not False:
            if not isinstance(self.augment, bool):
                raise ValueError(f"augment must be true or false, got {self.augment!r}")
            if self.dataset not in kdata.VIEWS:
                raise ValueError(
                    f"augment needs fixed augmented views, which only {', '.join(kdata.VIEWS)} has; "
                    f"turn it off for {self.dataset}"
                )
            if self.method not in AUGMENT_METHODS:
                raise ValueError(
                    f"augment works with the methods {', '.join(AUGMENT_METHODS)} (their teacher is the ensemble), "
                    f"not with {self.method!r}"
                )
        if self.method == "ta":
            # Checked here, kept as given: None stays "the default for whichever student", so changing the
            # student never leaves a config naming an assistant smaller than it.
            kassistant.check_assistant(self.assistant, self.student, self.dataset)

    @property
    def nckd_weight(self) -> float:
        """DKD's beta_nc: as given, or the dataset's measured default (BETA_NC_BY_DATASET), else the paper's 8."""
        return self.beta_nc if self.beta_nc is not None else BETA_NC_BY_DATASET.get(self.dataset, BETA_NC_PAPER)

    @property
    def assistant_arch(self) -> str:
        """The teacher assistant a "ta" run uses: `assistant`, or the next size up in the student's family."""
        return kassistant.check_assistant(self.assistant, self.student, self.dataset)

    def to_dict(self) -> dict:
        """Every field that determines the run: a method's own fields only with that method."""
        values = {**asdict(self), "teachers": list(self.teachers)}
        for name in ("method", *{f for fields in METHOD_FIELDS.values() for f in fields}):
            values.pop(name)
        if self.method != "kd":
            values.update({"method": self.method, **{f: getattr(self, f) for f in METHOD_FIELDS[self.method]}})
        if not self.augment:  # as before the switch existed, so older runs keep their keys
            values.pop("augment")
        return values

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


_DEFAULTS = {
    "mnist-sample": RunConfig(),
    "mnist": RunConfig(dataset="mnist", epochs=5),
    # On all 60,000 images the labels alone take mlp-medium as far as the teachers do (KD gain -0.33 ± 0.16);
    # on a fifth of them the soft targets add +0.96 ± 0.06 (README, benchmarks/cifar_students.py).
    "fashion-mnist": RunConfig(dataset="fashion-mnist", epochs=25, fraction=0.2),
    # Chosen by measurement (benchmarks/cifar_students.py, README): at T = 1 the label-smoothed airbench
    # teachers are already soft, and α = 0.9 learns mostly from them. Students see a fifth of the training
    # images, many times over: that is where soft targets teach most (+2.6 points with consistent views,
    # against +1.3 on all the images in the same two minutes, where the labels alone already go far).
    "cifar10": RunConfig(
        dataset="cifar10",
        teachers=("air-slim", "air-wide@1", "air-wide@2"),
        student="bn-small",
        temperature=1.0,
        alpha=0.9,
        epochs=20,
        fraction=0.2,
        augment=True,
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
    generations: list[float] = field(default_factory=list)  # "self": test accuracy of generation 0, 1, ...
    probes: Probes | None = field(default=None, repr=False)  # both students on the probe images, per epoch
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
            "method": self.config.method,
            "generations": list(self.generations),
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
    """Train (or load) the config's teachers and measure each member and the ensemble. When the config's
    students learn from augmented views, their logits are scored too, so a class's first run does not wait."""
    data, ens = load_ensemble(config, on_event=on_event, cancel=cancel)
    if config.augment:
        teachers.ensemble_views(ens, data, on_event)
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
    if config.method != "dkd" and config.alpha >= 1:
        return (
            f"{head} with α = 1 it learns from the teacher's soft targets alone. Lower α (e.g. 0.5) so the labels "
            "keep it on track."
        )
    return f"{head} try the preset's T = 4 and α = 0.5, and check the teachers on the Teachers page."


def _student_losses(config: RunConfig):
    """The (scratch, distilled) loss functions of a run from the ensemble, or (None, None) for the Hinton loss.

    For "dkd" the scratch student trains on the labels alone but reports the DKD parts it would have, so
    both students' curves show TCKD and NCKD.
    """
    if config.method != "dkd":
        return None, None

    def distilled(s, t, y):
        return dkd_loss(s, t, y, config.temperature, config.alpha_tc, config.nckd_weight)

    def scratch(s, t, y):
        parts = distilled(s, t, y)
        return parts._replace(total=parts.hard)

    return scratch, distilled


def train_indices(config: RunConfig, train_y: torch.Tensor) -> torch.Tensor:
    """The training images a run's students see: its seeded, stratified fraction, minus any excluded class."""
    return kdata.subset_indices(train_y, fraction=config.fraction, exclude_class=config.exclude_class, seed=config.seed)


class _Run:
    """What every method's distillation shares: data, teachers, training images, probes and the table."""

    def __init__(self, config: RunConfig, on_event: ev.EventFn, cancel: threading.Event, measure: bool, probes: bool):
        self.config, self.on_event, self.cancel, self.measure = config, on_event, cancel, measure
        self.started = time.perf_counter()
        self.data, self.ens = load_ensemble(config, on_event=on_event, cancel=cancel)
        self.idx = train_indices(config, self.data.train_y)
        self.settings = student_settings(config.dataset, config.epochs)
        self.device = default_device()
        self.teacher_acc = metrics.accuracy(self.ens.test_logits, self.data.test_y)
        self.notices: list[str] = []
        self.probes = (
            Probes.start(probe_indices(self.data.test_y), self.data.test_y, self.ens.test_logits) if probes else None
        )
        # The ensemble's logits for every augmented view, when the students learn from views.
        self.view_logits = teachers.ensemble_views(self.ens, self.data, on_event) if config.augment else None

    def trainer(self, name: str, model: nn.Module, teacher_logits: torch.Tensor, alpha: float, loss_fn=None) -> Trainer:
        c = self.config
        return Trainer(
            model,
            self.data,
            self.settings,
            seed=c.seed,
            name=name,
            train_idx=self.idx,
            teacher_logits=teacher_logits,
            temperature=c.temperature,
            alpha=alpha,
            on_event=self.on_event,
            cancel=self.cancel,
            device=self.device,
            loss_fn=loss_fn,
            view_logits=self.view_logits,
        )

    def watch(self, trainers: dict[str, Trainer], teacher_acc: float, baseline: Trainer | None = None):
        """The on_epoch callback: probes after every epoch, and a notice if the distilled student is stuck at
        chance while the scratch student (the other trainer, or `baseline`'s same epoch) learns."""

        def on_epoch(epochs: list[ev.Epoch]) -> None:
            if self.probes is not None:
                for role, trainer in trainers.items():
                    self.probes.record(role, trainer.test_logits)
            pair = epochs if baseline is None else [baseline.history[epochs[-1].epoch - 1], epochs[-1]]
            if len(pair) == 2 and not self.notices:
                advice = collapse_notice(self.config, *pair, teacher_acc, self.data.num_classes)
                if advice:
                    self.notices.append(advice)
                    self.on_event(ev.Notice(message=advice, cause="collapse"))

        return on_epoch

    def row(self, name: str, role: str, model: nn.Module, logits: torch.Tensor, latency) -> ModelRow:
        d = self.data
        return _row(name, role, model, logits, d.test_y, d.num_classes, self.ens.test_logits, latency)

    def test_logits(self, model: nn.Module) -> torch.Tensor:
        return predict_logits(model, self.data.test_x, self.data.mean, self.data.std, device=self.device)

    def result(
        self,
        students: dict[str, nn.Module],
        curves: dict[str, list[ev.Epoch]],
        done: int,
        partial: bool,
        *,
        extra_rows: list[ModelRow] = (),
        names: dict[str, str] | None = None,
    ) -> RunResult:
        """The table (teachers, the method's own rows, then the students), measured, and the Finished event.

        `students` maps a role ("scratch", "distilled") or a generation's name to its model; a row is called
        by `names` (default: that key), with the student's architecture."""
        c = self.config
        self.on_event(ev.Measuring())
        rows = teacher_rows(self.data, self.ens, measure=self.measure) + list(extra_rows)
        test_logits = {"ensemble": self.ens.test_logits}
        # Every student is the same architecture, so they cost the same to run: one measurement serves all,
        # where several would show timing noise as a speed difference between them.
        arch, dataset = c.student, self.data.name
        lat = teachers.model_latency(arch, dataset, students["distilled"].eval()) if self.measure else None
        for name, model in students.items():
            role = name if name in ROLES else "generation"
            model.eval()
            logits = self.test_logits(model)
            rows.append(self.row(f"{(names or {}).get(name, name)} ({c.student})", role, model, logits, lat))
            test_logits[name] = logits
        correct = {name: logits.argmax(1) == self.data.test_y for name, logits in test_logits.items()}
        result = RunResult(
            c,
            rows,
            curves,
            partial,
            time.perf_counter() - self.started,
            self.data.classes,
            {r: m for r, m in students.items() if r in ROLES},
            test_logits,
            epochs_done=done,
            notices=self.notices,
            probes=self.probes,
            intervals={name: stats.accuracy_interval(int(v.sum()), len(v)) for name, v in correct.items()},
            gain_stats=stats.paired_gain(correct["distilled"], correct["scratch"])
            if {"distilled", "scratch"} <= correct.keys()
            else None,
        )
        self.on_event(ev.Finished(partial=partial, kd_gain=result.kd_gain))
        return result


def distill(
    config: RunConfig,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    measure: bool = True,
    probes: bool = True,
) -> RunResult | None:
    """Train the scratch and the distilled student from the config's teacher ensemble, by config.method.

    "kd", "dkd" and "ta" train both students in lockstep (for "ta" after the assistant is loaded or
    trained); they return None if stopped before both students finished one epoch, and a run stopped
    later compares the two students after the last epoch both finished (`epochs_done`). "self" trains
    its generations one after another: stopped before generation 1 finished it returns None; stopped
    later, the last finished generation is the distilled student and the result is partial.
    With `probes`, both students' probabilities on the probe images are kept after every epoch.
    """
    run = _Run(config, on_event, cancel or threading.Event(), measure, probes)
    if config.method == "self":
        return _born_again(run)
    teacher_logits, extra_rows = run.ens.train_logits, []
    teacher_acc = run.teacher_acc
    if config.method == "ta":
        arch = config.assistant_arch
        on_event(ev.AssistantStart(model=kassistant.display_name(arch), epochs=config.epochs))
        helper = kassistant.get_assistant(
            run.data,
            run.ens,
            arch,
            run.settings,
            temperature=config.temperature,
            alpha=config.alpha,
            seed=config.seed,
            train_idx=run.idx,
            on_event=on_event,
            cancel=run.cancel,
            device=run.device,
        )
        teacher_logits, teacher_acc = helper.train_logits, metrics.accuracy(helper.test_logits, run.data.test_y)
        lat = metrics.measure_latency(helper.model, run.data.image_shape) if measure else None
        extra_rows.append(run.row(helper.name, "assistant", helper.model, helper.test_logits, lat))
    scratch_model = models.build(config.student, config.dataset, seed=config.seed)
    scratch_loss, distilled_loss = _student_losses(config)
    # The scratch student also gets the teacher's logits, with alpha = 0: they do not touch its
    # gradient but let the curves show how far its soft loss drifts from the teacher.
    trainers = {
        "scratch": run.trainer("scratch", scratch_model, teacher_logits, 0.0, scratch_loss),
        "distilled": run.trainer(
            "distilled", copy.deepcopy(scratch_model), teacher_logits, config.alpha, distilled_loss
        ),
    }
    on_event(ev.StudentsStart(models=tuple(trainers), epochs=config.epochs, train_size=len(run.idx)))
    lanes = budget.lanes() if run.device.type == "cpu" else 1
    training = time.perf_counter()
    done = train_together(list(trainers.values()), lanes=lanes, on_epoch=run.watch(trainers, teacher_acc))
    if done == 0:
        return None
    speed.note(config.dataset, config.student, "pair", lanes, done * len(run.idx), time.perf_counter() - training)
    if run.probes is not None:
        run.probes.truncate(done)
    return run.result(
        {r: t.model for r, t in trainers.items()},
        {r: list(t.history) for r, t in trainers.items()},
        done,
        done < config.epochs,
        extra_rows=extra_rows,
    )


def generation_name(k: int) -> str:
    return "scratch" if k == 0 else f"generation {k}"


def _born_again(run: _Run) -> RunResult | None:
    """Furlanello et al. (2018): generation 0 is the scratch student; generation k learns from k - 1."""
    c = run.config
    gens = c.generations
    names = [generation_name(k) for k in range(gens)] + ["distilled"]
    run.on_event(ev.StudentsStart(models=tuple(names), epochs=c.epochs, train_size=len(run.idx)))
    init = models.build(c.student, c.dataset, seed=c.seed)
    finished: list[Trainer] = []
    for k, name in enumerate(names):
        # Every generation starts from the scratch student's initial weights and sees the same batches, so a
        # generation differs from the one before only by what it learns from.
        teacher = (
            run.ens.train_logits
            if k == 0
            else predict_logits(finished[-1].model, run.data.train_x, run.data.mean, run.data.std, device=run.device)
        )
        trainer = run.trainer(name, copy.deepcopy(init), teacher, 0.0 if k == 0 else c.alpha)
        teacher_acc = run.teacher_acc if k == 0 else finished[-1].history[-1].test_acc
        baseline = finished[0] if finished else None
        done = train_together([trainer], on_epoch=run.watch({name: trainer}, teacher_acc, baseline))
        if done < c.epochs:
            break
        finished.append(trainer)
    if len(finished) < 2:
        return None
    if run.probes is not None:
        run.probes.keep([t.name for t in finished])
        run.probes.rename(finished[-1].name, "distilled")
    students = {generation_name(k): t.model for k, t in enumerate(finished[:-1])}
    students["distilled"] = finished[-1].model
    curves = {name: list(t.history) for name, t in zip(students, finished)}
    last = generation_name(len(finished) - 1)
    result = run.result(students, curves, c.epochs, len(finished) < len(names), names={"distilled": last})
    result.generations = [r.accuracy for r in result.rows if r.role in ("scratch", "generation", "distilled")]
    return result
