"""What-if studies over distillation: a T x alpha sweep, less data, a missing class, student capacity.

Each study trains students with the engine's one training loop (`kdcore.train.Trainer`) against
the cached ensemble teacher of a RunConfig and returns a result with `.to_json()` and a
two-sentence `.reading()` computed from its numbers. Every student of a study starts from the same
initial weights and sees its batches in the same order (both from `config.seed`), so cells differ
only in what the study varies.

Each study runs as a job: `on_event` receives a StudyStart once the teachers are ready (total =
students to train), Step and Epoch events from the Trainer for the student in training, and a
StudyCell after each finished cell or point carrying the whole result so far (`to_json()`), so a
page can redraw from the latest one alone; Finished at the end. Once `cancel` is set the study
returns what it has finished: undone cells stay None and `result.partial` is True. Cancelling while
the teachers are still training raises `teachers.Cancelled`, as `experiments.distill` does.
"""

from __future__ import annotations

import copy
import math
import numbers
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from . import assistant as kassistant
from . import data as kdata
from . import events as ev
from . import experiments, metrics, models, speed, stats, teachers
from .experiments import RunConfig
from .limits import EPOCHS, check_alpha, check_fraction, check_seed, check_temperature
from .teachers import Cancelled
from .train import Trainer, default_device, predict_logits, student_settings

MAX_GRID = 6  # per sweep axis: 6 x 6 = 36 students is the most a class demo can wait for
MAX_POINTS = 8  # fractions or students in one study
DEFAULT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
DEFAULT_ALPHAS = (0.25, 0.5, 0.75)
DEFAULT_FRACTIONS = (0.01, 0.05, 0.2, 1.0)
# What the T x alpha sweep's pickers offer (the shares of the data study offers limits.UI_FRACTIONS).
SWEEP_TEMPERATURES = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0)
SWEEP_ALPHAS = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0)
# The run settings each study (by its job kind) varies itself, so a description of its settings leaves them
# out; every study distils with Hinton KD whatever the run's method is.
VARIES = {
    "sweep": ("temperature", "alpha", "method"),
    "fraction": ("fraction", "method"),
    "missing-class": ("method",),
    "capacity": ("student", "method"),
}
FRACTION_EPOCH_BOOST = 10
EPOCH_RULE = (
    f"epochs x min({FRACTION_EPOCH_BOOST}, the run's fraction / fraction), rounded, from 1 to {EPOCHS[1]}: "
    "a smaller training set gets more epochs, so it still has enough optimisation steps"
)
BIAS_RULE = (
    "the smallest bias increase after which the student predicts the missing class for as large a share "
    "of the training images as the teacher does"
)


# --------------------------------------------------------------------------- validation and wording


