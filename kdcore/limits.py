"""Every limit on what a user may ask for, defined and checked in one place.

The engine's limits (what `RunConfig`, the CLI and the studies accept) and the narrower ranges the
app's controls and shared links offer live here, each with the one function that checks it. The
messages name the argument and the allowed values, so the CLI, a shared link and a page all say the
same thing about the same mistake.
"""

from __future__ import annotations

import math
import numbers

# Engine limits.
EPOCHS = (1, 500)
SEEDS = (0, 2**32 - 1)  # what torch.manual_seed and numpy's generators accept on every platform
# Below T = 0.1 the soft targets are the teacher's top class alone (no dark knowledge is left), and as T
# shrinks further the soft loss's gradient, about T times the usual one, vanishes: at T = 1e-30 a
# student taught by the teacher alone stays at chance. Above 100 they are uniform to float precision.
TEMPERATURES = (0.1, 100.0)
MAX_TEACHERS = 5
# Distillation methods (kdcore.experiments.distill): Hinton's KD, decoupled KD (Zhao et al. 2022), a teacher
# assistant (Mirzadeh et al. 2020) and born-again self-distillation (Furlanello et al. 2018).
METHODS = ("kd", "dkd", "ta", "self")
# DKD's weights (alpha_tc, beta_nc, and the cross-entropy's): the paper uses 0.5 to 8; far above 100 the soft
# loss, already multiplied by T^2, swamps the labels and blows up.
DKD_WEIGHTS = (0.0, 100.0)
# Born-again generations after generation 0 (the scratch student): each one trains a student more.
GENERATIONS = (1, 3)

# What the app's controls (and so a shared link) offer.
UI_TEMPERATURES = (1.0, 20.0)
UI_TEMPERATURE_STEP = 0.5
UI_EPOCHS = (1, 100)
UI_SEEDS = (0, 10_000)
UI_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# DKD's alpha_tc and beta_nc sliders: the paper's values (0.5 to 8) and mnist-sample's measured 0.5, in steps.
UI_DKD_WEIGHTS = (0.0, 10.0)
UI_DKD_STEP = 0.25


def _whole(value, name: str, low: int, high: int, hint: str = "") -> int:
    """value as an int in [low, high], or a ValueError naming `name` and the range."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and float(value) == int(value) and low <= int(value) <= high:
        return int(value)
    raise ValueError(f"{name} must be a whole number from {low:,} to {high:,}{hint}, got {value!r}")


def check_epochs(value, name: str = "epochs") -> int:
    return _whole(value, name, *EPOCHS)


def check_seed(value, name: str = "seed") -> int:
    return _whole(value, name, *SEEDS)


def check_temperature(temperature) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    low, high = TEMPERATURES
    if not low <= t <= high:  # also false for NaN
        raise ValueError(
            f"temperature must be a number from {low:g} to {high:g} (1 to 20 is usual), got {temperature!r}; "
            f"below {low:g} the soft targets are one-hot (no dark knowledge left) and their gradient vanishes"
        )
    return t


def check_alpha(alpha) -> float:
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        a = math.nan
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (0 = labels only, 1 = teacher only), got {alpha!r}")
    return a


def check_weight(value, name: str) -> float:
    """A DKD loss weight: a number from 0 to 100."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    low, high = DKD_WEIGHTS
    if ok and low <= float(value) <= high:
        return float(value)
    raise ValueError(
        f"{name} must be a number from {low:g} to {high:g} (a DKD loss weight, e.g. 1 or 8), got {value!r}"
    )


def check_method(value) -> str:
    if value not in METHODS:
        raise ValueError(
            f"method must be one of {', '.join(repr(m) for m in METHODS)} (KD, decoupled KD, teacher assistant, "
            f"self-distillation), got {shorten(str(value)) if isinstance(value, str) else repr(value)}"
        )
    return value


def check_generations(value) -> int:
    return _whole(value, "generations", *GENERATIONS, " (born-again students after the scratch one)")


def check_fraction(fraction, name: str = "fraction") -> float:
    try:
        f = float(fraction)
    except (TypeError, ValueError):
        f = math.nan
    if not 0.0 < f <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (a share of the training set, e.g. 0.05), got {fraction!r}")
    return f


def shorten(text: str, limit: int = 40) -> str:
    """repr(text) cut to a readable length, for messages that quote what a user typed."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else f"{quoted[: limit - 5]}…' ({len(text):,} characters)"
