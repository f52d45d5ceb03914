"""What-if studies over distillation: a T x alpha sweep, less data, a missing class, student capacity.

Each study trains students with the engine's one training loop (`kdcore.train.Trainer`) against
the cached ensemble teacher of a RunConfig and returns a result with `.to_json()` and a
two-sentence `.reading()` computed from its numbers. Every student of a study starts from the same
initial weights and sees its batches in the same order (both from `config.seed`), so cells differ
only in what the study varies.

Each study runs as a job: `on_event` receives
  {"kind": "study_start", "study", "total"}              once the teachers are ready (total = students to train),
  {"kind": "step" | "epoch", "model": <run label>, ...}  from the Trainer, for progress within a run,
  {"kind": "cell", "study", ..., "snapshot"}             after each finished cell or point, with its numbers and
                                                          the whole result so far (`to_json()`), so a page can
                                                          redraw from the latest cell event alone,
  {"kind": "progress", "study", "done", "total"}         after each trained student (and done = 0 at the start),
  {"kind": "done", "study", "partial"}                   at the end
(every study event also carries "elapsed" seconds). Once `cancel` is set the study returns what it
has finished: undone cells stay None and `result.partial` is True. Cancelling while the teachers
are still training raises `teachers.Cancelled`, as `experiments.distill` does.

`add_cli` registers the matching `python -m kdcore sweep|fraction|missing-class|capacity` commands.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import numbers
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from . import data as kdata
from . import experiments, metrics, models, teachers
from .experiments import RunConfig
from .losses import check_alpha, check_temperature
from .train import Trainer, default_device, predict_logits, student_settings

MAX_GRID = 6  # per sweep axis: 6 x 6 = 36 students is the most a class demo can wait for
MAX_POINTS = 8  # fractions or students in one study
MAX_EPOCHS = 500  # as RunConfig allows
DEFAULT_TEMPERATURES = (1.0, 2.0, 4.0, 8.0)
DEFAULT_ALPHAS = (0.25, 0.5, 0.75)
DEFAULT_FRACTIONS = (0.01, 0.05, 0.2, 1.0)
FRACTION_EPOCH_BOOST = 10
EPOCH_RULE = (
    f"epochs x min({FRACTION_EPOCH_BOOST}, 1 / fraction), rounded, at most {MAX_EPOCHS}: "
    "a smaller training set gets more epochs, so it still has enough optimisation steps"
)
BIAS_RULE = (
    "the smallest bias increase after which the student predicts the missing class for as large a share "
    "of the training images as the teacher does"
)

EventFn = Callable[[dict], None]


# --------------------------------------------------------------------------- validation and wording


def _check_values(name: str, values, check: Callable[[float], float], *, limit: int, example: str) -> list[float]:
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


def _check_fraction(f: float) -> float:
    if not (math.isfinite(f) and 0.0 < f <= 1.0):
        raise ValueError(f"fraction must be in (0, 1], got {f!r}")
    return f


def _check_students(students) -> list[str]:
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

    def __init__(self, study: str, config: RunConfig, on_event: EventFn | None, cancel: threading.Event | None):
        self.study, self.config = study, config
        self.emit = on_event or (lambda e: None)
        self.cancel = cancel or threading.Event()
        self.started = time.perf_counter()
        self.data, self.ens = experiments.load_ensemble(config, on_event=self.emit, cancel=self.cancel)
        self.device = default_device()
        self.teacher_acc = metrics.accuracy(self.ens.test_logits, self.data.test_y)
        self.done = self.total = 0

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def event(self, kind: str, **fields) -> None:
        self.emit({"kind": kind, "study": self.study, **fields, "elapsed": self.elapsed})

    def start(self, total: int) -> None:
        self.total = total
        self.event("study_start", total=total)
        self.event("progress", done=0, total=total)

    def cell(self, result, **fields) -> None:
        result.seconds = self.elapsed
        self.event("cell", **fields, snapshot=result.to_json())

    def indices(self, *, fraction: float | None = None, exclude_class: int | None = None) -> torch.Tensor:
        c = self.config
        return kdata.subset_indices(
            self.data.train_y,
            fraction=c.fraction if fraction is None else fraction,
            exclude_class=exclude_class,
            seed=c.seed,
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
    ) -> nn.Module | None:
        """Train one student to the end; None if cancelled first. alpha = 0 is the scratch student."""
        if self.cancel.is_set():
            return None
        c = self.config
        model = models.build(student or c.student, c.dataset, seed=c.seed)
        trainer = Trainer(
            model,
            self.data,
            student_settings(c.dataset, epochs or c.epochs),
            seed=c.seed,
            name=label,
            train_idx=idx,
            teacher_logits=self.ens.train_logits,
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
        self.done += 1
        self.event("progress", done=self.done, total=self.total)
        return result.model

    def test_logits(self, model: nn.Module) -> torch.Tensor:
        return predict_logits(model, self.data.test_x, self.data.mean, self.data.std, device=self.device)

    def accuracy(self, model: nn.Module | None) -> float | None:
        return None if model is None else metrics.accuracy(self.test_logits(model), self.data.test_y)

    def finish(self, result) -> None:
        result.seconds = self.elapsed
        self.event("done", partial=result.partial)


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

    @property
    def done(self) -> int:
        return sum(a is not None for row in self.accuracy for a in row)

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
    on_event: EventFn | None = None,
    cancel: threading.Event | None = None,
) -> SweepResult:
    """A distilled student per (T, alpha) on a grid of up to 6 x 6, and one scratch student as the reference.

    The scratch student trains first (it fixes the heatmap's neutral colour), then the cells row by
    row. A cell with alpha = 0 is the scratch student itself (T has no effect), so it reuses its
    accuracy. Events: "cell" with row, col, temperature, alpha, accuracy, gain; the scratch student
    is reported as a "cell" with row = col = None and role "scratch".
    """
    ts = _check_values("temperatures", temperatures, check_temperature, limit=MAX_GRID, example="1,2,4,8")
    als = _check_values("alphas", alphas, check_alpha, limit=MAX_GRID, example="0.25,0.5,0.75")
    s = _Session("sweep", config, on_event, cancel)
    result = SweepResult(config, ts, als, [[None] * len(als) for _ in ts], teacher_acc=s.teacher_acc)
    trained_cells = sum(a > 0 for a in als) * len(ts)
    s.start(trained_cells + 1)
    idx = s.indices(exclude_class=config.exclude_class)
    result.scratch_acc = s.accuracy(s.fit("scratch", idx, alpha=0.0))
    if result.scratch_acc is not None:
        s.cell(
            result,
            role="scratch",
            row=None,
            col=None,
            temperature=None,
            alpha=0.0,
            accuracy=result.scratch_acc,
            gain=0.0,
        )
        cells = [(i, j, t, a) for i, t in enumerate(ts) for j, a in enumerate(als)]
        for i, j, t, a in cells:
            if s.cancel.is_set():
                break
            acc = result.scratch_acc if a == 0 else s.accuracy(s.fit(f"T={t:g} α={a:g}", idx, alpha=a, temperature=t))
            if acc is None:
                break
            result.accuracy[i][j] = acc
            s.cell(
                result,
                role="distilled",
                row=i,
                col=j,
                temperature=t,
                alpha=a,
                accuracy=acc,
                gain=acc - result.scratch_acc,
            )
    result.partial = result.scratch_acc is None or result.done < len(ts) * len(als)
    s.finish(result)
    return result


# --------------------------------------------------------------------------- less data


def fraction_epochs(epochs: int, fraction: float) -> int:
    """Student epochs at a training fraction: epochs x min(10, 1 / fraction), rounded, at most 500.

    One epoch of 1 % of the data is a single batch or two; without more epochs a tiny fraction
    would compare barely-trained students. Capping the boost at 10x keeps each fraction's cost at
    most that of one run on all the data.
    """
    return min(MAX_EPOCHS, max(int(epochs), round(int(epochs) * min(FRACTION_EPOCH_BOOST, 1.0 / fraction))))


@dataclass
class FractionPoint:
    fraction: float
    train_size: int
    epochs: int
    steps: int  # optimisation steps per student
    scratch_acc: float | None = None
    distilled_acc: float | None = None

    @property
    def gain(self) -> float | None:
        return _gain(self.distilled_acc, self.scratch_acc)

    def to_json(self) -> dict:
        return {
            "fraction": self.fraction,
            "train_size": self.train_size,
            "epochs": self.epochs,
            "steps": self.steps,
            "scratch_acc": self.scratch_acc,
            "distilled_acc": self.distilled_acc,
            "gain": self.gain,
        }


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
    on_event: EventFn | None = None,
    cancel: threading.Event | None = None,
) -> FractionResult:
    """KD against scratch at each training fraction (smallest first), both on the same stratified subset.

    The subset comes from `subset_indices(fraction, config.seed)`; config.fraction is ignored.
    Student epochs follow `fraction_epochs` (EPOCH_RULE). Events: "cell" per finished student with
    index, fraction, role ("scratch" or "distilled"), accuracy and, once both are done, gain.
    """
    fs = sorted(_check_values("fractions", fractions, _check_fraction, limit=MAX_POINTS, example="0.01,0.05,0.2,1"))
    s = _Session("fraction", config, on_event, cancel)
    batch = student_settings(config.dataset, config.epochs).batch_size
    points, subsets = [], []
    for f in fs:
        idx = s.indices(fraction=f, exclude_class=config.exclude_class)
        epochs = fraction_epochs(config.epochs, f)
        points.append(FractionPoint(f, len(idx), epochs, epochs * math.ceil(len(idx) / batch)))
        subsets.append(idx)
    result = FractionResult(config, points, teacher_acc=s.teacher_acc)
    s.start(2 * len(fs))
    for i, (p, idx) in enumerate(zip(points, subsets)):
        for role, alpha in (("scratch", 0.0), ("distilled", config.alpha)):
            acc = s.accuracy(s.fit(f"{role} {_share(p.fraction)}", idx, alpha=alpha, epochs=p.epochs))
            if acc is None:
                break
            setattr(p, f"{role}_acc", acc)
            s.cell(result, index=i, fraction=p.fraction, role=role, accuracy=acc, gain=p.gain)
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
    on_event: EventFn | None = None,
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
        s.cell(result, **result.rows[-1].to_json())
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
        s.cell(result, **result.rows[-1].to_json(), bias_value=result.bias_value)
    result.partial = distilled is None
    s.finish(result)
    return result


# --------------------------------------------------------------------------- student capacity


def family_students(student: str) -> list[str]:
    """Every size of the student's family, smallest first: "mlp-medium" -> mlp-tiny, mlp-small, mlp-medium."""
    family = student.split("-")[0]
    return [f"{family}-{size}" for size in models.STUDENT_SIZES if f"{family}-{size}" in models.ZOO]


@dataclass
class CapacityPoint:
    student: str
    params: int
    scratch_acc: float | None = None
    distilled_acc: float | None = None

    @property
    def gain(self) -> float | None:
        return _gain(self.distilled_acc, self.scratch_acc)

    def to_json(self) -> dict:
        return {
            "student": self.student,
            "params": self.params,
            "scratch_acc": self.scratch_acc,
            "distilled_acc": self.distilled_acc,
            "gain": self.gain,
        }


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

    def to_json(self) -> dict:
        return {
            **_base_json("capacity", self),
            "teacher_params": self.teacher_params,
            "points": [p.to_json() for p in self.points],
            "reading": self.reading(),
        }


def capacity_study(
    config: RunConfig,
    students: Sequence[str] | None = None,
    *,
    on_event: EventFn | None = None,
    cancel: threading.Event | None = None,
) -> CapacityResult:
    """A scratch and a distilled student per student size, with the config's T, alpha, epochs and data.

    `students` defaults to every size of config.student's family (`family_students`); results are
    ordered by parameter count. Events: "cell" per finished student with index, student, params,
    role, accuracy and, once both are done, gain.
    """
    names = _check_students(family_students(config.student) if students is None else students)
    params = {n: metrics.param_count(models.build(n, config.dataset)) for n in names}
    points = [CapacityPoint(n, params[n]) for n in sorted(names, key=lambda n: params[n])]
    s = _Session("capacity", config, on_event, cancel)
    result = CapacityResult(config, points, metrics.param_count(s.ens.models), s.teacher_acc)
    s.start(2 * len(points))
    idx = s.indices(exclude_class=config.exclude_class)
    for i, p in enumerate(points):
        for role, alpha in (("scratch", 0.0), ("distilled", config.alpha)):
            acc = s.accuracy(s.fit(f"{role} {p.student}", idx, alpha=alpha, student=p.student))
            if acc is None:
                break
            setattr(p, f"{role}_acc", acc)
            s.cell(result, index=i, student=p.student, params=p.params, role=role, accuracy=acc, gain=p.gain)
    result.partial = any(p.gain is None for p in points)
    s.finish(result)
    return result


# --------------------------------------------------------------------------- command line


class StudyProgress:
    """CLI progress on stderr (so --json stays clean): a bar per teacher being trained, then one bar
    over the study's students, labelled with the run in training."""

    def __init__(self):
        self.teacher_bars: dict[str, tqdm] = {}
        self.bar = None
        self.done = 0

    def __call__(self, event: dict) -> None:
        kind = event.get("kind")
        if kind == "teacher" and event["status"] == "cached":
            tqdm.write(f"teacher {event['member']}: loaded from cache", file=sys.stderr)
        elif kind == "study_start":
            self._close_teachers()
            self.bar = tqdm(
                total=event["total"],
                desc=event["study"],
                unit="student",
                file=sys.stderr,
                bar_format="{desc} {bar} {n:.1f}/{total} students [{elapsed}<{remaining}] {postfix}",
            )
        elif kind in ("step", "epoch") and self.bar is None:
            bar = self.teacher_bars.get(event["model"])
            if bar is None:
                bar = self.teacher_bars[event["model"]] = tqdm(
                    total=event["epochs"],
                    desc=f"teacher {event['model']}",
                    file=sys.stderr,
                    bar_format="{desc} {bar} {n:.1f}/{total} ep [{elapsed}<{remaining}]",
                )
            bar.n = event["epoch"]
            bar.refresh()
        elif kind in ("step", "epoch"):
            self.bar.n = self.done + min(1.0, event["epoch"] / event["epochs"])
            self.bar.set_postfix_str(event["model"], refresh=True)
        elif kind == "progress" and self.bar is not None:
            self.done = event["done"]
            self.bar.n = self.done
            self.bar.refresh()

    def _close_teachers(self) -> None:
        for bar in self.teacher_bars.values():
            bar.close()
        self.teacher_bars.clear()

    def close(self) -> None:
        self._close_teachers()
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _download_progress() -> Callable[[int, int, str], None]:
    bars: dict[str, tqdm] = {}

    def update(done: int, total: int, filename: str) -> None:
        bar = bars.get(filename)
        if bar is None:
            bar = bars[filename] = tqdm(total=total or None, desc=filename, unit="B", unit_scale=True, file=sys.stderr)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    return update


def _number_list(name: str, check: Callable[[float], float], limit: int, example: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be numbers separated by commas (e.g. {example}), got {text!r}"
            ) from None
        try:
            return _check_values(name, values, check, limit=limit, example=example)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _number(name: str, check: Callable[[float], float]):
    def parse(text: str) -> float:
        try:
            return check(float(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                str(exc) if "must" in str(exc) else f"{name} must be a number, got {text!r}"
            ) from None

    return parse


def _epochs(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_EPOCHS:
        raise argparse.ArgumentTypeError(f"epochs must be a whole number from 1 to {MAX_EPOCHS}, got {text!r}")
    return int(text)


def _teacher_list(text: str) -> tuple[str, ...]:
    try:
        return tuple(m.name for m in teachers.parse_members(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _student_list(text: str) -> list[str]:
    try:
        return _check_students([s.strip() for s in text.split(",") if s.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _class_index(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < models.NUM_CLASSES:
        raise argparse.ArgumentTypeError(
            f"missing must be a class index from 0 to {models.NUM_CLASSES - 1}, got {text!r}"
        )
    return int(text)


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"bias-value must be a finite number (e.g. 3.5), got {text!r}")
    return value


def _common_arguments(p: argparse.ArgumentParser, *, student: bool = True, t_alpha: bool = True) -> None:
    d = experiments.default_config()
    p.add_argument(
        "--dataset", choices=kdata.DATASETS, default="mnist-sample", help="dataset (default: mnist-sample, offline)"
    )
    p.add_argument(
        "--teachers",
        type=_teacher_list,
        default=None,
        help=f"comma-separated members, arch or arch@seed (default per dataset, e.g. {','.join(d.teachers)})",
    )
    if student:
        p.add_argument(
            "--student",
            choices=[m.name for m in models.available("student")],
            default=None,
            help=f"student architecture and size (default per dataset, e.g. {d.student})",
        )
    if t_alpha:
        p.add_argument(
            "--temperature",
            "-T",
            type=_number("temperature", check_temperature),
            default=None,
            help=f"softmax temperature T > 0 (default {d.temperature})",
        )
        p.add_argument(
            "--alpha",
            type=_number("alpha", check_alpha),
            default=None,
            help=f"weight of the soft (teacher) loss in [0, 1] (default {d.alpha})",
        )
    p.add_argument("--epochs", type=_epochs, default=None, help="student epochs (default per dataset)")
    p.add_argument("--teacher-epochs", type=_epochs, default=None, help="teacher epochs (default per dataset)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the students' init and data order (default 0)")
    p.add_argument(
        "--combine",
        choices=teachers.COMBINES,
        default="prob",
        help="ensemble averages member probabilities (prob, default) or logits",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _config(args) -> RunConfig:
    base = experiments.default_config(args.dataset)

    def pick(name):  # an option left out (or absent from this command) keeps the dataset's preset
        value = getattr(args, name, None)
        return getattr(base, name) if value is None else value

    return experiments.default_config(
        args.dataset,
        teachers=pick("teachers"),
        student=pick("student"),
        temperature=pick("temperature"),
        alpha=pick("alpha"),
        epochs=pick("epochs"),
        teacher_epochs=args.teacher_epochs,
        seed=args.seed,
        combine=args.combine,
    )


def _run(args, study: Callable, *study_args, text: Callable) -> int:
    config = _config(args)
    kdata.load(config.dataset, progress=_download_progress())
    progress = StudyProgress()
    try:
        result = study(config, *study_args, on_event=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(text(result))
        print()
        print(result.reading())
    return 0


def _opt(x: float | None, fmt: str = "{:.2%}") -> str:
    return "-" if x is None else fmt.format(x)


def _sweep_text(r: SweepResult) -> str:
    best, corner = r.best, "T \\ alpha"
    lines = [
        f"test accuracy of the distilled {r.config.student} per T (rows) and alpha (columns); "
        f"scratch {_opt(r.scratch_acc)}, * = best",
        f"{corner:>10}" + "".join(f"{a:>10g}" for a in r.alphas),
    ]
    for i, t in enumerate(r.temperatures):
        cells = "".join(
            f"{_opt(acc) + ('*' if best and (best['row'], best['col']) == (i, j) else ' '):>10}"
            for j, acc in enumerate(r.accuracy[i])
        )
        lines.append(f"{t:>10g}{cells}")
    return "\n".join(lines)


def _fraction_text(r: FractionResult) -> str:
    lines = [f"{'fraction':>9} {'images':>7} {'epochs':>6} {'scratch':>8} {'KD':>8} {'gap':>8}"]
    for p in r.points:
        gap = "-" if p.gain is None else f"{p.gain * 100:+.2f}"
        lines.append(
            f"{_share(p.fraction):>9} {p.train_size:>7} {p.epochs:>6} {_opt(p.scratch_acc):>8} "
            f"{_opt(p.distilled_acc):>8} {gap:>8}"
        )
    lines.append(f"epochs per fraction: {r.epoch_rule}")
    return "\n".join(lines)


def _missing_text(r: MissingClassResult) -> str:
    lines = [
        f"class {r.class_name} left out of the students' {len(r.train_idx)} training images",
        f"{'model':<22} {'class ' + r.class_name:>12} {'overall':>8}",
    ]
    lines += [f"{row.name:<22} {_opt(row.missing_acc):>12} {_opt(row.accuracy):>8}" for row in r.rows]
    if r.bias_value is not None:
        lines.append(
            f"bias fix: +{r.bias_value:.3f} on class {r.class_name} ({r.bias_rule}); share of training "
            f"images predicted as {r.class_name}: teacher {_opt(r.teacher_share)}, student "
            f"{_opt(r.share_before)} before, {_opt(r.share_after)} after"
        )
    return "\n".join(lines)


def _capacity_text(r: CapacityResult) -> str:
    lines = [f"{'student':<12} {'params':>10} {'scratch':>8} {'KD':>8} {'gain':>8}"]
    for p in r.points:
        gain = "-" if p.gain is None else f"{p.gain * 100:+.2f}"
        lines.append(f"{p.student:<12} {p.params:>10,} {_opt(p.scratch_acc):>8} {_opt(p.distilled_acc):>8} {gain:>8}")
    lines.append(f"{'teacher':<12} {r.teacher_params:>10,} {_opt(r.teacher_acc):>8}")
    return "\n".join(lines)


def cmd_sweep(args) -> int:
    return _run(args, sweep, args.temperatures, args.alphas, text=_sweep_text)


def cmd_fraction(args) -> int:
    return _run(args, fraction_study, args.fractions, text=_fraction_text)


def cmd_missing_class(args) -> int:
    if args.no_bias_fix and args.bias_value is not None:
        raise ValueError("--bias-value is the amount the bias fix adds; drop --no-bias-fix to use it")
    return _run(args, missing_class_study, args.missing, not args.no_bias_fix, args.bias_value, text=_missing_text)


def cmd_capacity(args) -> int:
    return _run(args, capacity_study, args.students, text=_capacity_text)


def add_cli(subparsers) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Register the study subcommands on `python -m kdcore`'s subparsers; returns command name -> handler."""
    grid = f"up to {MAX_GRID} comma-separated values"
    p = subparsers.add_parser("sweep", help="T x alpha grid of distilled students against one scratch student")
    _common_arguments(p, t_alpha=False)
    p.add_argument(
        "--temperatures",
        type=_number_list("temperatures", check_temperature, MAX_GRID, "1,2,4,8"),
        default=list(DEFAULT_TEMPERATURES),
        help=f"temperatures, {grid} (default {','.join(f'{t:g}' for t in DEFAULT_TEMPERATURES)})",
    )
    p.add_argument(
        "--alphas",
        type=_number_list("alphas", check_alpha, MAX_GRID, "0.25,0.5,0.75"),
        default=list(DEFAULT_ALPHAS),
        help=f"alphas in [0, 1], {grid} (default {','.join(f'{a:g}' for a in DEFAULT_ALPHAS)})",
    )

    p = subparsers.add_parser("fraction", help="KD against scratch at smaller training fractions")
    _common_arguments(p)
    p.add_argument(
        "--fractions",
        type=_number_list("fractions", _check_fraction, MAX_POINTS, "0.01,0.05,0.2,1"),
        default=list(DEFAULT_FRACTIONS),
        help=f"training fractions in (0, 1], up to {MAX_POINTS} (default "
        f"{','.join(f'{f:g}' for f in DEFAULT_FRACTIONS)}); epochs grow as fractions shrink",
    )

    p = subparsers.add_parser("missing-class", help="students never see one class (Hinton et al. 2015, section 3)")
    _common_arguments(p)
    p.add_argument("--missing", type=_class_index, default=3, help="class index to leave out (default 3)")
    p.add_argument("--no-bias-fix", action="store_true", help="skip raising the missing class's output bias")
    p.add_argument(
        "--bias-value",
        type=_finite,
        default=None,
        help="bias increase to use (default: chosen on the training set to match the teacher's share)",
    )

    p = subparsers.add_parser("capacity", help="KD gain against student size")
    _common_arguments(p, student=False)
    p.add_argument(
        "--students",
        type=_student_list,
        default=None,
        help="comma-separated students (default: every size of the dataset's default student family)",
    )
    return {"sweep": cmd_sweep, "fraction": cmd_fraction, "missing-class": cmd_missing_class, "capacity": cmd_capacity}
