"""Plain words and tables for settings, runs and saved records: what the pages say about them, in one place.

Each function turns kdcore objects (a RunConfig, a finished job, a saved run, a study's result) into the text
or the rows a page shows, so the pages only draw and the wording is tested here. Nothing here trains or measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from . import data as kdata
from . import jobs, methods
from .events import format_seconds
from .experiments import METHOD_FIELDS, RunConfig, TeachersResult
from .models import NUM_CLASSES

# The settings a run is made of, as a sentence names them ("T", "α"); the order is the sidebar's.
FIELD_WORDS = {
    "dataset": "dataset",
    "teachers": "teachers",
    "student": "student",
    "temperature": "T",
    "alpha": "α",
    "epochs": "epochs",
    "fraction": "data fraction",
    "seed": "seed",
    "method": "method",
    "alpha_tc": "α_tc",
    "beta_nc": "β_nc",
    "assistant": "assistant",
    "generations": "generations",
    "augment": "consistent augmentation",
}
KIND_LABELS = {
    "distill": "Distillation",
    "sweep": "T × α sweep",
    "fraction": "Less data",
    "missing-class": "Missing class",
    "capacity": "Student capacity",
}
# How the History page names store.SORT_KEYS.
SORT_LABELS = {
    "created": "Date saved",
    "id": "Run number",
    "kind": "Kind",
    "dataset": "Dataset",
    "partial": "Stopped early",
    "kd_gain": "KD gain",
    "scratch_acc": "Scratch accuracy",
    "distilled_acc": "Distilled accuracy",
    "student": "Student",
    "temperature": "Temperature T",
    "alpha": "Weight α",
    "epochs": "Epochs",
}
STATE_WORDS = {
    jobs.JobState.QUEUED: "queued",
    jobs.JobState.RUNNING: "running",
    jobs.JobState.FAILED: "failed",
    jobs.JobState.CANCELLED: "stopped",
    jobs.JobState.DONE: "done",
}
_CLASS_NAMES = {
    "mnist-sample": kdata.MNIST_CLASSES,
    "mnist": kdata.MNIST_CLASSES,
    "fashion-mnist": kdata.FASHION_CLASSES,
    "cifar10": kdata.CIFAR_CLASSES,
}


def plural(n: int, word: str) -> str:
    """ "1 epoch", "3 epochs"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def share(fraction: float) -> str:
    """A share of the training data as "5 %", "0.5 %", "100 %"."""
    return f"{fraction * 100:g} %"


def params(n: int) -> str:
    """A parameter count at a glance: "850", "85.0 k", "1.23 M"."""
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def class_names(dataset: str) -> tuple[str, ...]:
    """The class names of a dataset without loading it (digits for a dataset this module does not know)."""
    return _CLASS_NAMES.get(dataset, tuple(str(i) for i in range(NUM_CLASSES)))


def config_summary(cfg: RunConfig, skip: Sequence[str] = ()) -> str:
    """A run's settings in one line, leaving out those in `skip` (the ones a study varies itself)."""
    parts = {
        "student": f"student {cfg.student}",
        "temperature": f"T = {cfg.temperature:g}",
        "alpha": "" if cfg.method == "dkd" else f"α = {cfg.alpha:g}",  # DKD weights its parts with α_tc, β_nc
        "epochs": plural(cfg.epochs, "epoch"),
        "fraction": f"{cfg.fraction:.0%} of the training images",
        "teachers": f"teachers {' + '.join(cfg.teachers)}",
        "seed": f"seed {cfg.seed}",
        "method": methods.method_text(cfg),
        "augment": methods.AUGMENT_LABEL.lower() if cfg.augment else "",
    }
    unknown = set(skip) - set(parts)
    if unknown:
        raise ValueError(f"skip must name settings among {', '.join(parts)}; got {', '.join(sorted(unknown))}")
    return f"{cfg.dataset}, " + ", ".join(text for field, text in parts.items() if text and field not in skip)


def changed_settings(run: RunConfig, now: RunConfig) -> list[str]:
    """The settings (as FIELD_WORDS names them) that differ between a run's configuration and the current one.

    A method's own settings count only where one of the two uses them (a "kd" run has no β_nc to change)."""
    used = set(METHOD_FIELDS[run.method]) | set(METHOD_FIELDS[now.method])
    own = {f for fields in METHOD_FIELDS.values() for f in fields}
    return [
        word
        for field, word in FIELD_WORDS.items()
        if (field not in own or field in used) and getattr(run, field) != getattr(now, field)
    ]


