"""Progress events and the one reducer that turns them into a job's `Progress`.

Everything that trains reports by calling `on_event(event)` with one of the small frozen dataclasses
below. A job (or the CLI) wraps its callback in `stamped`, which sets each event's `t`: seconds since
the job started, the only clock. `ProgressTracker` folds events, one at a time, into a `Progress`:
phase, share done, ETA, one line of text, each teacher's status, the curves so far and a study's
latest numbers. The CLI's bars, every page and the tests read that one summary, so changing how
progress reads means editing this file.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

# An ETA from less than this share of a phase is mostly noise (start-up, first batches), so none is shown.
MIN_SHARE_FOR_ETA = 0.02


@dataclass(frozen=True, kw_only=True)
class Event:
    t: float = 0.0  # seconds since the job started, set by `stamped`


@dataclass(frozen=True, kw_only=True)
class Started(Event):
    """The job began on a worker; a second one means the job started again elsewhere after its worker died."""

    worker: str


@dataclass(frozen=True, kw_only=True)
class DatasetLoading(Event):
    dataset: str


@dataclass(frozen=True, kw_only=True)
class TeacherStart(Event):
    member: str
    index: int
    count: int
    epochs: int


class TeacherStatus(enum.StrEnum):
    CACHED = "cached"
    TRAINING = "training"
    TRAINED = "trained"
    VIEWS = "views"  # scoring the fixed augmented views of the training images, once


@dataclass(frozen=True, kw_only=True)
class TeacherUpdate(Event):
    member: str
    status: TeacherStatus
    seconds: float | None = None  # training time, once trained


@dataclass(frozen=True, kw_only=True)
class AssistantStart(Event):
    """A teacher assistant (Mirzadeh et al. 2020) is loaded from the cache or distilled from the ensemble.

    `model` is the name its Trainer reports Step and Epoch events under."""

    model: str
    epochs: int


@dataclass(frozen=True, kw_only=True)
class AssistantUpdate(Event):
    model: str
    status: TeacherStatus
    seconds: float | None = None  # training time, once trained


@dataclass(frozen=True, kw_only=True)
class Step(Event):
    """Running averages within an epoch, sent about once a second per model."""

    model: str
    epoch: float  # epochs done, fractional
    epochs: int
    loss: float
    hard: float
    soft: float | None
    parts: dict[str, float] | None = None  # a loss's own parts, e.g. DKD's {"tckd": ..., "nckd": ...}


@dataclass(frozen=True, kw_only=True)
class Epoch(Event):
    """One finished epoch of one model, with its test accuracy (None for a teacher's epochs before its last)."""

    model: str
    epoch: int
    epochs: int
    loss: float
    hard: float
    soft: float | None
    test_acc: float | None
    parts: dict[str, float] | None = None  # as in Step


@dataclass(frozen=True, kw_only=True)
class StudentsStart(Event):
    models: tuple[str, ...]
    epochs: int
    train_size: int


@dataclass(frozen=True, kw_only=True)
class StudyStart(Event):
    study: str
    total: int  # students the study trains
    weights: tuple[float, ...] = ()  # each student's relative cost, in training order (default: equal)


@dataclass(frozen=True, kw_only=True)
class StudyCell(Event):
    """A study finished one more cell; `snapshot` is the whole result so far (its to_json())."""

    study: str
    done: int  # students trained so far
    total: int
    snapshot: dict


@dataclass(frozen=True, kw_only=True)
class Measuring(Event):
    pass


@dataclass(frozen=True, kw_only=True)
class Notice(Event):
    """Something the user should know about the run, with advice that fits its cause."""

    message: str
    cause: str = ""


@dataclass(frozen=True, kw_only=True)
class Finished(Event):
    partial: bool
    kd_gain: float | None = None


@dataclass(frozen=True, kw_only=True)
class Saved(Event):
    run_id: int
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class SaveFailed(Event):
    message: str


EventFn = Callable[[Event], None]
_TYPES: dict[str, type[Event]] = {}


def to_dict(event: Event) -> dict:
    """The event as plain data (for transports that carry no Python objects, such as Dask's event log)."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return {"type": type(event).__name__, **{k: v.value if isinstance(v, enum.Enum) else v for k, v in fields.items()}}


def from_dict(data: dict) -> Event:
    """The event that to_dict turned into `data`."""
    if not _TYPES:
        _TYPES.update({cls.__name__: cls for cls in _subclasses(Event)})
    cls = _TYPES[data["type"]]
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            v = data[f.name]
            values[f.name] = tuple(v) if "tuple" in str(f.type) and v is not None else v
    if "status" in values:
        values["status"] = TeacherStatus(values["status"])
    return cls(**values)


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


def ignore(event: Event) -> None:
    """The callback for callers that do not follow progress."""


def stamped(callback: EventFn, start: float | None = None) -> EventFn:
    """callback, with each event's `t` set to seconds since `start` (a time.monotonic() value, default now)."""
    t0 = time.monotonic() if start is None else start

    def emit(event: Event) -> None:
        callback(replace(event, t=time.monotonic() - t0))

    return emit


class Phase(enum.StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    TEACHERS = "teachers"
    ASSISTANT = "assistant"
    STUDENTS = "students"
    STUDY = "study"
    MEASURING = "measuring"
    FINISHED = "finished"


@dataclass
class TeacherLine:
    """One ensemble member's state, as the progress view lists it."""

    status: str = "waiting"  # waiting | checking | cached | training | trained
    epoch: float = 0.0
    epochs: int = 0
    seconds: float | None = None

    @property
    def label(self) -> str:
        if self.status == "training":
            return f"training, epoch {self.epoch:.1f} of {self.epochs}"
        if self.status == "trained":
            return f"trained in {format_seconds(self.seconds or 0.0)} and cached"
        return {
            "cached": "loaded from the cache",
            "checking": "checking the cache",
            "views": "scoring the augmented views of the training images (once)",
        }.get(self.status, "waiting")


@dataclass
class Progress:
    """Where a job is: what the CLI prints, a page draws and a test asserts on."""

    phase: Phase = Phase.QUEUED
    step: int = 0  # "step `step` of `steps`" of a job made of several phases; 0 when there is one
    steps: int = 0
    fraction: float = 0.0  # of the current phase
    eta_seconds: float | None = None
    text: str = "Waiting to start"
    t: float = 0.0
    teachers: dict[str, TeacherLine] = field(default_factory=dict)
    assistant: tuple[str, TeacherLine] | None = None  # a teacher assistant's name and state, once one is used
    curves: dict[str, list[Step | Epoch]] = field(default_factory=dict)
    snapshot: dict | None = None
    notices: list[Notice] = field(default_factory=list)
    saved: Saved | SaveFailed | None = None
    finished: Finished | None = None
    train_size: int | None = None
    worker: str | None = None  # where the job runs, once it started (a Dask worker's address)

    def epochs(self, model: str) -> list[Epoch]:
        return [e for e in self.curves.get(model, ()) if isinstance(e, Epoch)]


def format_seconds(seconds: float) -> str:
    """A duration as "42 s" or "3 min 05 s"."""
    seconds = max(0, round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def eta(done: float, total: float, spent: float) -> float | None:
    """Seconds left at the rate so far: `done` of `total` units of work took `spent` seconds."""
    if total <= 0 or done <= 0 or spent <= 0 or done / total < MIN_SHARE_FOR_ETA:
        return None
    return max(0.0, (total - done) * spent / done)


class ProgressTracker:
    """Folds events into a Progress, one at a time (thread-safe); `progress()` returns a copy."""

    def __init__(self, steps: int = 0):
        self._p = Progress(steps=steps)
        self._lock = threading.Lock()
        self._phase_t0 = 0.0
        self._study_done = 0
        self._study_total = 0
        self._weights: list[float] = []
        self._epochs = 0
        self._trained_t0: float | None = None  # when the first teacher that really trains began
        self._worker: str | None = None

    def progress(self) -> Progress:
        with self._lock:
            return copy.deepcopy(self._p)

    def apply(self, event: Event) -> None:
        with self._lock:
            self._apply(event)

    def _enter(self, phase: Phase, t: float, step: int = 0) -> None:
        p = self._p
        p.phase, p.fraction, p.eta_seconds = phase, 0.0, None
        if step and p.steps:
            p.step = step
        self._phase_t0 = t

    def _apply(self, e: Event) -> None:
        p = self._p
        p.t = max(p.t, e.t)
        if isinstance(e, Started):
            if self._worker is not None and e.worker != self._worker:
                restarted = Notice(
                    message=f"The worker running this job stopped; the job started again on {e.worker}.",
                    cause="restarted",
                    t=e.t,
                )
                self._p = Progress(steps=p.steps, notices=[*p.notices, restarted], t=p.t)
                self._trained_t0 = None
            self._worker = self._p.worker = e.worker
        elif isinstance(e, DatasetLoading):
            self._enter(Phase.LOADING, e.t)
            p.text = f"Loading the {e.dataset} images…"
        elif isinstance(e, TeacherStart):
            if p.phase is not Phase.TEACHERS:
                self._enter(Phase.TEACHERS, e.t, step=1)
            line = p.teachers.setdefault(e.member, TeacherLine())
            line.status, line.epochs = "checking", e.epochs
            self._epochs = e.epochs
        elif isinstance(e, TeacherUpdate):
            line = p.teachers.setdefault(e.member, TeacherLine(epochs=self._epochs))
            line.status = e.status.value
            if e.status is TeacherStatus.TRAINING and self._trained_t0 is None:
                self._trained_t0 = e.t
            if e.status is TeacherStatus.TRAINED:
                line.epoch, line.seconds = float(line.epochs), e.seconds
        elif isinstance(e, AssistantStart):
            if p.steps:  # the assistant is a step of its own between the teachers and the students
                p.steps = max(p.steps, 3)
            self._enter(Phase.ASSISTANT, e.t, step=2)
            p.assistant = (e.model, TeacherLine(status="checking", epochs=e.epochs))
        elif isinstance(e, AssistantUpdate):
            if p.assistant is None or p.assistant[0] != e.model:
                p.assistant = (e.model, TeacherLine())
            line = p.assistant[1]
            line.status = e.status.value
            if e.status is TeacherStatus.TRAINING:
                self._trained_t0 = e.t
            if e.status is TeacherStatus.TRAINED:
                line.epoch, line.seconds = float(line.epochs), e.seconds
        elif isinstance(e, (Step, Epoch)):
            if p.phase is Phase.ASSISTANT and p.assistant is not None and e.model == p.assistant[0]:
                line = p.assistant[1]
                line.epoch, line.epochs = float(e.epoch), e.epochs
            elif p.phase is Phase.TEACHERS and e.model in p.teachers:
                line = p.teachers[e.model]
                line.epoch, line.epochs = float(e.epoch), e.epochs
            else:
                p.curves.setdefault(e.model, []).append(e)
        elif isinstance(e, StudentsStart):
            self._enter(Phase.STUDENTS, e.t, step=p.steps)
            p.train_size, self._epochs = e.train_size, e.epochs
            for m in e.models:
                p.curves.setdefault(m, [])
        elif isinstance(e, StudyStart):
            self._enter(Phase.STUDY, e.t, step=2)
            self._study_total, self._study_done = e.total, 0
            self._weights = list(e.weights) if len(e.weights) == e.total else [1.0] * e.total
        elif isinstance(e, StudyCell):
            self._study_done, self._study_total, p.snapshot = e.done, e.total, e.snapshot
        elif isinstance(e, Measuring):
            self._enter(Phase.MEASURING, e.t)
        elif isinstance(e, Notice):
            p.notices.append(e)
        elif isinstance(e, Finished):
            p.finished = e
            self._enter(Phase.FINISHED, e.t)
            p.fraction = 1.0
        elif isinstance(e, (Saved, SaveFailed)):
            p.saved = e
        self._summarise()

    def _summarise(self) -> None:
        """Recompute fraction, ETA and the one line of text for the current phase."""
        p = self._p
        prefix = f"Step {p.step} of {p.steps} · " if p.step and p.steps else ""
        if p.phase is Phase.TEACHERS:
            lines = list(p.teachers.values())
            total = sum(line.epochs for line in lines) or 1
            skipped = sum(line.epochs for line in lines if line.status in ("cached", "views"))
            trained = sum(line.epoch for line in lines if line.status in ("training", "trained"))
            p.fraction = min(1.0, (skipped + trained) / total)
            spent = p.t - (self._trained_t0 if self._trained_t0 is not None else p.t)
            p.eta_seconds = eta(trained, total - skipped, spent)
            left = "" if p.eta_seconds is None else f" · about {format_seconds(p.eta_seconds)} left"
            p.text = f"{prefix}Preparing the teacher ensemble: {skipped + trained:.1f} of {total} teacher epochs{left}"
        elif p.phase is Phase.ASSISTANT and p.assistant is not None:
            name, line = p.assistant
            total = line.epochs or 1
            done = total if line.status == "cached" else line.epoch
            p.fraction = min(1.0, done / total)
            spent = p.t - (self._trained_t0 if self._trained_t0 is not None else p.t)
            p.eta_seconds = eta(done, total, spent) if line.status == "training" else None
            left = "" if p.eta_seconds is None else f" · about {format_seconds(p.eta_seconds)} left"
            p.text = f"{prefix}Teacher assistant {name}: {line.label}{left}"
        elif p.phase is Phase.STUDENTS:
            latest = [max((e.epoch for e in pts), default=0.0) for pts in p.curves.values()]
            total = self._epochs * max(1, len(latest))
            done = sum(latest)
            p.fraction = min(1.0, done / total) if total else 0.0
            p.eta_seconds = eta(done, total, p.t - self._phase_t0)
            left = "" if p.eta_seconds is None else f" · about {format_seconds(p.eta_seconds)} left"
            size = f" on {p.train_size:,} images" if p.train_size else ""
            who = "both students" if len(latest) == 2 else f"{len(latest)} students"
            p.text = f"{prefix}Training {who}{size}: epoch {p.fraction * self._epochs:.1f} of {self._epochs}{left}"
        elif p.phase is Phase.STUDY:
            current = self._current_student()
            w = self._weights
            n = min(self._study_done, len(w))
            done = sum(w[:n]) + (current[1] * w[n] if current and n < len(w) else 0.0)
            total = sum(w) or 1.0
            p.fraction = min(1.0, done / total)
            p.eta_seconds = eta(done, total, p.t - self._phase_t0)
            left = "" if p.eta_seconds is None else f" · about {format_seconds(p.eta_seconds)} left"
            now = f" · now: {current[0]}" if current else ""
            p.text = f"{prefix}Trained {self._study_done} of {self._study_total} students{now}{left}"
        elif p.phase is Phase.MEASURING:
            p.text = "Students trained · measuring accuracy, size and latency…"
        elif p.phase is Phase.FINISHED and p.finished is not None:
            p.text = "Stopped: the result is partial" if p.finished.partial else "Finished"

    def _current_student(self) -> tuple[str, float] | None:
        """The study's student in training now and its share done, from the newest curve point."""
        newest = max(
            ((pts[-1], m) for m, pts in self._p.curves.items() if pts), key=lambda pair: pair[0].t, default=None
        )
        if newest is None:
            return None
        point, model = newest
        share = point.epoch / point.epochs if point.epochs else 0.0
        return (model, share) if share < 1.0 else None