def check_values(name: str, values, check: Callable[[float], float], *, limit: int, example: str) -> list[float]:
    """A non-empty list of at most `limit` distinct valid numbers, or a ValueError naming `name`."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of 1 to {limit} numbers (e.g. {example}), got {values!r}")
    if not 1 <= len(values) <= limit:
        raise ValueError(f"{name} must list 1 to {limit} values (e.g. {example}), got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ValueError(f"{name} must contain numbers only (e.g. {example}), got {v!r}")
        try:
            out.append(check(float(v)))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if len(set(out)) != len(out):
        raise ValueError(f"{name} lists the same value twice: {', '.join(f'{v:g}' for v in out)}")
    return out


def check_students(students) -> list[str]:
    names = [s.name for s in models.available("student")]
    if isinstance(students, str) or not isinstance(students, Sequence) or not 1 <= len(students) <= MAX_POINTS:
        raise ValueError(f"students must list 1 to {MAX_POINTS} of: {', '.join(names)}, got {students!r}")
    for s in students:
        if s not in names:
            raise ValueError(f"students: unknown student {s!r}; choose from: {', '.join(names)}")
    if len(set(students)) != len(students):
        raise ValueError(f"students lists the same student twice: {', '.join(students)}")
    return list(students)


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} points"


def _share(f: float) -> str:
    return f"{f * 100:g} %"


def _gain(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


# --------------------------------------------------------------------------- shared machinery


class _Session:
    """The data, teacher and bookkeeping that every student run of one study shares."""

    def __init__(self, study: str, config: RunConfig, on_event: ev.EventFn | None, cancel: threading.Event | None):
        self.study, self.config = study, config
        self.emit = on_event or ev.ignore
        self.cancel = cancel or threading.Event()
        self.started = time.perf_counter()
        self.data, self.ens = experiments.load_ensemble(config, on_event=self.emit, cancel=self.cancel)
        self.device = default_device()
        self.teacher_acc = metrics.accuracy(self.ens.test_logits, self.data.test_y)
        self.done = self.total = 0
        self.view_logits = teachers.ensemble_views(self.ens, self.data, self.emit) if config.augment else None

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def start(self, total: int, weights: Sequence[float] = ()) -> None:
        """Announce `total` students to train; `weights`: their relative costs, for an honest progress bar."""
        self.total = total
        self.emit(ev.StudyStart(study=self.study, total=total, weights=tuple(weights)))

    def cell(self, result) -> None:
        """Report a finished cell: the whole result so far, so a page can redraw from the latest one alone."""
        result.seconds = self.elapsed
        self.emit(ev.StudyCell(study=self.study, done=self.done, total=self.total, snapshot=result.to_json()))

    def indices(
        self, *, fraction: float | None = None, exclude_class: int | None = None, seed: int | None = None
    ) -> torch.Tensor:
        c = self.config
        return kdata.subset_indices(
            self.data.train_y,
            fraction=c.fraction if fraction is None else fraction,
            exclude_class=exclude_class,
            seed=c.seed if seed is None else seed,
        )

    def fit(
        self,
        label: str,
        idx: torch.Tensor,
        *,
        alpha: float,
        student: str | None = None,
        temperature: float | None = None,
        epochs: int | None = None,
        seed: int | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> nn.Module | None:
        """Train one student to the end; None if cancelled first. alpha = 0 is the scratch student.

        `teacher_logits` replace the ensemble's (e.g. a teacher assistant's)."""
        if self.cancel.is_set():
            return None
        c = self.config
        seed = c.seed if seed is None else seed
        model = models.build(student or c.student, c.dataset, seed=seed)
        trainer = Trainer(
            model,
            self.data,
            student_settings(c.dataset, epochs or c.epochs),
            seed=seed,
            name=label,
            train_idx=idx,
            teacher_logits=self.ens.train_logits if teacher_logits is None else teacher_logits,
            # An assistant has no cached views: its students learn from the plain images.
            view_logits=self.view_logits if teacher_logits is None else None,
            temperature=c.temperature if temperature is None else temperature,
            alpha=alpha,
            on_event=self.emit,
            cancel=self.cancel,
            device=self.device,
        )
        while not trainer.finished:
            trainer.run_epoch()
        result = trainer.result()
        if result.partial:
            return None
        speed.note(c.dataset, student or c.student, "single", 1, len(idx) * trainer.settings.epochs, result.seconds)
        self.done += 1
        return result.model

    def pair(self, result, point, label: str, idx: torch.Tensor, **fit) -> None:
        """Train `point`'s scratch student, then its distilled one (config alpha), reporting a cell after each;
        stops early when cancelled, leaving the untrained ones None."""
        for role, alpha in (("scratch", 0.0), ("distilled", self.config.alpha)):
            acc = self.accuracy(self.fit(f"{role} {label}", idx, alpha=alpha, **fit))
            if acc is None:
                return
            setattr(point, f"{role}_acc", acc)
            self.cell(result)

    def test_logits(self, model: nn.Module) -> torch.Tensor:
        return predict_logits(model, self.data.test_x, self.data.mean, self.data.std, device=self.device)

    def accuracy(self, model: nn.Module | None) -> float | None:
        return None if model is None else metrics.accuracy(self.test_logits(model), self.data.test_y)

    def correct(self, model: nn.Module | None) -> torch.Tensor | None:
        """Which test images the model gets right (for paired comparisons), or None."""
        return None if model is None else self.test_logits(model).argmax(1) == self.data.test_y

    def finish(self, result) -> None:
        result.seconds = self.elapsed
        self.emit(ev.Finished(partial=result.partial))


def _base_json(study: str, result) -> dict:
    return {
        "study": study,
        "dataset": result.config.dataset,
        "config": result.config.to_dict(),
        "teacher_acc": result.teacher_acc,
        "partial": result.partial,
        "seconds": round(result.seconds, 2),
    }


# --------------------------------------------------------------------------- T x alpha sweep


@dataclass
class SweepResult:
    """Test accuracy of a distilled student per (temperature, alpha); rows are temperatures."""

    config: RunConfig
    temperatures: list[float]
    alphas: list[float]
    accuracy: list[list[float | None]]  # [len(temperatures)][len(alphas)], None = not trained (stopped)
    scratch_acc: float | None = None
    teacher_acc: float | None = None
    partial: bool = False
    seconds: float = 0.0
    # Which test images each finished cell gets right: how ties are told from wins.
    correct: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def done(self) -> int:
        return sum(a is not None for row in self.accuracy for a in row)

    def ties(self) -> stats.Ties | None:
        """The best cells with α > 0 and those within test-set noise of them (a paired test on the same images);
        None when no such cell finished or a cell's per-image results are not known."""
        keys = [(c["row"], c["col"]) for c in self._cells() if c["alpha"] > 0]
        if not keys or any(k not in self.correct for k in keys):
            return None
        cells = [(k, self.correct[k], len(self.correct[k])) for k in keys]
        return stats.best_with_ties(
            cells, label=lambda k: f"T = {self.temperatures[k[0]]:g}, α = {self.alphas[k[1]]:g}"
        )

    @property
    def gain(self) -> list[list[float | None]]:
        """Each cell minus the scratch student's accuracy (the heatmap's neutral colour is 0)."""
        return [[_gain(a, self.scratch_acc) for a in row] for row in self.accuracy]

    def _cells(self) -> list[dict]:
        return [
            {"row": i, "col": j, "temperature": t, "alpha": a, "accuracy": acc, "gain": _gain(acc, self.scratch_acc)}
            for i, t in enumerate(self.temperatures)
            for j, a in enumerate(self.alphas)
            if (acc := self.accuracy[i][j]) is not None
        ]

    @property
    def best(self) -> dict | None:
        """The finished cell with the highest accuracy (the first in row order on a tie), or None."""
        return max(self._cells(), key=lambda c: c["accuracy"], default=None)

    def reading(self) -> str:
        cells, best, s = self._cells(), self.best, self.scratch_acc
        if best is None or s is None:
            return (
                "The sweep was stopped before any cell finished, so there is nothing to compare yet. "
                "Run it again and let at least one cell finish."
            )
        kd = [c for c in cells if c["alpha"] > 0]  # alpha = 0 cells are the scratch student itself
        if not kd:
            return (
                f"Every finished cell has α = 0, so each is the scratch student itself ({_pct(s)}). "
                "Add an α above 0 to see what the teacher adds."
            )
        where = f"T = {best['temperature']:g}, α = {best['alpha']:g}"
        if best["alpha"] == 0:
            first = (
                f"No setting with α > 0 beat the student trained from scratch ({_pct(s)}), so training on the "
                "labels alone (α = 0) did best here."
            )
        elif best["gain"] > 0 and len(leaders := self._leaders()) > 1:
            first = (
                f"{len(leaders)} settings are tied for best within test-set noise ({', '.join(leaders)}); the highest, "
                f"{where}, scored {_pct(best['accuracy'])}, {_pts(best['gain'])} against the student trained from "
                f"scratch ({_pct(s)})."
            )
        elif best["gain"] > 0:
            first = (
                f"The best setting was {where}: {_pct(best['accuracy'])} test accuracy, "
                f"{_pts(best['gain'])} against the student trained from scratch ({_pct(s)})."
            )
        else:
            first = (
                f"No setting beat the student trained from scratch ({_pct(s)}): the best, {where}, "
                f"reached {_pct(best['accuracy'])} ({_pts(best['gain'])})."
            )
        worst = min(kd, key=lambda c: c["accuracy"])
        beat = sum(c["gain"] > 0 for c in kd)
        scope = f"{len(kd)} cells" + (" with α > 0" if len(kd) < len(cells) else "")
        scope += " finished before the stop" if self.partial else ""
        second = (
            f"KD beat scratch in {beat} of {scope}; the worst, T = {worst['temperature']:g}, "
            f"α = {worst['alpha']:g}, scored {_pct(worst['accuracy'])} ({_pts(worst['gain'])})."
        )
        return f"{first} {second}"

    def _leaders(self) -> list[str]:
        """The cells tied with the best, as "T = 2, α = 0.25"."""
        ties = self.ties()
        if ties is None:
            return []
        return [f"T = {self.temperatures[i]:g}, α = {self.alphas[j]:g}" for i, j in (*ties.best, *ties.tied)]

    def to_json(self) -> dict:
        return {
            **_base_json("sweep", self),
            "temperatures": list(self.temperatures),
            "alphas": list(self.alphas),
            "accuracy": [list(row) for row in self.accuracy],
            "gain": self.gain,
            "scratch_acc": self.scratch_acc,
            "best": self.best,
            "cells_done": self.done,
            "reading": self.reading(),
        }