def bias_fix_sentence(snap: dict) -> str:
    """What the missing-class study's bias fix did, from its result's `to_json()`."""
    if not snap.get("bias_fix"):
        return "**Bias fix:** switched off for this run."
    if snap.get("bias_value") is None:
        return "**Bias fix:** applied once the distilled student has finished."
    name = snap["class_name"]
    origin = (
        "the value you set" if snap["bias_rule"] == "given" else f"chosen on the training images: {snap['bias_rule']}"
    )
    return (
        f"**Bias fix:** the distilled student's output bias for class {name} was raised by "
        f"**{snap['bias_value']:.2f}** ({origin}). Share of training images it predicts as {name}: "
        f"{100 * snap['share_before']:.1f} % before, {100 * snap['share_after']:.1f} % after; the teacher "
        f"predicts {100 * snap['teacher_share']:.1f} %."
    )


def student_vs_ensemble(result) -> tuple[str | None, str | None]:
    """How many times smaller and faster the distilled student is than the teacher ensemble: ("12× smaller",
    "24× faster"); None for what was not measured."""
    d, t = result.row("distilled"), result.row("ensemble")
    if d is None or t is None or not t.params or not d.params:
        return None, None
    faster = f"{t.latency_ms_b1 / d.latency_ms_b1:.0f}× faster" if t.latency_ms_b1 and d.latency_ms_b1 else None
    return f"{t.params / d.params:.0f}× smaller", faster


