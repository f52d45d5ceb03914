"""Shareable links: a RunConfig to and from URL query parameters, with bad values clamped or dropped and said so."""

from __future__ import annotations

import math
from collections.abc import Mapping

from . import data as kdata
from . import models, teachers
from .experiments import RunConfig, default_config

# The ranges the app's controls offer; a link outside them is clamped into them.
TEMPERATURE_RANGE = (1.0, 20.0)
EPOCH_RANGE = (1, 100)
SEED_RANGE = (0, 10_000)
FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

PARAMS = ("dataset", "teachers", "student", "T", "alpha", "epochs", "fraction", "seed")


def config_to_params(cfg: RunConfig) -> dict[str, str]:
    return {
        "dataset": cfg.dataset,
        "teachers": ",".join(cfg.teachers),
        "student": cfg.student,
        "T": f"{cfg.temperature:g}",
        "alpha": f"{cfg.alpha:g}",
        "epochs": str(cfg.epochs),
        "fraction": f"{cfg.fraction:g}",
        "seed": str(cfg.seed),
    }


def _number(text: str, name: str, warnings: list[str]) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        warnings.append(f"The link's {name}={text!r} is not a number; it was ignored.")
        return None
    return value


def _clamp(value: float, low: float, high: float, name: str, text: str, warnings: list[str]) -> float:
    clamped = min(max(value, low), high)
    if clamped != value:
        warnings.append(f"The link's {name}={text} is outside {low:g} to {high:g}; {clamped:g} is used instead.")
    return clamped


def config_from_params(params: Mapping[str, str]) -> tuple[RunConfig, list[str]]:
    """The configuration a link describes, on top of its dataset's preset, and a warning per value changed."""
    warnings: list[str] = []
    dataset = params.get("dataset", "mnist-sample")
    if dataset not in kdata.DATASETS:
        warnings.append(
            f"The link's dataset {dataset!r} is unknown (choose from {', '.join(kdata.DATASETS)}); "
            "mnist-sample is used instead."
        )
        dataset = "mnist-sample"
    base = default_config(dataset)
    values: dict = {}
    if "teachers" in params:
        try:
            values["teachers"] = tuple(m.name for m in teachers.parse_members(params["teachers"]))
        except ValueError as exc:
            warnings.append(f"The link's teachers were ignored: {exc}")
    if "student" in params:
        students = [s.name for s in models.available("student")]
        if params["student"] in students:
            values["student"] = params["student"]
        else:
            warnings.append(
                f"The link's student {params['student']!r} is unknown (choose from {', '.join(students)}); "
                f"{base.student} is used instead."
            )
    for key, field_, (low, high), whole in (
        ("T", "temperature", TEMPERATURE_RANGE, False),
        ("alpha", "alpha", (0.0, 1.0), False),
        ("epochs", "epochs", EPOCH_RANGE, True),
        ("seed", "seed", SEED_RANGE, True),
    ):
        if key in params:
            value = _number(params[key], key, warnings)
            if value is not None:
                value = _clamp(round(value) if whole else value, low, high, key, params[key], warnings)
                values[field_] = int(value) if whole else float(value)
    if "fraction" in params:
        value = _number(params["fraction"], "fraction", warnings)
        if value is not None:
            nearest = min(FRACTIONS, key=lambda f: abs(f - value))
            if not math.isclose(nearest, value):
                warnings.append(
                    f"The link's fraction={params['fraction']} is not one of the offered fractions; "
                    f"{nearest:g} is used instead."
                )
            values["fraction"] = nearest
    unknown = sorted(set(params) - set(PARAMS) - {"page"})
    if unknown:
        warnings.append(f"The link's unknown parameters {', '.join(unknown)} were ignored.")
    return RunConfig(**{**base.to_dict(), "teachers": base.teachers, **values}), warnings
