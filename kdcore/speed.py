"""How fast this machine trains each model, remembered, so a job's duration can be told before it starts.

Every finished training notes its wall time per training image (`note`), keyed by machine, dataset,
model, how it ran (a teacher, alone or beside other members: "teacher"; the two students of a
distillation side by side: "pair"; a study's students one at a time: "single"; a teacher scoring the fixed
augmented views of the training images: "views", per image and view) and its threads (a member beside
others notes the time of its own epochs, on its one thread). The last RECENT notes per key live in the
data folder (`cache/speed.json`, written atomically under a file lock). `job_estimate` turns them into
the seconds a job should take, shown before Start; with no note yet it says so instead of guessing.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from . import data as kdata

RECENT = 5  # notes kept per key: recent enough to follow a busier machine, enough to smooth one odd run
# Speeds measured on the machine this project was built on (2 cores), written by
# `benchmarks/consistent_teaching.py --write-reference`: the estimate before this machine has trained a model.
REFERENCE = Path(__file__).resolve().parent.parent / "assets" / "reference_speed.json"
MODES = ("teacher", "pair", "single", "views")
# Scoring the test set (after each student epoch, after a teacher's last), the teachers' logits, measuring
# latency and saving add about this share to training.
OVERHEAD = 0.15


def _path() -> Path:
    return kdata.data_dir() / "cache" / "speed.json"


def _key(dataset: str, arch: str, mode: str, threads: int) -> str:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    return f"{platform.node()}|{dataset}|{arch}|{mode}|{threads}"


def _read() -> dict:
    try:
        records = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def note(dataset: str, arch: str, mode: str, threads: int, images: int, seconds: float) -> None:
    """Remember that training `arch` on `images` images (all epochs summed) took `seconds` of wall time."""
    if images <= 0 or not math.isfinite(seconds) or seconds <= 0:
        return
    key = _key(dataset, arch, mode, threads)
    path = _path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=5):
            records = _read()
            kept = [v for v in records.get(key, []) if isinstance(v, (int, float)) and v > 0]
            records[key] = [*kept, seconds / images][-RECENT:]
            kdata.atomic_write(path, lambda tmp: tmp.write_text(json.dumps(records, indent=0)))
    except (OSError, TimeoutError):
        pass  # a read-only or busy data folder costs the next estimate, never the run


def seconds_per_image(dataset: str, arch: str, mode: str, threads: int) -> float | None:
    """The median of the recent notes for this machine, dataset, model, mode and threads; None if none."""
    values = [v for v in _read().get(_key(dataset, arch, mode, threads), []) if isinstance(v, (int, float)) and v > 0]
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class Estimate:
    """How long a job should take here: `seconds` (None if unknown) and the reason in words."""

    seconds: float | None
    basis: str

    @property
    def text(self) -> str:
        if self.seconds is None:
            return f"No estimate yet: {self.basis}."
        from .events import format_seconds

        if self.seconds < 1:
            return f"Under a second {self.basis}."
        return f"About {format_seconds(self.seconds)} {self.basis}."


Work = tuple[str, str, str, int, int]  # dataset, arch, mode, threads, training images


def reference_rate(dataset: str, arch: str, mode: str, threads: int) -> float | None:
    """Seconds per image measured on the reference machine (REFERENCE), if it was measured there."""
    try:
        rates = json.loads(REFERENCE.read_text())["seconds_per_image"]
        rate = rates.get(f"{dataset}|{arch}|{mode}|{threads}")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return float(rate) if isinstance(rate, (int, float)) and rate > 0 else None


def estimate(work: list[Work]) -> Estimate:
    """Seconds for pieces of work, from this machine's notes, else from the reference machine's speeds."""
    total, unknown, borrowed = 0.0, [], False
    for dataset, arch, mode, threads, images in work:
        rate = seconds_per_image(dataset, arch, mode, threads)
        if rate is None:
            rate = reference_rate(dataset, arch, mode, threads)
            borrowed = borrowed or rate is not None
        if rate is None:
            unknown.append(arch)
        else:
            total += rate * images
    if unknown:
        names = ", ".join(dict.fromkeys(unknown))
        return Estimate(None, f"{names} {'has' if len(set(unknown)) == 1 else 'have'} not trained on this machine yet")
    basis = (
        "on a 2-core machine like the one it was measured on (this one has not trained it yet)"
        if borrowed
        else "on this machine (from the speed of recent runs)"
    )
    return Estimate(total * (1 + OVERHEAD), basis)


def job_work(
    spec, data: kdata.Dataset, missing_teachers: list[str], threads: int, missing_views: Sequence[str] = ()
) -> list[Work]:
    """The training a job with a budget of `threads` would do: its missing teachers, the views scored by
    `missing_views` (members whose augmented views are not cached, when the job's students learn from them),
    then its students."""
    from . import budget, studies
    from .jobs import JobKind
    from .train import teacher_settings

    c, options = spec.config, dict(spec.options)
    teacher_epochs = teacher_settings(c.dataset, c.teacher_epochs).epochs
    work = []
    # Two or more missing members train side by side, one thread each, sharing the lanes' time
    # (teachers.train_side_by_side).
    side = budget.lanes(threads) if len(missing_teachers) > 1 else 1
    for member in missing_teachers:
        arch = member.partition("@")[0]
        member_threads = 1 if side > 1 else budget.model_threads(arch, threads)
        work.append((c.dataset, arch, "teacher", member_threads, len(data.train_y) * teacher_epochs // side))
    views = len(kdata.VIEWS.get(c.dataset, ())) if c.augment else 0
    for member in missing_views if views else ():
        arch = member.partition("@")[0]
        work.append((c.dataset, arch, "views", budget.model_threads(arch, threads), len(data.train_y) * views))
    pair, single = ("pair", budget.lanes(threads)), ("single", 1)

    def size(fraction: float = c.fraction, exclude: int | None = c.exclude_class) -> int:
        return len(kdata.subset_indices(data.train_y, fraction=fraction, exclude_class=exclude, seed=c.seed))

    kind = spec.kind
    if kind is JobKind.DISTILL:
        work.append((c.dataset, c.student, *pair, size() * c.epochs))
    elif kind is JobKind.SWEEP:
        students = studies.sweep_students(options["temperatures"], options["alphas"])
        work += [(c.dataset, c.student, *single, size() * c.epochs)] * students
    elif kind is JobKind.FRACTION:
        for f in options["fractions"]:
            n = size(fraction=f) * studies.fraction_epochs(c.epochs, f, c.fraction)
            work += [(c.dataset, c.student, *single, n)] * 2
    elif kind is JobKind.MISSING_CLASS:
        work += [(c.dataset, c.student, *single, size(exclude=options["missing"]) * c.epochs)] * 2
    elif kind is JobKind.CAPACITY:
        for student in options.get("students") or studies.family_students(c.student):
            work += [(c.dataset, student, *single, size() * c.epochs)] * 2
    return work


def job_estimate(spec, data: kdata.Dataset, threads: int) -> Estimate:
    """How long `spec` should take here with a budget of `threads`, before it starts: the teachers and views
    it would find missing from the cache, and its students."""
    from . import teachers

    c = spec.config
    members = teachers.parse_members(c.teachers)
    missing = [m.name for m in teachers.missing_members(data, members, c.teacher_epochs)]
    views = [m.name for m in teachers.missing_views(data, members, c.teacher_epochs)]
    return estimate(job_work(spec, data, missing, threads, views))