def sweep(
    config: RunConfig,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    *,
    on_event: ev.EventFn | None = None,
    cancel: threading.Event | None = None,
) -> SweepResult:
    """A distilled student per (T, alpha) on a grid of up to 6 x 6, and one scratch student as the reference.

    The scratch student trains first (it fixes the heatmap's neutral colour), then the cells row by
    row. A cell with alpha = 0 is the scratch student itself (T has no effect), so it reuses its
    accuracy. Events: "cell" with row, col, temperature, alpha, accuracy, gain; the scratch student
    is reported as a "cell" with row = col = None and role "scratch".
    """
    ts = check_values("temperatures", temperatures, check_temperature, limit=MAX_GRID, example="1,2,4,8")
    als = check_values("alphas", alphas, check_alpha, limit=MAX_GRID, example="0.25,0.5,0.75")
    s = _Session("sweep", config, on_event, cancel)
    result = SweepResult(config, ts, als, [[None] * len(als) for _ in ts], teacher_acc=s.teacher_acc)
    s.start(sweep_students(ts, als))
    idx = s.indices(exclude_class=config.exclude_class)
    scratch = s.correct(s.fit("scratch", idx, alpha=0.0))
    if scratch is not None:
        result.scratch_acc = scratch.double().mean().item()
        s.cell(result)
        cells = [(i, j, t, a) for i, t in enumerate(ts) for j, a in enumerate(als)]
        for i, j, t, a in cells:
            if s.cancel.is_set():
                break
            right = scratch if a == 0 else s.correct(s.fit(f"T={t:g} α={a:g}", idx, alpha=a, temperature=t))
            if right is None:
                break
            result.accuracy[i][j], result.correct[(i, j)] = right.double().mean().item(), right
            s.cell(result)
    result.partial = result.scratch_acc is None or result.done < len(ts) * len(als)
    s.finish(result)
    return result