def _points(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


def session_runs(runs: Sequence[jobs.Job]) -> pd.DataFrame:
    """One row per distillation job of a session: its settings, both students' accuracy, the gain and its state."""
    rows = []
    for job in runs:
        result = job.result(timeout=0) if job.state in (jobs.JobState.DONE, jobs.JobState.CANCELLED) else None
        cfg = job.config
        state = "partial" if result is not None and result.partial else STATE_WORDS[job.state]

        def acc(role: str, result=result) -> float | None:
            row = None if result is None else result.row(role)
            return None if row is None else _points(row.accuracy)

        rows.append(
            {
                "Run": None if result is None else result.run_id,
                "Started": datetime.fromtimestamp(job.created).strftime("%H:%M:%S"),
                "Student": cfg.student if cfg else "?",
                "Method": methods.label(cfg.method) if cfg else "?",
                "T": cfg.temperature if cfg else None,
                "α": cfg.alpha if cfg else None,
                "Epochs": cfg.epochs if cfg else None,
                "Data": f"{cfg.fraction:.0%}" if cfg else "?",
                "Scratch (%)": acc("scratch"),
                "Distilled (%)": acc("distilled"),
                "KD gain (points)": None if result is None else _points(result.kd_gain),
                "Status": state,
            }
        )
    return pd.DataFrame(rows)


# ---- teachers ----------------------------------------------------------------------------------------------


def teachers_table(result: TeachersResult) -> pd.DataFrame:
    """Each member and the ensemble: accuracy, size, speed and whether it was trained now or loaded."""
    source = {
        name: "loaded from cache" if cached else f"trained in {format_seconds(result.train_seconds[name])}"
        for name, cached in result.cached.items()
    }
    members = len(result.cached)
    return pd.DataFrame(
        [
            {
                "Model": r.name if r.role == "teacher" or members == 1 else f"Ensemble of {members}",
                "Role": "Teacher ensemble" if r.role == "ensemble" else "Teacher",
                "Test accuracy (%)": 100 * r.accuracy,
                "Parameters": r.params,
                "Size (MB)": r.size_bytes / 1e6,
                "Latency (ms / image)": r.latency_ms_b1,
                "Throughput (images / s)": None if r.throughput_b256 is None else round(r.throughput_b256),
                "Source": source.get(r.name, "members combined"),
            }
            for r in result.rows
        ]
    )


def teachers_summary(rows) -> str:
    """The ensemble's accuracy against its best member's (a gap under 0.05 points is "the same") and its cost."""
    ens = next(r for r in rows if r.role == "ensemble")
    members = [r for r in rows if r.role == "teacher"]
    cost = f"{params(ens.params)} parameters, {ens.latency_ms_b1:.1f} ms per image"
    if not members:
        return (
            f"This single teacher reaches **{100 * ens.accuracy:.1f} %** with {cost}. "
            "Add more members in the sidebar to build an ensemble."
        )
    best = max(members, key=lambda r: r.accuracy)
    gap = 100 * (ens.accuracy - best.accuracy)
    relation = (
        f"{gap:.1f} points above its best member ({best.name})"
        if gap > 0.05
        else f"{-gap:.1f} points below its best member ({best.name})"
        if gap < -0.05
        else f"the same as its best member ({best.name})"
    )
    return f"The ensemble reaches **{100 * ens.accuracy:.1f} %**, {relation}, and costs the sum of its members: {cost}."


# ---- saved runs (History) ----------------------------------------------------------------------------------


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def when(created: float) -> str:
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _num(x, fmt: str = "{:g}") -> str:
    return "–" if x is None else fmt.format(x)


def file_size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def _duration(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 90 else f"{int(s // 60)} min {int(s % 60):02d} s"


def saved_runs_table(runs) -> pd.DataFrame:
    """The History table: one row per saved run (store.RunSummary), accuracies and gain in points."""
    return pd.DataFrame(
        [
            {
                "Run": s.id,
                "Saved": when(s.created),
                "Kind": kind_label(s.kind),
                "Dataset": s.dataset,
                "Student": s.student,
                "T": s.temperature,
                "α": s.alpha,
                "Epochs": s.epochs,
                "Scratch (%)": _points(s.scratch_acc),
                "Distilled (%)": _points(s.distilled_acc),
                "KD gain (points)": _points(s.kd_gain),
                "Partial": s.partial,
            }
            for s in runs
        ]
    )


def saved_settings(rec) -> dict[str, str]:
    """What one saved run (store.RunRecord) was, as text for a side-by-side table."""
    c = rec.config
    teachers = c.get("teachers")
    return {
        "Kind": kind_label(rec.kind),
        "Saved": when(rec.created),
        "Dataset": rec.dataset,
        "Teachers": " + ".join(teachers) if isinstance(teachers, list) else _num(teachers, "{}"),
        "Student": _num(c.get("student"), "{}"),
        "Temperature T": _num(c.get("temperature")),
        "Weight α": _num(c.get("alpha")),
        "Epochs": _num(c.get("epochs")),
        "Data fraction": _num(c.get("fraction"), "{:.0%}"),
        "Seed": _num(c.get("seed")),
    }


def saved_results(rec) -> dict[str, str]:
    """How one saved run scored, as text for a side-by-side table (studies keep some numbers at the top level)."""
    m = rec.metrics
    d, s, t = rec.row("distilled") or {}, rec.row("scratch") or {}, rec.row("ensemble") or {}
    gain, latency = m.get("kd_gain"), d.get("latency_ms_b1")
    return {
        "Status": "stopped early (partial)" if rec.partial else "finished",
        "Teacher ensemble accuracy": _pct(t.get("accuracy", m.get("teacher_acc"))),
        "Scratch accuracy": _pct(s.get("accuracy", m.get("scratch_acc"))),
        "Distilled accuracy": _pct(d.get("accuracy", m.get("distilled_acc"))),
        "KD gain": "–" if gain is None else f"{100 * gain:+.2f} points",
        "Student parameters": _num(d.get("params"), "{:,}"),
        "Student size": file_size(d.get("size_bytes")),
        "Student latency (1 image)": "–" if latency is None else f"{latency:.3f} ms",
        "Agreement with the teacher": _pct(d.get("agreement")),
        "Calibration error (ECE)": _num(d.get("ece"), "{:.3f}"),
        "Run time": _duration(m.get("seconds")),
    }


def deletion_question(run_ids: Sequence[int]) -> str:
    """What deleting these saved runs does, asked before it is done."""
    many = len(run_ids) > 1
    return (
        f"Delete run{'s' if many else ''} **{', '.join(map(str, sorted(run_ids)))}** and "
        f"{'their saved students' if many else 'its saved student'}? This cannot be undone."
    )


def deletion_done(count: int) -> str:
    """What was deleted, said afterwards."""
    files = "their saved student files" if count != 1 else "its saved student file"
    return f"Deleted {plural(count, 'run')} and {files}."
