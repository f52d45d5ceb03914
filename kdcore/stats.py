"""Honest uncertainty for the numbers the app headlines: accuracies, gains, sweeps and seeds.

A test set is a sample of images, so every accuracy measured on it is uncertain, and a small gain
between two models can be test-set noise. This module gives

- `accuracy_interval`: a Wilson score interval for one accuracy;
- `paired_gain`: the gain of model A over model B scored on the same images, with Tango's score
  interval and an exact McNemar p-value, both from the images where exactly one of them is right;
- `verdict`: the one rule for "is this difference within noise?" and a plain sentence saying so;
- `best_with_ties`: which cells of a sweep are statistically tied with the best one;
- `seeds_summary`: mean ± std of a result repeated over seeds.

Every number returned is a fraction (0.964, not 96.4); `fmt_percent` and `fmt_points` turn fractions
into the app's strings, with one decimal and a Unicode minus sign.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch

MINUS = "\N{MINUS SIGN}"
DEFAULT_LEVEL = 0.95
# Endpoints of the paired interval are found by bisection to well below the display precision (0.1 point).
_TOLERANCE = 1e-12


# --- formatting ---------------------------------------------------------------------------------


def _signed(value: float, decimals: int) -> str:
    text = f"{abs(value):.{decimals}f}"
    # Decide the sign from the rounded text, so -0.04 reads "0.0" and never "−0.0".
    if float(text) == 0:
        return text
    return ("+" if value > 0 else MINUS) + text


def fmt_percent(fraction: float, decimals: int = 1) -> str:
    """0.9642 -> "96.4 %"."""
    text = f"{100 * fraction:.{decimals}f}"
    return (MINUS + text[1:] if text.startswith("-") else text) + " %"


def fmt_points(fraction: float, decimals: int = 1, signed: bool = True) -> str:
    """A difference of two accuracies in percentage points: 0.016 -> "+1.6" (no unit; `Gain.text` adds it)."""
    if signed:
        return _signed(100 * fraction, decimals)
    text = f"{100 * fraction:.{decimals}f}"
    return MINUS + text[1:] if text.startswith("-") else text


def _fmt_endpoint(fraction: float) -> str:
    """An interval endpoint in points; one that rounds to 0.0 gets two decimals and keeps its true sign.

    Whether a range includes 0 is the whole question, so "0.0 to +3.2" must never hide a lower end of +0.03.
    """
    if fraction == 0 or round(100 * fraction, 1) != 0:
        return fmt_points(fraction)
    return ("+" if fraction > 0 else MINUS) + f"{abs(100 * fraction):.2f}"


def fmt_level(level: float) -> str:
    """0.95 -> "95 %"."""
    return f"{round(100 * level, 6):g} %"


def fmt_count(n: int, noun: str = "test image") -> str:
    """1000 -> "1,000 test images"; 1 -> "1 test image"."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# --- validation ---------------------------------------------------------------------------------


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a number strictly between 0 and 1 (e.g. 0.95 for 95 %), got {level!r}")
    return float(level)


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _z(level: float) -> float:
    """The two-sided normal quantile for a confidence level: 1.96 for 0.95."""
    return statistics.NormalDist().inv_cdf(0.5 + level / 2)


def _as_correct(values: Any, name: str) -> np.ndarray:
    """A 1-D boolean array of per-image correctness from a bool/0-1 tensor, array or list."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D vector of per-image correctness (True/False), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must hold at least one test image, got an empty vector")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name} must hold True/False (or 1/0) per test image, got dtype {arr.dtype}")
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must hold True/False (or 1/0) per test image, got values other than 0 and 1")
        arr = arr.astype(bool)
    return arr


# --- one accuracy -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """An accuracy and its confidence interval, all fractions; `n` is the number of test images."""

    estimate: float
    low: float
    high: float
    n: int
    level: float

    @property
    def text(self) -> str:
        """ "96.4 % (95 % range 96.0 to 96.8 %, 10,000 test images)"."""
        return (
            f"{fmt_percent(self.estimate)} ({fmt_level(self.level)} range "
            f"{fmt_points(self.low, signed=False)} to {fmt_percent(self.high)}, {fmt_count(self.n)})"
        )


def wilson(correct: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Wilson (1927) score interval for a binomial proportion: every p whose score test does not reject."""
    z = _z(level)
    p = correct / n
    z2n = z * z / n
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / n + z2n / (4 * n))
    # At 0 and n correct the interval touches the boundary exactly; rounding must not push it past.
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == n else min(1.0, centre + half)
    return low, high