def sweep_students(temperatures: Sequence[float], alphas: Sequence[float]) -> int:
    """Students a T × α sweep trains: one per cell with α > 0 (α = 0 is the scratch student) and the scratch one."""
    return len(temperatures) * sum(a > 0 for a in alphas) + 1


# --------------------------------------------------------------------------- less data


def fraction_epochs(epochs: int, fraction: float, base: float = 1.0) -> int:
    """Student epochs at a training fraction, for a run of `epochs` on `base` of the data (the config's
    fraction): epochs x min(10, base / fraction), rounded, from 1 to 500.

    One epoch of 1 % of the data is a single batch or two; without more epochs a tiny fraction
    would compare barely-trained students. Each fraction sees about as many images as the run itself,
    and capping the boost at 10x keeps a tiny fraction's cost below that of the run.
    """
    return min(EPOCHS[1], max(1, round(int(epochs) * min(FRACTION_EPOCH_BOOST, base / fraction))))


@dataclass(kw_only=True)
class _Pair:
    """A scratch and a distilled student of one study point, and the gain between them."""

    scratch_acc: float | None = None
    distilled_acc: float | None = None

    @property
    def gain(self) -> float | None:
        return _gain(self.distilled_acc, self.scratch_acc)

    def to_json(self) -> dict:
        return {**asdict(self), "gain": self.gain}


@dataclass
class FractionPoint(_Pair):
    fraction: float
    train_size: int
    epochs: int
    steps: int  # optimisation steps per student


@dataclass
class FractionResult:
    """Scratch and distilled test accuracy per training fraction, smallest fraction first."""

    config: RunConfig
    points: list[FractionPoint]
    teacher_acc: float | None = None
    partial: bool = False
    seconds: float = 0.0
    epoch_rule: str = EPOCH_RULE

    def reading(self) -> str:
        done = [p for p in self.points if p.gain is not None]
        if not done:
            return (
                "The study was stopped before any fraction finished, so there is nothing to compare yet. "
                "Run it again and let at least the smallest fraction finish."
            )
        best = max(done, key=lambda p: p.gain)
        if best.gain > 0:
            first = (
                f"KD helped most at {_share(best.fraction)} of the data: {_pts(best.gain)} "
                f"({_pct(best.distilled_acc)} against {_pct(best.scratch_acc)} from scratch)."
            )
        else:
            first = (
                f"KD did not beat scratch at any fraction; its best was {_pts(best.gain)} at {_share(best.fraction)}."
            )
        least, most = done[0], done[-1]
        if len(done) == 1:
            second = f"Only {_share(best.fraction)} finished, so there is no trend across data sizes to read yet."
        elif best.gain <= 0:
            second = (
                f"The gap ranged from {_pts(min(p.gain for p in done))} to {_pts(best.gain)}, so with these "
                "settings the soft targets cost accuracy at every data size."
            )
        elif best.gain > most.gain:
            second = (
                f"With {_share(most.fraction)} of the data the gap is {_pts(most.gain)}, so the soft "
                "targets matter most when labelled examples are scarce."
            )
        else:
            second = (
                f"With the least data ({_share(least.fraction)}) the gap was {_pts(least.gain)}, so here "
                "the soft targets did not make up for missing examples."
            )
        return f"{first} {second}"

    def to_json(self) -> dict:
        return {
            **_base_json("fraction", self),
            "epoch_rule": self.epoch_rule,
            "points": [p.to_json() for p in self.points],
            "reading": self.reading(),
        }


