"""Lessons for a class: predict, run a preset, and read a reveal that quotes this run's numbers.

The lessons live in `assets/lessons/lessons.yaml`, which an instructor may edit or extend without touching
code; `load_lessons` validates it and names the lesson and the field of any problem (`LessonError`). Each
lesson has a goal, a prediction question whose choices each name an *outcome*, a preset (a job kind, the
sidebar fields it sets and the study's options), a *grader*, a chart, an explanation template for the
expected and the unexpected outcome, and one change to "try next".

A grader reads a finished run's result (never the lesson's preset: the learner may have changed the
sidebar) and decides which outcome happened; `grade` compares it with the learner's choice and fills
the explanation with this run's numbers. Which template is used (expected or unexpected) is decided
by what was measured, and a note on noise is added by code whenever the run cannot tell two settings
apart, so the text never claims more than the numbers show.

Graders, the job kinds they read, and their outcomes:
  soft-targets      look            softer | same | sharper     (the other classes' share at T against T = 1)
  best-temperature  sweep           lowest | middle | highest   (which T scored best)
  best-alpha        sweep           lowest | middle | highest   (which α scored best)
  capacity          capacity        smaller | same | larger     (which student size gained more from KD)
  fraction          fraction        more | same | less          (does KD help more with the least data?)
  missing-class     missing-class   few | some | most           (share of the missing class recognised)
  kd-gain           distill         better | same | worse       (distilled against scratch)
"""

from __future__ import annotations

import math
import numbers
import re
import string
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from pathlib import Path

import torch
import yaml

from . import dark, experiments, jobs, links, models, studies
from . import data as kdata
from . import events as ev
from .experiments import RunConfig, RunResult
from .limits import check_alpha, check_fraction, check_temperature

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "assets" / "lessons" / "lessons.yaml"
KINDS = ("look", "distill", "sweep", "fraction", "missing-class", "capacity")
# A lesson's preset goes through the sidebar and the link, so it may set exactly the fields they carry.
CONFIG_FIELDS = links.CONTROLS
LESSON_FIELDS = (
    "id",
    "number",
    "title",
    "goal",
    "prediction",
    "expected",
    "preset",
    "grader",
    "chart",
    "explanation",
    "try_next",
)
MIN_CHOICES, MAX_CHOICES = 2, 4
# Which charts a page can draw, and for which job kinds.
CHARTS = {
    "soft-targets": ("look",),
    "gain-vs-temperature": ("sweep",),
    "gain-vs-alpha": ("sweep",),
    "sweep-heatmap": ("sweep",),
    "gain-vs-student": ("capacity",),
    "gain-vs-fraction": ("fraction",),
    "missing-class": ("missing-class",),
    "students": ("distill",),
    "learning-curves": ("distill",),
}
# The soft-targets grader calls the other classes' share changed when it moves by at least this much.
SOFTER_BY = 0.01
# The missing-class grader's lines between "few", "some" and "most" of the missing class recognised.
MISSING_FEW, MISSING_MOST = 0.10, 0.50
_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class LessonError(ValueError):
    """The lessons file has a problem; the message names the lesson and the field, and what to write instead."""

    user_facing = True


# --------------------------------------------------------------------------- numbers in words


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def _pts(x: float) -> str:
    return f"{x * 100:+.1f} points"


def _share(f: float) -> str:
    return f"{f * 100:g} %"


def images_tested(dataset: str) -> int:
    """How many test images a dataset's scores are measured on (MNIST, Fashion-MNIST and CIFAR-10 have 10,000)."""
    return kdata.SAMPLE_TEST_PER_CLASS * models.NUM_CLASSES if dataset == "mnist-sample" else 10_000


def noise(accuracies: Iterable[float], n: int) -> float:
    """How far chance alone can move accuracies measured on n test images: one binomial standard error of
    the noisiest of them (at least one image). On mnist-sample that is about 0.7 points at 95 %, about twice
    the standard deviation of the KD gain over seeds (0.3 points over six seeds, measured with the default
    preset), so a gap smaller than this is one that another seed could well close."""
    ps = [min(max(a, 0.0), 1.0) for a in accuracies]
    return max([math.sqrt(p * (1 - p) / n) for p in ps] + [1 / n])


def _noise_words(size: float, n: int) -> str:
    return f"the roughly {size * 100:.1f} points that a different seed or another {n:,} test images can move a score by"


# --------------------------------------------------------------------------- the "look" job


@dataclass
class LookResult:
    """The ensemble teacher's logits for one test image, to see its soft targets at T = 1 and at config.temperature."""

    config: RunConfig
    index: int  # into the test set
    label: int
    classes: tuple[str, ...]
    logits: torch.Tensor  # [K]
    image: torch.Tensor = field(repr=False)  # uint8 [C, H, W]
    partial: bool = False
    seconds: float = 0.0

    def probabilities(self, temperature: float) -> list[float]:
        return dark.soft_targets_at(self.logits, temperature).tolist()

    def to_json(self) -> dict:
        return {
            "dataset": self.config.dataset,
            "config": self.config.to_dict(),
            "index": self.index,
            "label": self.label,
            "classes": list(self.classes),
            "logits": self.logits.tolist(),
            "p1": self.probabilities(1.0),
            "pT": self.probabilities(self.config.temperature),
            "partial": self.partial,
            "seconds": round(self.seconds, 2),
        }