def accuracy_interval(correct: int, n: int, level: float = DEFAULT_LEVEL) -> Interval:
    """Wilson score interval for a test accuracy of `correct` right answers out of `n` test images.

    Wilson's interval keeps close to its nominal coverage even near 100 % accuracy, where the usual
    p ± z·sqrt(p(1 - p)/n) collapses to a zero-width range (Brown, Cai & DasGupta 2001).
    """
    n = _check_int(n, "n (the number of test images)", 1)
    correct = _check_int(correct, "correct", 0)
    if correct > n:
        raise ValueError(f"correct must be at most n ({n}), got {correct}")
    level = _check_level(level)
    low, high = wilson(correct, n, level)
    return Interval(correct / n, low, high, n, level)


# --- two models on the same images ------------------------------------------------------------


@dataclass(frozen=True)
class Gain:
    """Accuracy of model A minus model B on the same `n` test images, with its interval and McNemar p-value.

    n10 counts images only A gets right, n01 images only B gets right; gain = (n10 - n01) / n.
    """

    n: int
    n01: int
    n10: int
    gain: float
    low: float
    high: float
    p_value: float
    level: float = DEFAULT_LEVEL

    @property
    def text(self) -> str:
        """ "+1.6 points (95 % range +0.4 to +2.8, 1,000 test images)"."""
        return (
            f"{fmt_points(self.gain)} points ({fmt_level(self.level)} range "
            f"{_fmt_endpoint(self.low)} to {_fmt_endpoint(self.high)}, {fmt_count(self.n)})"
        )


def _tango_statistic(delta: float, n10: int, n01: int, n: int) -> float:
    """Tango's score statistic for H0: p10 - p01 = delta, with p01 at its maximum-likelihood value under H0."""
    a = 2.0 * n
    b = -n10 - n01 + (2.0 * n - n10 + n01) * delta
    c = -n01 * delta * (1.0 - delta)
    root = math.sqrt(max(b * b - 4.0 * a * c, 0.0))
    # The larger root of a·q² + b·q + c = 0, in the form that avoids cancellation for either sign of b.
    p01 = (root - b) / (2.0 * a) if b <= 0 else -2.0 * c / (b + root)
    numerator = n10 - n01 - n * delta
    variance = n * (2.0 * p01 + delta * (1.0 - delta))
    if variance <= 0.0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """The root of f on [lo, hi], where f(lo) > 0 >= f(hi)."""
    while hi - lo > _TOLERANCE:
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def tango_interval(n10: int, n01: int, n: int, level: float = DEFAULT_LEVEL) -> tuple[float, float]:
    """Tango (1998) score interval for p10 - p01, the difference of two paired proportions.

    Tango, T. (1998), "Equivalence test and confidence interval for the difference in proportions for
    the paired-sample design", Statistics in Medicine 17: 891-908. It keeps close to its nominal
    coverage with few discordant pairs and, unlike the Wald interval, is not zero-width when the two
    models never disagree (Fagerland, Lydersen & Laake 2014, Statistics in Medicine 33: 2850-2875).
    """
    z = _z(level)
    estimate = (n10 - n01) / n
    low = -1.0 if n01 == n else _bisect(lambda d: _tango_statistic(d, n10, n01, n) - z, -1.0, estimate)
    high = 1.0 if n10 == n else _bisect(lambda d: _tango_statistic(d, n10, n01, n) + z, estimate, 1.0)
    return low, high


def mcnemar_p(n10: int, n01: int) -> float:
    """Exact two-sided McNemar p-value: the binomial(n10 + n01, 1/2) tail at min(n10, n01), doubled."""
    d = n10 + n01
    if d == 0:
        return 1.0
    # Exact integers, so large test sets neither overflow nor lose the tail to rounding; each binomial
    # coefficient comes from the previous one, which keeps 10,000 test images fast.
    term = tail = 1
    for k in range(1, min(n10, n01) + 1):
        term = term * (d - k + 1) // k
        tail += term
    return min(1.0, 2 * tail / 2**d)


def gain_from_counts(n10: int, n01: int, n: int, level: float = DEFAULT_LEVEL) -> Gain:
    """`paired_gain` from its counts: n10 images only A gets right, n01 only B, n in all."""
    n = _check_int(n, "n (the number of test images)", 1)
    n10 = _check_int(n10, "n10", 0)
    n01 = _check_int(n01, "n01", 0)
    if n10 + n01 > n:
        raise ValueError(f"n10 + n01 (the images where the two models differ) must be at most n ({n}), got {n10 + n01}")
    level = _check_level(level)
    low, high = tango_interval(n10, n01, n, level)
    return Gain(n, n01, n10, (n10 - n01) / n, low, high, mcnemar_p(n10, n01), level)