def fraction_study(
    config: RunConfig,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    *,
    on_event: ev.EventFn | None = None,
    cancel: threading.Event | None = None,
) -> FractionResult:
    """KD against scratch at each training fraction (smallest first), both on the same stratified subset.

    The subset comes from `subset_indices(fraction, config.seed)`; config.fraction is only the base of
    the epochs rule: student epochs follow `fraction_epochs` (EPOCH_RULE). Events: "cell" per finished
    student with index, fraction, role ("scratch" or "distilled"), accuracy and, once both are done, gain.
    """
    fs = sorted(check_values("fractions", fractions, check_fraction, limit=MAX_POINTS, example="0.01,0.05,0.2,1"))
    s = _Session("fraction", config, on_event, cancel)
    batch = student_settings(config.dataset, config.epochs).batch_size
    points, subsets = [], []
    for f in fs:
        idx = s.indices(fraction=f, exclude_class=config.exclude_class)
        epochs = fraction_epochs(config.epochs, f, config.fraction)
        points.append(FractionPoint(f, len(idx), epochs, epochs * math.ceil(len(idx) / batch)))
        subsets.append(idx)
    result = FractionResult(config, points, teacher_acc=s.teacher_acc)
    # A student's cost is about its epochs times its images.
    s.start(2 * len(fs), [p.epochs * p.train_size for p in points for _ in range(2)])
    for p, idx in zip(points, subsets):
        s.pair(result, p, _share(p.fraction), idx, epochs=p.epochs)
    result.partial = any(p.gain is None for p in points)
    s.finish(result)
    return result


# --------------------------------------------------------------------------- missing class


@dataclass
class MissingClassRow:
    name: str  # "teacher", "scratch", "distilled" or "distilled + bias fix"
    missing_acc: float | None  # share of the missing class's test images classified correctly
    accuracy: float | None  # over the whole test set

    def to_json(self) -> dict:
        return {"name": self.name, "missing_acc": self.missing_acc, "accuracy": self.accuracy}


@dataclass
class MissingClassResult:
    """Accuracy on one class the students never saw, and overall, with and without KD and the bias fix."""

    config: RunConfig
    missing: int
    class_name: str
    rows: list[MissingClassRow]
    train_idx: torch.Tensor = field(repr=False)  # the transfer set: indices into data.train_x
    bias_fix: bool = True
    bias_value: float | None = None  # added to the distilled student's output bias of the missing class
    bias_rule: str | None = None  # how bias_value was chosen
    teacher_share: float | None = None  # teacher's share of train images predicted as the missing class
    share_before: float | None = None  # the distilled student's, before the fix
    share_after: float | None = None
    teacher_acc: float | None = None
    partial: bool = False
    seconds: float = 0.0

    def row(self, name: str) -> MissingClassRow | None:
        return next((r for r in self.rows if r.name == name), None)

    def reading(self) -> str:
        s, d, f = self.row("scratch"), self.row("distilled"), self.row("distilled + bias fix")
        c = f"class {self.class_name}"
        if s is None or d is None:
            return (
                f"The study was stopped before both students finished, so there is nothing to compare for {c} "
                "yet. Run it again and let it finish."
            )
        if d.missing_acc > s.missing_acc:
            first = (
                f"Never shown {c}, the scratch student gets {_pct(s.missing_acc)} of its test images right and "
                f"the distilled one {_pct(d.missing_acc)}, learnt from the teacher's soft targets alone."
            )
        else:
            first = (
                f"Never shown {c}, the scratch student gets {_pct(s.missing_acc)} of its test images right and "
                f"the distilled one {_pct(d.missing_acc)}, so the soft targets did not teach it here."
            )
        if f is not None:
            origin = "as given" if self.bias_rule == "given" else "chosen on the training images"
            second = (
                f"Raising the output bias of {c} by {self.bias_value:.2f} ({origin}) brings it to "
                f"{_pct(f.missing_acc)}, and overall accuracy from {_pct(d.accuracy)} to {_pct(f.accuracy)}."
            )
        else:
            second = (
                f"Overall accuracy is {_pct(s.accuracy)} from scratch and {_pct(d.accuracy)} with KD; "
                "the bias fix was switched off."
            )
        return f"{first} {second}"

    def to_json(self) -> dict:
        return {
            **_base_json("missing-class", self),
            "missing": self.missing,
            "class_name": self.class_name,
            "transfer_size": len(self.train_idx),
            "rows": [r.to_json() for r in self.rows],
            "bias_fix": self.bias_fix,
            "bias_value": self.bias_value,
            "bias_rule": self.bias_rule,
            "teacher_share": self.teacher_share,
            "share_before": self.share_before,
            "share_after": self.share_after,
            "reading": self.reading(),
        }


