"""The distillation methods as the app shows them: their names in words, one line on what each does, the
settings that belong to each, and the rows the Distill page's method charts draw (DKD's two loss parts per
epoch, and the born-again students' test accuracy per generation).

The methods themselves (their losses and training) are kdcore.experiments'; this module only describes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import data as kdata
from . import events as ev
from .experiments import AUGMENT_METHODS, RunConfig, RunResult, generation_name
from .limits import METHODS

# The method names the sidebar offers and the glossary defines (by these very words).
LABELS = {
    "kd": "Hinton KD (2015)",
    "dkd": "Decoupled KD (DKD)",
    "ta": "Teacher assistant",
    "self": "Self-distillation (born-again)",
}
SUMMARIES = {
    "kd": "The student matches the ensemble's soft targets at T, weighted by α against the labels.",
    "dkd": "The soft loss split in two: the target-class part (TCKD) weighted by α_tc and the non-target part "
    "(NCKD, the dark knowledge) by β_nc; α is not used.",
    "ta": "The ensemble teaches a larger assistant first, which then teaches the student (both with T and α).",
    "self": "The student's own previous generation is its teacher: generation 0 is the scratch student, and each "
    "next one learns from the one before (with T and α).",
}
AUGMENT_LABEL = "Consistent augmentation"
# DKD's loss parts as the Trainer reports them in Epoch.parts (kdcore.losses.DKDLoss), and how charts name them.
PARTS = {"tckd": "TCKD (target class)", "nckd": "NCKD (non-target classes)"}


def label(method: str) -> str:
    """A method's name in words: "dkd" -> "Decoupled KD (DKD)"."""
    if method not in LABELS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return LABELS[method]


def augment_offered(dataset: str) -> bool:
    """Whether the dataset has the fixed augmented views consistent teaching needs (kdcore.data.VIEWS)."""
    return dataset in kdata.VIEWS


def augment_conflict(method: str) -> str:
    """Why consistent augmentation is off for this method, or "" where it works."""
    if method in AUGMENT_METHODS:
        return ""
    works = " and ".join(LABELS[m] for m in AUGMENT_METHODS)
    return (
        f"{AUGMENT_LABEL} works with {works} only (their teacher is the ensemble, whose answers for every "
        f"augmented view are cached), so it is off for {LABELS[method]}."
    )


def settings_text(cfg: RunConfig) -> str:
    """The settings the distilled student learned with: "T=4, α=0.5", "DKD, T=4, α_tc=1, β_nc=0.5", …"""
    if cfg.method == "dkd":
        return f"DKD, T={cfg.temperature:g}, α_tc={cfg.alpha_tc:g}, β_nc={cfg.nckd_weight:g}"
    common = f"T={cfg.temperature:g}, α={cfg.alpha:g}"
    if cfg.method == "ta":
        return f"via assistant {cfg.assistant_arch}, {common}"
    if cfg.method == "self":
        return f"born-again, {cfg.generations} generation{'s' if cfg.generations > 1 else ''}, {common}"
    return common


def method_text(cfg: RunConfig) -> str:
    """The method and its own settings in words, for a run's one-line summary; "" for Hinton KD."""
    if cfg.method == "kd":
        return ""
    own = {
        "dkd": f"α_tc = {cfg.alpha_tc:g}, β_nc = {cfg.nckd_weight:g}",
        "ta": f"assistant {cfg.assistant_arch}",
        "self": f"{cfg.generations} born-again generation{'s' if cfg.generations > 1 else ''}",
    }[cfg.method]
    return f"{LABELS[cfg.method]} ({own})"


def chain_caption(cfg: RunConfig) -> str:
    """One line on the teacher assistant's chain, for a "ta" run."""
    return (
        f"Chain: teacher ensemble → assistant {cfg.assistant_arch} → student {cfg.student}. The assistant learns "
        "from the ensemble; the distilled student learns only from the assistant (the scratch one from the labels)."
    )


def loss_parts(curves: Mapping[str, Sequence[ev.Step | ev.Epoch]], model: str = "distilled") -> dict[str, list]:
    """DKD's two loss parts of one student per finished epoch: {"tckd": [(epoch, value), …], "nckd": […]}.

    Empty lists when the student's epochs carry no parts (any method but "dkd", or before its first epoch).
    """
    rows: dict[str, list] = {part: [] for part in PARTS}
    for e in curves.get(model, ()):
        if isinstance(e, ev.Epoch) and e.parts:
            for part in PARTS:
                if part in e.parts:
                    rows[part].append((e.epoch, float(e.parts[part])))
    return rows


@dataclass(frozen=True)
class GenerationRow:
    """One born-again generation's test accuracy; generation 0 is the scratch student."""

    generation: int
    name: str  # "scratch", "generation 1", …
    accuracy: float
    distilled: bool  # the last finished generation, which the run calls its distilled student


def generation_rows(result: RunResult) -> list[GenerationRow]:
    """The test accuracy of every finished generation of a "self" run, generation 0 first; [] for other methods."""
    accs = result.generations or []
    return [
        GenerationRow(k, generation_name(k), float(acc), k == len(accs) - 1 and k > 0) for k, acc in enumerate(accs)
    ]


def generations_reading(result: RunResult) -> str:
    """One sentence on the born-again chart: did each generation beat the one before, and the ensemble?"""
    rows = generation_rows(result)
    if len(rows) < 2:
        return ""
    steps = [b.accuracy - a.accuracy for a, b in zip(rows, rows[1:])]
    trend = (
        "each generation beat the one before"
        if all(s > 0 for s in steps)
        else "no generation beat the one before"
        if all(s <= 0 for s in steps)
        else "the generations went up and down"
    )
    last, ensemble = rows[-1], result.row("ensemble")
    gap = "" if ensemble is None else f"; the teacher ensemble reaches {100 * ensemble.accuracy:.1f} %"
    return (
        f"From {100 * rows[0].accuracy:.1f} % (generation 0, scratch) to {100 * last.accuracy:.1f} % (generation "
        f"{last.generation}): {trend}{gap}."
    )
