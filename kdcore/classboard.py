"""The class board: every run finished on this server in the last N minutes, as KD gain against T, α, student
size and data fraction, one dot per run (or study cell) with the mean per setting.

The board is anonymous: it reads the run history's numbers and settings only, never a session or a name.
It costs one query on the history plus JSON parsing, so it can redraw every few seconds with hundreds of runs.

What each run adds (gains are distilled minus scratch test accuracy, as fractions):
  distill         one dot on every axis, at its own T, α, student and fraction; a stopped run (whose students
                  did not train to the end) and a run that leaves a class out (a different experiment) add none;
  sweep           a dot per finished cell on the T and the α axes;
(a run or cell with α = 0 is the scratch student itself, so T cannot matter: it adds no dot on the T axis)
  fraction        a dot per finished fraction on the fraction axis;
  capacity        a dot per finished student on the student-size axis.
Missing-class studies measure something else (one class never seen) and are not drawn.

An instructor clears the board with `clear`: it stores a "cleared at" time in a small JSON file beside the
history, and the board shows only runs saved after it. No run is deleted.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from . import models
from .store import RunRecord, RunStore

DEFAULT_MINUTES = 60
MAX_MINUTES = 24 * 60
AXES = ("temperature", "alpha", "student", "fraction")
AXIS_LABELS = {
    "temperature": "Temperature T",
    "alpha": "Weight α of the teacher",
    "student": "Student size",
    "fraction": "Fraction of training data",
}
BOARD_KINDS = ("distill", "sweep", "fraction", "capacity")
CLEARED_SUFFIX = ".board.json"
# Within each family (in the zoo's order), students from the smallest size to the largest.
STUDENT_ORDER = tuple(
    f"{family}-{size}"
    for family in dict.fromkeys(s.name.split("-")[0] for s in models.available("student"))
    for size in models.STUDENT_SIZES
    if f"{family}-{size}" in models.ZOO
)


@dataclass(frozen=True)
class Dot:
    """One run's (or one study cell's) KD gain at one setting of the axis."""

    x: float | str
    gain: float
    kind: str
    run_id: int


@dataclass(frozen=True)
class Mean:
    """The mean KD gain of the `count` dots at one setting."""

    x: float | str
    gain: float
    count: int


@dataclass(frozen=True)
class Series:
    """KD gain against one axis: the dots in the order they were saved, the means in the axis's order."""

    axis: str
    label: str
    dots: tuple[Dot, ...]
    means: tuple[Mean, ...]

    @property
    def order(self) -> tuple:
        """The settings present, in the axis's order (numbers ascending; students tiny < small < medium)."""
        return tuple(m.x for m in self.means)


@dataclass(frozen=True)
class Board:
    """What the class board shows: runs saved in (since, until], one Series per axis in AXES."""

    series: dict[str, Series]
    since: float
    until: float
    minutes: float
    cleared_at: float | None
    runs: int  # runs that added at least one dot

    @property
    def empty(self) -> bool:
        return self.runs == 0


def cleared_path(store: RunStore) -> Path:
    return store.path.with_name(store.path.name + CLEARED_SUFFIX)


def cleared_at(store: RunStore) -> float | None:
    """When the board was last cleared (a time.time() value), or None if never or the file is unreadable."""
    try:
        value = json.loads(cleared_path(store).read_text(encoding="utf-8")).get("cleared_at")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def clear(store: RunStore, before: float | None = None) -> float:
    """Hide every run saved up to `before` (default: now) from the board; returns that time. Deletes nothing.

    The time is written to a temporary file that then replaces the old one, so a board reading at that
    moment sees the old time or the new one, never half a file.
    """
    at = time.time() if before is None else before
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise ValueError(f"before must be a time in seconds since the epoch (e.g. time.time()), got {before!r}")
    path = cleared_path(store)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"cleared_at": float(at)}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return float(at)


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _points(record: RunRecord) -> list[tuple[str, float | str, float]]:
    """(axis, x, gain) for every dot the run adds; a malformed record adds none rather than break the board."""
    c, m = record.config, record.metrics
    if not isinstance(c, dict) or not isinstance(m, dict):
        return []
    out: list[tuple[str, float | str, float]] = []
    if record.kind == "distill":
        gain = _number(m.get("kd_gain"))
        if record.partial or gain is None or c.get("exclude_class") is not None:
            return []
        alpha = _number(c.get("alpha"))
        for axis in ("temperature", "alpha", "fraction"):
            x = _number(c.get(axis))
            if x is not None and not (axis == "temperature" and alpha == 0):
                out.append((axis, x, gain))
        if c.get("student") in STUDENT_ORDER:
            out.append(("student", c["student"], gain))
    elif record.kind == "sweep":
        ts, als, gains = m.get("temperatures"), m.get("alphas"), m.get("gain")
        if not (isinstance(ts, list) and isinstance(als, list) and isinstance(gains, list)):
            return []
        for t, row in zip(ts, gains):
            for a, g in zip(als, row if isinstance(row, list) else []):
                t_, a_, g_ = _number(t), _number(a), _number(g)
                if None not in (t_, a_, g_):
                    out += [("temperature", t_, g_)] if a_ > 0 else []
                    out.append(("alpha", a_, g_))
    elif record.kind in ("fraction", "capacity"):
        axis, key = ("fraction", "fraction") if record.kind == "fraction" else ("student", "student")
        for p in m.get("points") if isinstance(m.get("points"), list) else []:
            if not isinstance(p, dict) or (g := _number(p.get("gain"))) is None:
                continue
            x = p.get(key)
            x = _number(x) if axis == "fraction" else (x if x in STUDENT_ORDER else None)
            if x is not None:
                out.append((axis, x, g))
    return out


def _order(axis: str, x) -> tuple:
    return (STUDENT_ORDER.index(x),) if axis == "student" else (x,)


def board(
    store: RunStore, minutes: float = DEFAULT_MINUTES, now: float | None = None, dataset: str | None = None
) -> Board:
    """KD gain against T, α, student size and fraction over the runs saved in the last `minutes` (and after the
    last `clear`), optionally of one dataset only."""
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not 0 < minutes <= MAX_MINUTES:
        raise ValueError(f"minutes must be a number of minutes above 0 and at most {MAX_MINUTES}, got {minutes!r}")
    until = time.time() if now is None else float(now)
    cleared = cleared_at(store)
    since = until - minutes * 60
    if cleared is not None:
        since = max(since, cleared)
    dots: dict[str, list[Dot]] = {axis: [] for axis in AXES}
    runs = 0
    for record in store.records_since(since, until, BOARD_KINDS):
        if dataset is not None and record.dataset != dataset:
            continue
        points = _points(record)
        runs += bool(points)
        for axis, x, gain in points:
            dots[axis].append(Dot(x, gain, record.kind, record.id))
    series = {}
    for axis in AXES:
        groups: dict = defaultdict(list)
        for d in dots[axis]:
            groups[d.x].append(d.gain)
        means = tuple(
            Mean(x, sum(g) / len(g), len(g)) for x, g in sorted(groups.items(), key=lambda kv: _order(axis, kv[0]))
        )
        series[axis] = Series(axis, AXIS_LABELS[axis], tuple(dots[axis]), means)
    return Board(series, since, until, float(minutes), cleared, runs)