def output_layer(model: nn.Module) -> nn.Linear:
    """The model's last nn.Linear, whose bias is the per-class output bias (the final layer of every zoo student)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].bias is None:
        raise ValueError(f"the student {type(model).__name__} has no final linear layer with a bias to adjust")
    return linears[-1]


def with_bias(model: nn.Module, cls: int, value: float) -> nn.Module:
    """A copy of the model whose output bias for class `cls` is raised by `value`."""
    fixed = copy.deepcopy(model)
    with torch.no_grad():
        output_layer(fixed).bias[cls] += value
    return fixed


def match_share_bias(student_logits: torch.Tensor, teacher_logits: torch.Tensor, cls: int) -> tuple[float, float]:
    """(bias, teacher share): the smallest bias >= 0 that, added to class `cls`'s logit, makes the student
    predict `cls` for at least the share of these images that the teacher predicts as `cls`.

    Adding b to one logit turns image i into a `cls` prediction exactly when b exceeds its margin
    d_i = max over other classes - logit of `cls`, so the answer is a quantile of the margins: exact,
    and no search over a grid. Uses no labels, only the teacher, as a transfer set would allow.
    """
    q = (teacher_logits.argmax(1) == cls).double().mean().item()
    others = student_logits.clone()
    others[:, cls] = -math.inf
    margins = (others.max(1).values - student_logits[:, cls]).sort().values
    need = math.ceil(q * len(margins) - 1e-9)
    if need == 0:
        return 0.0, q
    # Just above the need-th smallest margin, so that image flips too despite float rounding.
    return max(0.0, margins[need - 1].item() + 1e-4), q


def missing_class_study(
    config: RunConfig,
    missing: int,
    bias_fix: bool = True,
    bias_value: float | None = None,
    *,
    on_event: ev.EventFn | None = None,
    cancel: threading.Event | None = None,
) -> MissingClassResult:
    """Hinton et al. 2015, section 3: the students' transfer set leaves out class `missing` entirely.

    Trains a scratch and a distilled student on the config's training fraction without that class
    (config.exclude_class is replaced by `missing`) and reports accuracy on the missing class's test
    images and overall. With `bias_fix`, the paper's fix follows: raise the distilled student's
    output bias for the missing class by `bias_value`, or, if None, by the value BIAS_RULE gives on
    the full training set (`match_share_bias`) — chosen without the test set.
    """
    if isinstance(missing, bool) or not isinstance(missing, numbers.Integral) or not 0 <= missing < models.NUM_CLASSES:
        raise ValueError(f"missing must be a class index from 0 to {models.NUM_CLASSES - 1}, got {missing!r}")
    if bias_value is not None:
        if not bias_fix:
            raise ValueError("bias_value needs bias_fix=True (it is the amount the fix adds)")
        if isinstance(bias_value, bool) or not isinstance(bias_value, numbers.Real) or not math.isfinite(bias_value):
            raise ValueError(f"bias_value must be a finite number (e.g. 3.5), got {bias_value!r}")
    missing = int(missing)
    s = _Session("missing-class", config, on_event, cancel)
    y = s.data.test_y

    def row(name, logits):
        return MissingClassRow(
            name, metrics.per_class_accuracy(logits, y, s.data.num_classes)[missing], metrics.accuracy(logits, y)
        )

    idx = s.indices(exclude_class=missing)
    result = MissingClassResult(
        config,
        missing,
        s.data.classes[missing],
        [row("teacher", s.ens.test_logits)],
        idx,
        bias_fix=bias_fix,
        teacher_acc=s.teacher_acc,
    )
    s.start(2)
    trained = {}
    for name, alpha in (("scratch", 0.0), ("distilled", config.alpha)):
        trained[name] = s.fit(name, idx, alpha=alpha)
        if trained[name] is None:
            break
        result.rows.append(row(name, s.test_logits(trained[name])))
        s.cell(result)
    distilled = trained.get("distilled")
    if distilled is not None and bias_fix:
        train_logits = predict_logits(distilled, s.data.train_x, s.data.mean, s.data.std, device=s.device)
        chosen, result.teacher_share = match_share_bias(train_logits, s.ens.train_logits, missing)
        result.bias_value = float(chosen if bias_value is None else bias_value)
        result.bias_rule = BIAS_RULE if bias_value is None else "given"
        preds_before = train_logits.argmax(1) == missing
        shifted = train_logits.clone()
        shifted[:, missing] += result.bias_value  # the output layer's bias adds straight onto the logits
        result.share_before = preds_before.double().mean().item()
        result.share_after = (shifted.argmax(1) == missing).double().mean().item()
        result.rows.append(row("distilled + bias fix", s.test_logits(with_bias(distilled, missing, result.bias_value))))
        s.cell(result)
    result.partial = distilled is None
    s.finish(result)
    return result


# --------------------------------------------------------------------------- student capacity


def family_students(student: str) -> list[str]:
    """Every size of the student's family, smallest first: "mlp-medium" -> mlp-tiny, mlp-small, mlp-medium."""
    family = student.split("-")[0]
    return [f"{family}-{size}" for size in models.STUDENT_SIZES if f"{family}-{size}" in models.ZOO]


# The capacity study's teacher assistant: this size of the student's family (Mirzadeh et al. 2020).
ASSISTANT_SIZE = "medium"