def look(
    config: RunConfig,
    image_class: int = 3,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
) -> LookResult:
    """One test image of `image_class` (picked with config.seed) through the config's (cached) teacher ensemble."""
    started = time.perf_counter()
    data, ens = experiments.load_ensemble(config, on_event=on_event, cancel=cancel)
    index = int(dark.pick_images(ens.test_logits, data.test_y, "class", cls=image_class, k=1, seed=config.seed)[0])
    result = LookResult(
        config,
        index,
        int(data.test_y[index]),
        data.classes,
        ens.test_logits[index].clone(),
        data.test_x[index].clone(),
        seconds=time.perf_counter() - started,
    )
    on_event(ev.Finished(partial=False))
    return result


# --------------------------------------------------------------------------- study options


def _class_index(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < models.NUM_CLASSES:
        raise ValueError(f"{name} must be a class index from 0 to {models.NUM_CLASSES - 1}, got {value!r}")
    return int(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value


def _temperatures(name: str, value) -> list[float]:
    return studies.check_values(name, value, check_temperature, limit=studies.MAX_GRID, example="[1, 4, 20]")


def _alphas(name: str, value) -> list[float]:
    return studies.check_values(name, value, check_alpha, limit=studies.MAX_GRID, example="[0, 0.5, 1]")


def _fractions(name: str, value) -> list[float]:
    return sorted(studies.check_values(name, value, check_fraction, limit=studies.MAX_POINTS, example="[0.05, 1]"))


def _students(name: str, value) -> list[str]:
    return studies.check_students(value)


# kind -> option -> (default, check); a default of None for students means the config student's family.
OPTIONS: dict[str, dict[str, tuple[object, Callable]]] = {
    "look": {"image_class": (3, _class_index)},
    "distill": {},
    "sweep": {
        "temperatures": (list(studies.DEFAULT_TEMPERATURES), _temperatures),
        "alphas": (list(studies.DEFAULT_ALPHAS), _alphas),
    },
    "fraction": {"fractions": (list(studies.DEFAULT_FRACTIONS), _fractions)},
    "missing-class": {"missing": (3, _class_index), "bias_fix": (True, _flag)},
    "capacity": {"students": (None, _students)},
}
RESULT_TYPES = {
    "look": LookResult,
    "distill": RunResult,
    "sweep": studies.SweepResult,
    "fraction": studies.FractionResult,
    "missing-class": studies.MissingClassResult,
    "capacity": studies.CapacityResult,
}


# --------------------------------------------------------------------------- graders


@dataclass(frozen=True)
class _Measured:
    outcome: str | None  # None: the run stopped before there was anything to compare
    measured: str
    fields: dict[str, str] = field(default_factory=dict)
    note: str = ""  # said whatever the outcome (noise, a stopped run)


def _stopped(what: str) -> _Measured:
    return _Measured(None, f"The run was stopped before {what} finished, so there is nothing to compare yet.")


def _soft_targets(r: LookResult) -> _Measured:
    t = float(r.config.temperature)
    z = r.logits.float().reshape(-1)
    p1, pt = dark.soft_targets_at(z, 1.0), dark.soft_targets_at(z, t)
    top = int(p1.argmax())
    rest = pt.clone()
    rest[top] = -1.0
    runner = int(rest.argmax())
    wrong_1, wrong_t = 1.0 - float(p1[top]), 1.0 - float(pt[top])
    change = wrong_t - wrong_1
    outcome = "softer" if change >= SOFTER_BY else "sharper" if change <= -SOFTER_BY else "same"
    name = r.classes
    f = {
        "T": f"{t:g}",
        "true_class": name[r.label],
        "top_class": name[top],
        "top_1": _pct(float(p1[top])),
        "top_T": _pct(float(pt[top])),
        "wrong_1": _pct(wrong_1),
        "wrong_T": _pct(wrong_t),
        "runner_up": name[runner],
        "runner_up_T": _pct(float(pt[runner])),
        "entropy_1": f"{float(dark.entropy_bits(p1)):.2f}",
        "entropy_T": f"{float(dark.entropy_bits(pt)):.2f}",
    }
    image = dark.class_phrase(name[r.label])
    measured = (
        f"This test image is {image}. At T = 1 the teacher gives class {f['top_class']} {f['top_1']} and the other "
        f"{len(name) - 1} classes {f['wrong_1']} together; at T = {f['T']} it gives class {f['top_class']} "
        f"{f['top_T']} and the others {f['wrong_T']} (the runner-up, class {f['runner_up']}, gets "
        f"{f['runner_up_T']}). Entropy: {f['entropy_1']} bits at T = 1, {f['entropy_T']} bits at T = {f['T']}."
    )
    if math.isclose(t, 1.0):
        note = (
            "At T = 1 the soft targets are the teacher's own probabilities, so both views are the same: set T above 1."
        )
    elif t < 1:
        note = (
            "A T below 1 divides the logits by less than one, which widens their gaps and sharpens the probabilities."
        )
    elif outcome == "same" and float(p1[top]) < 0.5:
        note = (
            f"The teacher was already unsure about this image at T = 1 (its top class had only {f['top_1']}), "
            "so there was little left to spread."
        )
    elif outcome == "same":
        note = (
            f"The teacher is so sure of this image that its logits stay far apart even divided by {f['T']}: "
            "try a higher T, or another image."
        )
    else:
        note = ""
    return _Measured(outcome, measured, f, note)


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _axis_label(axis: str, v: float) -> str:
    if axis == "temperature":
        return f"T = {v:g}"
    return f"α = {v:g}" + (" (labels only)" if v == 0 else " (teacher only)" if v == 1 else "")


def _best_on(axis: str) -> Callable[[studies.SweepResult], _Measured]:
    symbol = "T" if axis == "temperature" else "α"

    def measure(r: studies.SweepResult) -> _Measured:
        if axis == "temperature":
            values, others = r.temperatures, r.alphas
            acc_at = [[a for a in row if a is not None] for row in r.accuracy]
        else:
            values, others = r.alphas, r.temperatures
            acc_at = [[row[j] for row in r.accuracy if row[j] is not None] for j in range(len(r.alphas))]
        # With several values on the other axis, each setting is judged by its best cell.
        done = sorted((v, max(accs)) for v, accs in zip(values, acc_at) if accs)
        if r.scratch_acc is None or len(done) < 2:
            return _stopped(f"two settings of {symbol}")
        s = r.scratch_acc
        best_i = max(range(len(done)), key=lambda i: done[i][1])  # the lower setting on a tie
        best, acc = done[best_i]
        outcome = "lowest" if best_i == 0 else "highest" if best_i == len(done) - 1 else "middle"
        second = max((d for i, d in enumerate(done) if i != best_i), key=lambda d: d[1])
        other_name = "α" if axis == "temperature" else "T"
        other = (
            f"{other_name} = {others[0]:g}"
            if len(others) == 1
            else f"the best of {other_name} = {', '.join(f'{o:g}' for o in others)}"
        )
        label = {v: _axis_label(axis, v) for v, _ in done}
        n = images_tested(r.config.dataset)
        f = {
            "best": label[best],
            "best_acc": _pct(acc),
            "best_gain": _pts(acc - s),
            "lowest": label[done[0][0]],
            "lowest_acc": _pct(done[0][1]),
            "lowest_gain": _pts(done[0][1] - s),
            "highest": label[done[-1][0]],
            "highest_acc": _pct(done[-1][1]),
            "highest_gain": _pts(done[-1][1] - s),
            "runner_up": label[second[0]],
            "margin": f"{(acc - second[1]) * 100:.1f} points",
            "scratch_acc": _pct(s),
            "other": other,
            "test_images": f"{n:,}",
        }
        rest = "; ".join(f"{label[v]} scored {_pct(a)} ({_pts(a - s)})" for v, a in done if v != best)
        others = [(label[v], a) for v, a in done if v != best]
        f["others"] = _and([f"{name} gave {_pts(a - s)}" for name, a in others])
        f["others_acc"] = _and([f"{name} scored {_pct(a)}" for name, a in others])
        measured = (
            f"At {other}, {label[best]} did best: {_pct(acc)} ({_pts(acc - s)} against the scratch student's "
            f"{_pct(s)}); {rest}."
        )
        notes = []
        size = noise((acc, second[1]), n)
        if acc - second[1] < size:
            notes.append(
                f"{label[best]} led {label[second[0]]} by only {f['margin']}, less than {_noise_words(size, n)}, "
                "so another seed may well rank them the other way."
            )
        if r.partial:
            notes.append(f"The sweep was stopped, so only {', '.join(label[v] for v, _ in done)} could be compared.")
        return _Measured(outcome, measured, f, " ".join(notes))

    return measure


def _capacity(r: studies.CapacityResult) -> _Measured:
    done = [p for p in r.points if p.gain is not None]
    if len(done) < 2:
        return _stopped("two student sizes")
    small, large = done[0], done[-1]
    n = images_tested(r.config.dataset)
    diff = large.gain - small.gain
    size = noise((small.scratch_acc, small.distilled_acc, large.scratch_acc, large.distilled_acc), n)
    outcome = "larger" if diff > size else "smaller" if diff < -size else "same"
    f = {"teacher_acc": _pct(r.teacher_acc or 0.0), "teacher_params": f"{r.teacher_params:,}"}
    for key, p in (("small", small), ("large", large)):
        f |= {
            key: p.student,
            f"{key}_params": f"{p.params:,}",
            f"{key}_gain": _pts(p.gain),
            f"{key}_acc": _pct(p.distilled_acc),
            f"{key}_scratch": _pct(p.scratch_acc),
        }
    f |= {"difference": f"{abs(diff) * 100:.1f} points", "test_images": f"{n:,}"}
    measured = (
        f"{small.student} ({f['small_params']} parameters) gained {f['small_gain']} from the teacher "
        f"({f['small_acc']} against {f['small_scratch']} from scratch); {large.student} ({f['large_params']} "
        f"parameters) gained {f['large_gain']} ({f['large_acc']} against {f['large_scratch']})."
    )
    note = ""
    if outcome == "same":
        note = (
            f"The two gains differ by {f['difference']}, within {_noise_words(size, n)}, "
            "so this run cannot tell them apart."
        )
    return _Measured(outcome, measured, f, note)


def _fraction(r: studies.FractionResult) -> _Measured:
    done = [p for p in r.points if p.gain is not None]
    if len(done) < 2:
        return _stopped("two data fractions")
    small, large = done[0], done[-1]
    n = images_tested(r.config.dataset)
    diff = small.gain - large.gain
    size = noise((small.scratch_acc, small.distilled_acc, large.scratch_acc, large.distilled_acc), n)
    outcome = "more" if diff > size else "less" if diff < -size else "same"
    f = {}
    for key, p in (("small", small), ("large", large)):
        f |= {
            f"{key}_fraction": _share(p.fraction),
            f"{key}_size": f"{p.train_size:,}",
            f"{key}_gain": _pts(p.gain),
            f"{key}_acc": _pct(p.distilled_acc),
            f"{key}_scratch": _pct(p.scratch_acc),
        }
    f |= {"difference": f"{abs(diff) * 100:.1f} points", "test_images": f"{n:,}"}
    measured = (
        f"With {f['small_fraction']} of the training images ({f['small_size']}) the teacher added "
        f"{f['small_gain']} ({f['small_acc']} against {f['small_scratch']} from scratch); with "
        f"{f['large_fraction']} ({f['large_size']}) it added {f['large_gain']} ({f['large_acc']} against "
        f"{f['large_scratch']})."
    )
    note = ""
    if outcome == "same":
        note = (
            f"The two gains differ by {f['difference']}, within {_noise_words(size, n)}, "
            "so this run cannot tell them apart."
        )
    return _Measured(outcome, measured, f, note)


def _missing_class(r: studies.MissingClassResult) -> _Measured:
    teacher, scratch, distilled, fixed = (r.row(n) for n in ("teacher", "scratch", "distilled", "distilled + bias fix"))
    if scratch is None or distilled is None:
        return _stopped("both students")
    graded = fixed or distilled
    share = graded.missing_acc
    outcome = "few" if share < MISSING_FEW else "some" if share < MISSING_MOST else "most"
    c = r.class_name
    per_class = max(1, images_tested(r.config.dataset) // models.NUM_CLASSES)
    f = {
        "class_name": c,
        "a_class": dark.class_phrase(c),
        "teacher": _pct(teacher.missing_acc) if teacher else "not measured",
        "scratch": _pct(scratch.missing_acc),
        "distilled": _pct(distilled.missing_acc),
        "fixed": _pct(fixed.missing_acc) if fixed else "not measured (the bias fix was off)",
        "bias": f"{r.bias_value:.2f}" if r.bias_value is not None else "nothing (the fix was off)",
        "overall_before": _pct(distilled.accuracy),
        "overall_after": _pct(fixed.accuracy) if fixed else _pct(distilled.accuracy),
        "class_images": f"{per_class:,}",
    }
    measured = (
        f"Never shown class {c}, the scratch student recognised {f['scratch']} of its test images and the "
        f"distilled one {f['distilled']}"
        + (
            f"; after raising class {c}'s output bias by {f['bias']} it recognised {f['fixed']} (overall "
            f"accuracy {f['overall_before']} before the fix, {f['overall_after']} after)."
            if fixed
            else " (the bias fix was off)."
        )
        + (f" The teacher, which saw class {c}, gets {f['teacher']}." if teacher else "")
    )
    notes = []
    if fixed is None:
        notes.append("The bias fix was off, so the prediction was checked against the distilled student without it.")
    size = noise((share,), per_class)
    near = [line for line in (MISSING_FEW, MISSING_MOST) if abs(share - line) < size]
    if near:
        notes.append(
            f"{_pct(share)} is close to the {_share(near[0])} line between two answers: with about "
            f"{per_class:,} test images of class {c}, chance alone can move it by about {size * 100:.0f} points."
        )
    return _Measured(outcome, measured, f, " ".join(notes))


def _kd_gain(r: RunResult) -> _Measured:
    d, s = r.row("distilled"), r.row("scratch")
    if d is None or s is None:
        return _stopped("both students")
    n = images_tested(r.config.dataset)
    gain = d.accuracy - s.accuracy
    size = noise((d.accuracy, s.accuracy), n)
    outcome = "better" if gain > size else "worse" if gain < -size else "same"
    c = r.config
    f = {
        "gain": _pts(gain),
        "scratch_acc": _pct(s.accuracy),
        "distilled_acc": _pct(d.accuracy),
        "T": f"{c.temperature:g}",
        "alpha": f"{c.alpha:g}",
        "student": c.student,
        "test_images": f"{n:,}",
    }
    measured = (
        f"The distilled {c.student} scored {f['distilled_acc']} and the scratch one {f['scratch_acc']}: "
        f"{f['gain']} (T = {f['T']}, α = {f['alpha']})."
    )
    notes = []
    if outcome == "same":
        notes.append(
            f"A gain of {f['gain']} is within {_noise_words(size, n)}, so this run cannot tell the two students apart."
        )
    if r.partial:
        notes.append("The run was stopped early, so both students trained for fewer epochs than set.")
    return _Measured(outcome, measured, f, " ".join(notes))


@dataclass(frozen=True)
class Grader:
    kinds: tuple[str, ...]
    outcomes: dict[str, str]  # outcome -> what it means, in words (when no choice names it)
    placeholders: str  # the names its explanation templates may use, separated by spaces
    measure: Callable

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.placeholders.split())


_POINT_FIELDS = " ".join(f"{side}_{what}" for side in ("small", "large") for what in ("gain", "acc", "scratch"))
GRADERS = {
    "soft-targets": Grader(
        ("look",),
        {
            "softer": "the other classes got a larger share",
            "same": "the other classes' share barely changed",
            "sharper": "the other classes got a smaller share",
        },
        "T true_class top_class top_1 top_T wrong_1 wrong_T runner_up runner_up_T entropy_1 entropy_T",
        _soft_targets,
    ),
    **{
        f"best-{axis}": Grader(
            ("sweep",),
            {
                "lowest": f"the lowest {symbol} scored best",
                "middle": f"a {symbol} in the middle scored best",
                "highest": f"the highest {symbol} scored best",
            },
            "best best_acc best_gain lowest lowest_acc lowest_gain highest highest_acc highest_gain "
            "runner_up margin scratch_acc other others others_acc test_images",
            _best_on(axis),
        )
        for axis, symbol in (("temperature", "T"), ("alpha", "α"))
    },
    "capacity": Grader(
        ("capacity",),
        {
            "smaller": "the smaller student gained more",
            "same": "both sizes gained about the same",
            "larger": "the larger student gained more",
        },
        f"small small_params large large_params {_POINT_FIELDS} teacher_acc teacher_params difference test_images",
        _capacity,
    ),
    "fraction": Grader(
        ("fraction",),
        {
            "more": "KD helped more with the least data",
            "same": "KD helped about as much at both sizes",
            "less": "KD helped less with the least data",
        },
        f"small_fraction small_size large_fraction large_size {_POINT_FIELDS} difference test_images",
        _fraction,
    ),
    "missing-class": Grader(
        ("missing-class",),
        {
            "few": f"under {_share(MISSING_FEW)} of the missing class was recognised",
            "some": f"{_share(MISSING_FEW)} to {_share(MISSING_MOST)} of the missing class was recognised",
            "most": f"over {_share(MISSING_MOST)} of the missing class was recognised",
        },
        "class_name a_class teacher scratch distilled fixed bias overall_before overall_after class_images",
        _missing_class,
    ),
    "kd-gain": Grader(
        ("distill",),
        {
            "better": "the distilled student scored higher",
            "same": "both students scored about the same",
            "worse": "the distilled student scored lower",
        },
        "gain scratch_acc distilled_acc T alpha student test_images",
        _kd_gain,
    ),
}


# --------------------------------------------------------------------------- lessons


@dataclass(frozen=True)
class Choice:
    outcome: str
    text: str


@dataclass(frozen=True)
class Preset:
    """A job kind, the RunConfig it runs (from the dataset's preset plus `overrides`) and the study's options."""

    kind: str
    overrides: dict  # sidebar field -> value, as written in the file
    config: RunConfig
    options: dict  # every option of the kind, defaults filled in

    def summary(self) -> str:
        """The preset in a line, e.g. "sweep on mnist-sample: temperatures 1, 4, 20; alphas 0.5; mlp-medium, ..."."""
        c = self.config

        def shown(value) -> str:
            if isinstance(value, bool):
                return "on" if value else "off"
            if isinstance(value, list):
                return ", ".join(shown(v) for v in value)
            return f"{value:g}" if isinstance(value, float) else str(value)

        parts = [f"{k.replace('_', ' ')} {shown(v)}" for k, v in self.options.items() if v is not None]
        if self.kind == "look":
            parts.append(f"T = {c.temperature:g}")
        else:
            if self.kind != "sweep":
                parts.append(f"T = {c.temperature:g}, α = {c.alpha:g}")
            parts.append(("" if self.kind == "capacity" else f"student {c.student}, ") + f"{c.epochs} epochs")
        parts.append(f"teachers {', '.join(c.teachers)}; seed {c.seed}")
        return f"{self.kind} on {c.dataset}: " + "; ".join(parts)


@dataclass(frozen=True)
class TryNext:
    """One change to the preset: a sidebar field (`config`) or a study option (`options`); `preset` is the result."""

    text: str
    config: dict
    options: dict
    preset: Preset


@dataclass(frozen=True)
class Lesson:
    id: str
    number: int
    title: str
    goal: str
    question: str
    choices: tuple[Choice, ...]
    expected: str  # the outcome the textbook predicts
    preset: Preset
    grader: str
    chart: str
    explanation: dict  # "expected" / "unexpected" -> template with {placeholders}
    try_next: TryNext

    def choice(self, key: Choice | str) -> Choice:
        """The choice with this outcome (or the Choice itself); ValueError naming the lesson's outcomes if none."""
        outcome = key.outcome if isinstance(key, Choice) else key
        for c in self.choices:
            if c.outcome == outcome:
                return c
        raise ValueError(
            f"choice must be one of lesson {self.number}'s outcomes: {', '.join(c.outcome for c in self.choices)}; "
            f"got {outcome!r}"
        )

    def tried_next(self) -> Lesson:
        """This lesson with its "try this next" change applied to the preset (same question, grader and texts)."""
        return replace(self, preset=self.try_next.preset)

    def spec(self, config: RunConfig | None = None, owner: str | None = None) -> jobs.JobSpec:
        """The job the lesson's button runs, on `config` (the sidebar's, if the learner changed it) or the preset's."""
        cfg = self.preset.config if config is None else config
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.preset.options.items() if v is not None}
        if self.preset.kind == "capacity" and "students" not in options:
            options["students"] = tuple(studies.family_students(cfg.student))
        return jobs.JobSpec(self.preset.kind, cfg, options, name=f"Lesson {self.number}: {self.title}", owner=owner)


@dataclass(frozen=True)
class Reveal:
    """What the lesson shows after the run: the prediction against the measurement, and why."""

    lesson: str
    chart: str
    prediction: Choice
    outcome: str | None  # what was measured; None if the run stopped before there was anything to compare
    outcome_text: str | None
    matched: bool | None  # the prediction was right
    expected: bool | None  # the run went the way the textbook says
    verdict: str
    measured: str
    explanation: str
    try_next: TryNext


def grade(lesson: Lesson, choice: Choice | str, result) -> Reveal:
    """Compare the learner's prediction with what `result` (the lesson's job's result) measured."""
    predicted = lesson.choice(choice)
    expected_type = RESULT_TYPES[lesson.preset.kind]
    if not isinstance(result, expected_type):
        raise ValueError(
            f"result must be the {expected_type.__name__} of lesson {lesson.number}'s {lesson.preset.kind} run, "
            f"got a {type(result).__name__}"
        )
    grader = GRADERS[lesson.grader]
    m = grader.measure(result)
    if m.outcome is None:
        return Reveal(
            lesson.id,
            lesson.chart,
            predicted,
            None,
            None,
            None,
            None,
            f"No verdict yet: you predicted “{predicted.text}”, and the run stopped before it could be checked.",
            m.measured,
            "Run the lesson again and let it finish.",
            lesson.try_next,
        )
    matching = next((c for c in lesson.choices if c.outcome == m.outcome), None)
    outcome_text = matching.text if matching else grader.outcomes[m.outcome]
    matched = m.outcome == predicted.outcome
    is_expected = m.outcome == lesson.expected
    text = lesson.explanation["expected" if is_expected else "unexpected"].format_map(m.fields)
    explanation = " ".join(part for part in (text.strip(), m.note) if part)
    if matched:
        verdict = f"You predicted “{predicted.text}”, and that is what this run measured."
    else:
        verdict = f"You predicted “{predicted.text}”; this run measured “{outcome_text}”."
    return Reveal(
        lesson.id,
        lesson.chart,
        predicted,
        m.outcome,
        outcome_text,
        matched,
        is_expected,
        verdict,
        m.measured,
        explanation,
        lesson.try_next,
    )


# --------------------------------------------------------------------------- loading and validation


class _Where:
    """Builds LessonErrors that name the file, the lesson and the field."""

    def __init__(self, source: str, index: int):
        self.source, self.label = source, f"#{index + 1} in the list"

    def error(self, field_: str, problem: str) -> LessonError:
        return LessonError(f"{self.source}, lesson {self.label}, field {field_}: {problem}")


def _text(where: _Where, name: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(name, f"must be a non-empty text, got {value!r}")
    return value.strip()


def _one_of(where: _Where, name: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise where.error(name, f"must be one of: {', '.join(allowed)}; got {value!r}")
    return value


def _mapping(where: _Where, name: str, value, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise where.error(name, f"must be a mapping with {', '.join(required or allowed)}, got {value!r}")
    for key in value:
        if key not in allowed:
            raise where.error(
                f"{name}.{key}" if name else str(key), f"is not a field here; write only: {', '.join(allowed)}"
            )
    for key in required:
        if key not in value:
            raise where.error(f"{name}.{key}" if name else str(key), "is missing")
    return value


_FIELD_TYPES = {f.name: f.type for f in fields(RunConfig)}


def _config(where: _Where, name: str, overrides) -> RunConfig:
    """The dataset's preset with these sidebar fields replaced, checked by RunConfig and by the link's rules."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise where.error(name, f"must be a mapping of sidebar fields ({', '.join(CONFIG_FIELDS)}), got {overrides!r}")
    for key, value in overrides.items():
        if key not in CONFIG_FIELDS:
            if key in _FIELD_TYPES:
                problem = (
                    "cannot be set by a lesson: a preset goes through the sidebar and the link, which carry "
                    f"only {', '.join(CONFIG_FIELDS)}"
                )
            else:
                problem = f"RunConfig has no such field; a lesson can set: {', '.join(CONFIG_FIELDS)}"
            raise where.error(f"{name}.{key}", problem)
        annotation = _FIELD_TYPES[key].removesuffix(" | None")  # beta_nc, assistant: a lesson gives a value
        if key == "teachers":
            ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            want = "a list of teacher names such as [cnn-wide, cnn-deep]"
        elif annotation == "int":
            ok, want = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif annotation == "float":
            ok, want = isinstance(value, numbers.Real) and not isinstance(value, bool), "a number"
        elif annotation == "bool":
            ok, want = isinstance(value, bool), "true or false"
        else:
            ok, want = isinstance(value, str), "a text"
        if not ok:
            raise where.error(f"{name}.{key}", f"must be {want}, got {value!r}")
    dataset = overrides.get("dataset", "mnist-sample")
    try:
        cfg = experiments.default_config(dataset)
    except ValueError as exc:
        raise where.error(f"{name}.dataset", str(exc)) from None
    for key, value in overrides.items():
        if key == "dataset":
            continue
        if key == "teachers":
            value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
        try:
            cfg = replace(cfg, **{key: value})
        except ValueError as exc:
            raise where.error(f"{name}.{key}", str(exc)) from None
    back, warnings = links.config_from_params(links.config_to_params(cfg))
    # Another method's settings mean nothing to this run (a try-next back to "kd" after "dkd"), so a link drops them.
    unused = {f for method, names in experiments.METHOD_FIELDS.items() if method != cfg.method for f in names}
    for key in CONFIG_FIELDS:
        if key not in unused and getattr(back, key) != getattr(cfg, key):
            said = next((w for w in warnings if key in w or (key == "temperature" and "T=" in w)), "")
            raise where.error(
                f"{name}.{key}",
                f"{getattr(cfg, key)!r} is not a value the sidebar offers, so a link would change it"
                + (f" ({said})" if said else f" to {getattr(back, key)!r}"),
            )
    return cfg


def _options(where: _Where, name: str, kind: str, given, base: dict | None = None) -> dict:
    if given is None:
        given = {}
    spec = OPTIONS[kind]
    if not isinstance(given, dict):
        raise where.error(name, f"must be a mapping of {kind} options ({', '.join(spec) or 'none'}), got {given!r}")
    out = dict(base) if base is not None else {k: default for k, (default, _) in spec.items()}
    for key, value in given.items():
        if key not in spec:
            allowed = f"one of: {', '.join(spec)}" if spec else "none"
            raise where.error(f"{name}.{key}", f"is not an option of a {kind} preset; options are {allowed}")
        try:
            out[key] = spec[key][1](key, value)
        except ValueError as exc:
            raise where.error(f"{name}.{key}", str(exc)) from None
    return out


def _check_grader(where: _Where, prefix: str, grader: str, preset: Preset, outcomes: set[str]) -> None:
    """What the grader needs from the preset to be able to tell its outcomes apart."""
    o = preset.options
    need = {"best-temperature": "temperatures", "best-alpha": "alphas", "capacity": "students", "fraction": "fractions"}
    if grader in need:
        key = need[grader]
        values = o[key] if o[key] is not None else studies.family_students(preset.config.student)
        least = 3 if "middle" in outcomes else 2
        if len(values) < least:
            why = "so that one can be in the middle" if least == 3 else "to compare"
            raise where.error(f"{prefix}.options.{key}", f"needs at least {least} values {why}, got {values!r}")
    if grader == "kd-gain" and preset.config.alpha == 0:
        raise where.error(
            f"{prefix}.config.alpha", "must be above 0: with α = 0 the distilled student is the scratch student"
        )


def _template(where: _Where, name: str, value, allowed: tuple[str, ...]) -> str:
    text = _text(where, name, value)
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise where.error(name, f"{exc}; write {{{{ and }}}} for a literal brace") from None
    for _, placeholder, spec, conversion in parts:
        if placeholder is None:
            continue
        if placeholder not in allowed or spec or conversion:
            raise where.error(
                name, f"unknown placeholder {{{placeholder}}}; this lesson's grader fills: {', '.join(allowed)}"
            )
    return text


def _lesson(where: _Where, raw) -> Lesson:
    if not isinstance(raw, dict):
        raise where.error("(the whole entry)", f"must be a mapping with {', '.join(LESSON_FIELDS)}, got {raw!r}")
    # Named as early as possible, so even a missing field says which lesson it is missing from.
    number, lesson_id = raw.get("number"), raw.get("id")
    has_number = isinstance(number, int) and not isinstance(number, bool)
    if has_number and isinstance(lesson_id, str):
        where.label = f"{number} ({lesson_id})"
    elif has_number or isinstance(lesson_id, str):
        where.label = str(number) if has_number else repr(lesson_id)
    _mapping(where, "", raw, LESSON_FIELDS, LESSON_FIELDS)
    if not isinstance(lesson_id, str) or not _ID.fullmatch(lesson_id):
        raise where.error(
            "id", f"must be a slug of lowercase letters, digits and dashes (e.g. missing-class), got {lesson_id!r}"
        )
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise where.error("number", f"must be a whole number from 1 up, got {number!r}")
    where.label = f"{number} ({lesson_id})"
    title, goal = _text(where, "title", raw["title"]), _text(where, "goal", raw["goal"])
    grader = _one_of(where, "grader", raw["grader"], GRADERS)
    spec = GRADERS[grader]
    preset_raw = _mapping(where, "preset", raw["preset"], ("kind", "config", "options"), ("kind",))
    kind = _one_of(where, "preset.kind", preset_raw["kind"], KINDS)
    if kind not in spec.kinds:
        raise where.error("grader", f"grader {grader} reads {' or '.join(spec.kinds)} runs, but the preset is a {kind}")
    prediction = _mapping(where, "prediction", raw["prediction"], ("question", "choices"), ("question", "choices"))
    question = _text(where, "prediction.question", prediction["question"])
    raw_choices = prediction["choices"]
    if not isinstance(raw_choices, list) or not MIN_CHOICES <= len(raw_choices) <= MAX_CHOICES:
        raise where.error(
            "prediction.choices", f"must list {MIN_CHOICES} to {MAX_CHOICES} choices, got {raw_choices!r}"
        )
    choices = []
    for i, c in enumerate(raw_choices, 1):
        name = f"prediction.choices[{i}]"
        c = _mapping(where, name, c, ("outcome", "text"), ("outcome", "text"))
        if not isinstance(c["outcome"], str) or c["outcome"] not in spec.outcomes:
            raise where.error(
                f"{name}.outcome", f"grader {grader} measures one of: {', '.join(spec.outcomes)}; got {c['outcome']!r}"
            )
        if any(prev.outcome == c["outcome"] for prev in choices):
            raise where.error(f"{name}.outcome", f"{c['outcome']!r} is already the outcome of another choice")
        choices.append(Choice(c["outcome"], _text(where, f"{name}.text", c["text"])))
    outcomes = {c.outcome for c in choices}
    expected = _one_of(where, "expected", raw["expected"], [c.outcome for c in choices])
    overrides = preset_raw.get("config") or {}
    preset = Preset(
        kind,
        dict(overrides) if isinstance(overrides, dict) else overrides,
        _config(where, "preset.config", overrides),
        _options(where, "preset.options", kind, preset_raw.get("options")),
    )
    _check_grader(where, "preset", grader, preset, outcomes)
    chart = _one_of(where, "chart", raw["chart"], CHARTS)
    if kind not in CHARTS[chart]:
        raise where.error("chart", f"chart {chart} draws {' or '.join(CHARTS[chart])} runs, but the preset is a {kind}")
    explanation_raw = _mapping(
        where, "explanation", raw["explanation"], ("expected", "unexpected"), ("expected", "unexpected")
    )
    explanation = {k: _template(where, f"explanation.{k}", v, spec.fields) for k, v in explanation_raw.items()}
    nxt = _mapping(where, "try_next", raw["try_next"], ("text", "config", "options"), ("text",))
    nxt_config, nxt_options = nxt.get("config") or {}, nxt.get("options") or {}
    for name, value in (("config", nxt_config), ("options", nxt_options)):
        if not isinstance(value, dict):
            raise where.error(f"try_next.{name}", f"must be a mapping, got {value!r}")
    if len(nxt_config) + len(nxt_options) != 1:
        raise where.error(
            "try_next", "must change exactly one thing: one sidebar field under config, or one option under options"
        )
    # A new dataset brings its own preset, as in the sidebar; any other change keeps the rest of the lesson's.
    overrides_next = dict(nxt_config) if "dataset" in nxt_config else {**preset.overrides, **nxt_config}
    tried = Preset(
        kind,
        overrides_next,
        _config(where, "try_next.config", overrides_next),
        _options(where, "try_next.options", kind, nxt_options, base=preset.options),
    )
    _check_grader(where, "try_next", grader, tried, outcomes)
    try_next = TryNext(_text(where, "try_next.text", nxt["text"]), dict(nxt_config), dict(nxt_options), tried)
    return Lesson(
        lesson_id,
        number,
        title,
        goal,
        question,
        tuple(choices),
        expected,
        preset,
        grader,
        chart,
        explanation,
        try_next,
    )


def parse_lessons(text: str, source: str = "lessons.yaml") -> tuple[Lesson, ...]:
    """The lessons in a YAML text, ordered by number; LessonError naming the lesson and field of any problem."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise LessonError(
            f"{source} is not valid YAML{where}: {problem}. Check the indentation and quotes there."
        ) from None
    if not isinstance(data, dict) or set(data) != {"lessons"} or not isinstance(data["lessons"], list):
        raise LessonError(f"{source} must hold one key, lessons, with a list of lessons under it.")
    if not data["lessons"]:
        raise LessonError(f"{source} lists no lessons; add at least one under lessons.")
    lessons: list[Lesson] = []
    for i, raw in enumerate(data["lessons"]):
        where = _Where(source, i)
        lesson = _lesson(where, raw)
        for other in lessons:
            if other.id == lesson.id:
                raise where.error("id", f"{lesson.id!r} is also the id of lesson {other.number}; ids must differ")
            if other.number == lesson.number:
                raise where.error(
                    "number", f"{lesson.number} is also the number of lesson {other.id!r}; numbers must differ"
                )
        lessons.append(lesson)
    return tuple(sorted(lessons, key=lambda lesson: lesson.number))


@lru_cache(maxsize=8)
def _load(path: Path, mtime_ns: int, size: int) -> tuple[Lesson, ...]:
    return parse_lessons(path.read_text(encoding="utf-8"), source=path.name)


def load_lessons(path: str | Path = DEFAULT_PATH) -> tuple[Lesson, ...]:
    """The lessons in a YAML file, ordered by number; read again whenever the file changes."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise LessonError(f"Cannot read the lessons file {path} ({exc.strerror or exc}).") from None
    try:
        return _load(path, stat.st_mtime_ns, stat.st_size)
    except OSError as exc:
        raise LessonError(f"Cannot read the lessons file {path} ({exc.strerror or exc}).") from None
    except UnicodeDecodeError:
        raise LessonError(f"The lessons file {path} is not UTF-8 text; save it as UTF-8.") from None


def find(lessons: tuple[Lesson, ...], key: int | str) -> Lesson | None:
    """The lesson with this number (or id), or None."""
    return next((lesson for lesson in lessons if key in (lesson.number, lesson.id)), None)