def paired_gain(a_correct: Any, b_correct: Any, level: float = DEFAULT_LEVEL) -> Gain:
    """Accuracy of model A minus model B, both scored on the same test images, with its uncertainty.

    `a_correct` and `b_correct` say per image whether each model was right (bool tensors, arrays or
    lists, in the same image order). Only the images where exactly one model is right carry information
    about the gain; the interval is Tango's score interval (see `tango_interval`) and the p-value is
    the exact McNemar test (see `mcnemar_p`).
    """
    a = _as_correct(a_correct, "a_correct")
    b = _as_correct(b_correct, "b_correct")
    if a.shape != b.shape:
        raise ValueError(f"a_correct and b_correct must score the same test images, got {a.size} and {b.size} images")
    return gain_from_counts(int((a & ~b).sum()), int((~a & b).sum()), a.size, level)


# --- the one rule for "within noise" ------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a gain is within test-set noise, its direction and a sentence with the numbers."""

    within_noise: bool
    direction: Literal["better", "worse", "tied"]
    sentence: str


def within_noise(gain: Gain) -> bool:
    """A difference is within test-set noise when its interval contains 0.

    This is the app's one rule. The exact McNemar p-value carried by the Gain is more cautious, so a
    gain whose range only just excludes 0 can still have p slightly above 1 - level.
    """
    return gain.low <= 0.0 <= gain.high


def verdict(gain: Gain, *, change: str = "distillation", pair: str = "the two students") -> Verdict:
    """Say in words whether A beat B beyond test-set noise.

    `change` names what A adds over B ("distillation helped"), `pair` names the two models
    ("the two students are about equally good here").
    """
    if within_noise(gain):
        return Verdict(True, "tied", f"{gain.text}: within test-set noise — {pair} are about equally good here.")
    if gain.gain > 0:
        return Verdict(False, "better", f"{gain.text}: {change} helped, beyond test-set noise.")
    return Verdict(False, "worse", f"{gain.text}: {change} hurt, beyond test-set noise.")


# --- sweeps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ties:
    """The best cells of a sweep and the cells statistically tied with them.

    `best` holds every cell with the highest accuracy (more than one when they are exactly equal),
    `tied` the other cells within test-set noise of a best one, `beaten` the rest; each ordered from
    the highest accuracy down. `method` is "paired" (paired test on per-image correctness) or "wilson"
    (overlapping Wilson intervals).
    """

    best: tuple[Hashable, ...]
    tied: tuple[Hashable, ...]
    beaten: tuple[Hashable, ...]
    accuracy: dict[Hashable, float]
    method: Literal["paired", "wilson"]
    sentence: str


def _cell(cell: Any, index: int) -> tuple[Hashable, np.ndarray | None, int, int]:
    """(key, correct vector or None, correct count, n) of one sweep cell."""
    if not isinstance(cell, (tuple, list)) or len(cell) != 3:
        raise ValueError(f"cells[{index}] must be a (key, correct vector or accuracy, n) triple, got {cell!r}")
    key, result, n = cell
    n = _check_int(n, f"n of cells[{index}]", 1)
    if isinstance(result, (int, float, np.floating, np.integer)) and not isinstance(result, bool):
        if not math.isfinite(result) or not 0.0 <= result <= 1.0:
            raise ValueError(f"the accuracy of cells[{index}] must be a fraction in [0, 1], got {result!r}")
        return key, None, round(result * n), n
    vector = _as_correct(result, f"the correct vector of cells[{index}]")
    if vector.size != n:
        raise ValueError(f"n of cells[{index}] must equal the length of its correct vector ({vector.size}), got {n}")
    return key, vector, int(vector.sum()), n