def study_assistant(student: str) -> str | None:
    """The capacity study's teacher assistant for a family: its medium student, if the zoo has one."""
    name = f"{student.split('-')[0]}-{ASSISTANT_SIZE}"
    return name if name in models.ZOO else None


def assisted_sizes(student: str, students: Sequence[str], dataset: str) -> list[str]:
    """The sizes the capacity study also distils through its teacher assistant: those smaller than it."""
    helper = study_assistant(student)
    if helper is None:
        return []
    limit = kassistant.params(helper, dataset)
    return [s for s in students if kassistant.params(s, dataset) < limit]


@dataclass
class CapacityPoint(_Pair):
    student: str
    params: int
    assistant: str | None = None  # the teacher assistant of the "with assistant" line; None if not smaller
    assisted_acc: float | None = None  # distilled from the ensemble through the assistant

    @property
    def assisted_gain(self) -> float | None:
        return _gain(self.assisted_acc, self.scratch_acc)

    def to_json(self) -> dict:
        return {**super().to_json(), "assisted_gain": self.assisted_gain}


@dataclass
class CapacityResult:
    """KD gain per student size, smallest (fewest parameters) first."""

    config: RunConfig
    points: list[CapacityPoint]
    teacher_params: int = 0
    teacher_acc: float | None = None
    partial: bool = False
    seconds: float = 0.0

    def reading(self) -> str:
        done = [p for p in self.points if p.gain is not None]
        if not done:
            return (
                "The study was stopped before any student size finished, so there is nothing to compare yet. "
                "Run it again and let at least the smallest student finish."
            )
        best = max(done, key=lambda p: p.gain)
        if best.gain > 0:
            first = (
                f"KD helped {best.student} ({best.params:,} parameters) most: {_pts(best.gain)} "
                f"({_pct(best.distilled_acc)} against {_pct(best.scratch_acc)} from scratch)."
            )
        else:
            first = f"KD did not help any student size; the closest was {best.student} at {_pts(best.gain)}."
        small, large = done[0], done[-1]
        if len(done) == 1:
            second = f"Only {small.student} finished, so there is no trend across sizes to read yet."
        elif best.gain <= 0:
            second = (
                f"The gain ranged from {_pts(min(p.gain for p in done))} to {_pts(best.gain)}, so with these "
                "settings the soft targets cost accuracy at every size."
            )
        elif small is not best and best.gain - small.gain >= 0.005:
            second = (
                f"The smallest, {small.student} ({small.params:,} parameters), gained {_pts(small.gain)}: too "
                f"small to take in much of what the {_pct(self.teacher_acc)} teacher knows."
            )
        elif large is not best and best.gain - large.gain >= 0.005:
            second = (
                f"The largest, {large.student}, gained {_pts(large.gain)}: big enough to learn most of it "
                "from the labels alone."
            )
        else:
            lo, hi = min(p.gain for p in done), max(p.gain for p in done)
            second = (
                f"Every size gained about as much (from {_pts(lo)} to {_pts(hi)}), so capacity was not "
                "what limited KD here."
            )
        return f"{first} {second}"

    def assistant_reading(self) -> str:
        """One sentence on the "with assistant" line: did the chain ensemble → assistant → student beat
        distilling from the ensemble directly, for the smallest student both finished? "" without one."""
        done = [p for p in self.points if p.assisted_acc is not None and p.distilled_acc is not None]
        if not done:
            return ""
        p = done[0]
        diff = p.assisted_acc - p.distilled_acc
        if diff > 0:
            verdict = f"{_pts(diff)} over learning from the ensemble directly: the assistant bridged part of the gap"
        elif diff < 0:
            verdict = f"{_pts(diff)} against learning from the ensemble directly, so the detour did not pay here"
        else:
            verdict = "exactly as much as learning from the ensemble directly"
        return f"Through the teacher assistant {p.assistant}, {p.student} reached {_pct(p.assisted_acc)}, {verdict}."

    def to_json(self) -> dict:
        return {
            **_base_json("capacity", self),
            "teacher_params": self.teacher_params,
            "points": [p.to_json() for p in self.points],
            "reading": self.reading(),
            "assistant_reading": self.assistant_reading(),
        }


def capacity_study(
    config: RunConfig,
    students: Sequence[str] | None = None,
    *,
    assisted: bool = True,
    on_event: ev.EventFn | None = None,
    cancel: threading.Event | None = None,
) -> CapacityResult:
    """A scratch and a distilled student per student size, with the config's T, alpha, epochs and data.

    `students` defaults to every size of config.student's family (`family_students`); results are
    ordered by parameter count. With `assisted`, each student smaller than the family's medium student
    (`study_assistant`) is also distilled through it (Mirzadeh et al. 2020): the ensemble teaches the
    assistant (cached like a teacher, `kdcore.assistant`), the assistant teaches the student, both with
    KD at the config's T and alpha. That is the "with assistant" line, `CapacityPoint.assisted_acc`.
    """
    names = check_students(family_students(config.student) if students is None else students)
    params = {n: metrics.param_count(models.build(n, config.dataset)) for n in names}
    points = [CapacityPoint(n, params[n]) for n in sorted(names, key=lambda n: params[n])]
    helper_arch = study_assistant(config.student) if assisted else None
    through = set(assisted_sizes(config.student, names, config.dataset)) if assisted else set()
    for p in points:
        p.assistant = helper_arch if p.student in through else None
    s = _Session("capacity", config, on_event, cancel)
    result = CapacityResult(config, points, metrics.param_count(s.ens.models), s.teacher_acc)
    n_assisted = sum(p.assistant is not None for p in points)
    s.start(2 * len(points) + n_assisted + (1 if n_assisted else 0))
    idx = s.indices(exclude_class=config.exclude_class)
    helper = None
    for p in points:
        s.pair(result, p, p.student, idx, student=p.student)
        if p.assistant is None or p.distilled_acc is None or s.cancel.is_set():
            continue
        if helper is None:
            try:
                helper = kassistant.get_assistant(
                    s.data,
                    s.ens,
                    p.assistant,
                    student_settings(config.dataset, config.epochs),
                    temperature=config.temperature,
                    alpha=config.alpha,
                    seed=config.seed,
                    train_idx=idx,
                    on_event=s.emit,
                    cancel=s.cancel,
                    device=s.device,
                )
            except Cancelled:
                break
            s.done += 1
        student = s.fit(
            f"assisted {p.student}", idx, alpha=config.alpha, student=p.student, teacher_logits=helper.train_logits
        )
        p.assisted_acc = s.accuracy(student)
        if p.assisted_acc is None:
            break
        s.cell(result)
    result.partial = any(p.gain is None or (p.assistant is not None and p.assisted_acc is None) for p in points)
    s.finish(result)
    return result


# --------------------------------------------------------------------------- seeds

DEFAULT_SEEDS = (0, 1, 2)


@dataclass
class SeedPoint(_Pair):
    seed: int


@dataclass
class SeedsResult:
    """The same distillation repeated with other seeds (initial weights, data order): is its gain real?"""

    config: RunConfig
    points: list[SeedPoint]
    teacher_acc: float | None = None
    partial: bool = False
    seconds: float = 0.0

    def summary(self, key: str = "gain") -> stats.SeedSummary | None:
        values = [getattr(p, key) for p in self.points if p.gain is not None]
        return stats.seeds_summary(values, unit="points" if key == "gain" else "%") if values else None

    def reading(self) -> str:
        done = [p for p in self.points if p.gain is not None]
        if not done:
            return "The repeat was stopped before any seed finished, so there is nothing to compare yet. Run it again."
        gains = [p.gain for p in done]
        s = self.summary()
        first = f"The KD gain was {s.sentence}"
        first += f", from {_pts(min(gains))} to {_pts(max(gains))}." if len(done) > 1 else "."
        better = sum(g > 0 for g in gains)
        if better == len(done):
            second = "Every seed's distilled student beat its scratch twin, so the gain does not depend on luck."
        elif better == 0:
            second = "No seed's distilled student beat its scratch twin: with these settings the teacher did not help."
        else:
            second = (
                f"{better} of {len(done)} seeds gained: the sign of the gain depends on the seed, so a single run "
                "cannot tell whether the teacher helps here."
            )
        return f"{first} {second}"

    def to_json(self) -> dict:
        return {**_base_json("seeds", self), "points": [p.to_json() for p in self.points], "reading": self.reading()}


def seeds_study(
    config: RunConfig,
    seeds: Sequence[int] = DEFAULT_SEEDS,
    *,
    on_event: ev.EventFn | None = None,
    cancel: threading.Event | None = None,
) -> SeedsResult:
    """The config's scratch and distilled students once per seed (each seed: its own initial weights, subset
    and data order; the pair shares them), for the KD gain's mean ± std."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not 2 <= len(seeds) <= MAX_POINTS:
        raise ValueError(f"seeds must list 2 to {MAX_POINTS} seeds (e.g. 0,1,2), got {seeds!r}")
    seeds = [check_seed(v) for v in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds lists the same seed twice: {', '.join(map(str, seeds))}")
    s = _Session("seeds", config, on_event, cancel)
    result = SeedsResult(config, [SeedPoint(seed) for seed in seeds], s.teacher_acc)
    s.start(2 * len(seeds))
    for p in result.points:
        s.pair(result, p, f"seed {p.seed}", s.indices(exclude_class=config.exclude_class, seed=p.seed), seed=p.seed)
    result.partial = any(p.gain is None for p in result.points)
    s.finish(result)
    return result