def best_with_ties(
    cells: Sequence[tuple[Hashable, Any, int]], level: float = DEFAULT_LEVEL, label: Callable[[Any], str] = str
) -> Ties:
    """Which cells of a sweep are the best and which are statistically tied with it.

    Each cell is (key, result, n): `result` is either the per-image correctness vector on the test
    set or the accuracy as a fraction (counted as round(accuracy × n) right answers), and n the number
    of test images. When every cell has a
    correctness vector (the same images), each cell is compared with the best by `paired_gain` and
    the `within_noise` rule. Otherwise intervals are all that is known, and a cell is tied when its
    Wilson interval overlaps a best cell's; that is a looser test, so it reports more ties.
    `label` turns a key into the text of the sentence.
    """
    if isinstance(cells, (str, bytes)) or not isinstance(cells, Sequence) or len(cells) == 0:
        raise ValueError("cells must be a non-empty list of (key, correct vector or accuracy, n) triples")
    level = _check_level(level)
    parsed = [_cell(c, i) for i, c in enumerate(cells)]
    paired = all(vector is not None for _, vector, _, _ in parsed)
    if paired and len({n for _, _, _, n in parsed}) > 1:
        raise ValueError(
            "the correct vectors of all cells must score the same test images, got lengths "
            + ", ".join(str(n) for _, _, _, n in parsed)
        )
    accuracy = {key: Fraction(correct, n) for key, _, correct, n in parsed}
    if len(accuracy) != len(parsed):
        raise ValueError("every cell must have its own key, got the same key twice")
    # Exact fractions: two cells with the same count are equal, never "best" and "second".
    top = max(accuracy.values())
    order = sorted(range(len(parsed)), key=lambda i: -accuracy[parsed[i][0]])
    leaders = [parsed[i] for i in order if accuracy[parsed[i][0]] == top]

    def tied_with_a_leader(cell) -> bool:
        _, vector, correct, n = cell
        for _, l_vector, l_correct, l_n in leaders:
            if paired:
                if within_noise(paired_gain(l_vector, vector, level)):
                    return True
            else:
                l_low, _ = wilson(l_correct, l_n, level)
                _, high = wilson(correct, n, level)
                if high >= l_low:
                    return True
        return False

    rest = [parsed[i] for i in order if accuracy[parsed[i][0]] != top]
    is_tied = [tied_with_a_leader(c) for c in rest]
    tied = [c for c, t in zip(rest, is_tied) if t]
    beaten = [c for c, t in zip(rest, is_tied) if not t]

    def named(group) -> str:
        return ", ".join(f"{label(key)} ({fmt_percent(float(accuracy[key]))})" for key, *_ in group)

    if len(parsed) == 1:
        sentence = f"Only one setting: {named(leaders)}."
    else:
        if len(leaders) == 1:
            head = f"Best: {named(leaders)}"
        else:
            head = f"Tied for best: {named(leaders)}"
        if tied:
            tail = f"; tied within noise: {named(tied)}."
        elif not beaten:
            tail = "."
        else:
            tail = "; every other setting is lower, beyond test-set noise."
        sentence = head + tail
    return Ties(
        best=tuple(c[0] for c in leaders),
        tied=tuple(c[0] for c in tied),
        beaten=tuple(c[0] for c in beaten),
        accuracy={key: float(a) for key, a in accuracy.items()},
        method="paired" if paired else "wilson",
        sentence=sentence,
    )


# --- seeds --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedSummary:
    """One result repeated over seeds: mean, sample std (ddof = 1; None for one seed), range, as fractions."""

    mean: float
    std: float | None
    n: int
    min: float
    max: float
    sentence: str


def seeds_summary(values: Sequence[float], unit: Literal["%", "points"] = "%") -> SeedSummary:
    """Mean ± std of one result (an accuracy with unit "%", a gain with unit "points") over several seeds."""
    if unit not in ("%", "points"):
        raise ValueError(f'unit must be "%" (an accuracy) or "points" (a gain), got {unit!r}')
    if isinstance(values, (str, bytes)) or not isinstance(values, (Sequence, np.ndarray, torch.Tensor)):
        raise ValueError(f"values must be a list of results, one per seed, got {type(values).__name__}")
    floats = [float(v) for v in values]
    if not floats:
        raise ValueError("values must hold at least one result, got an empty list")
    lowest = -1.0 if unit == "points" else 0.0
    if not all(math.isfinite(v) and lowest <= v <= 1.0 for v in floats):
        raise ValueError(f"values must be fractions in [{lowest:g}, 1] (0.964 for 96.4 %), got {floats}")
    n = len(floats)
    mean = statistics.fmean(floats)
    std = statistics.stdev(floats) if n > 1 else None
    if unit == "%":
        shown = f"{100 * mean:.2f}".replace("-", MINUS)
        suffix = " %"
    else:
        shown = _signed(100 * mean, 2)
        suffix = " points"
    if std is None:
        sentence = f"{shown}{suffix} from 1 seed (repeat with more seeds to see how much it moves)"
    else:
        sentence = f"{shown} ± {100 * std:.2f}{suffix} over {n} seeds"
    return SeedSummary(mean, std, n, min(floats), max(floats), sentence)
