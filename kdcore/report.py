"""A session's distillation results as one comparison table, its Pareto front, a plain-words summary and downloads.

Teachers and ensembles are shared by every run that used them, so they appear once; each run adds
its scratch and distilled student. Speed-up and compression are measured against the ensemble the
row's run (or teacher) belongs to, so rows from different datasets or ensembles never mix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
from safetensors.torch import save
from torch import nn

from . import methods
from .experiments import RunConfig, RunResult

MODEL, ROLE, DATASET, RUN = "Model", "Role", "Dataset", "Run"
ACCURACY, PARAMS, SIZE = "Accuracy (%)", "Params", "Size (MB)"
LATENCY, THROUGHPUT = "Latency b=1 (ms)", "Throughput b=256 (img/s)"
SPEEDUP, COMPRESSION = "Speed-up vs ensemble (×)", "Compression vs ensemble (×)"
AGREEMENT, ECE, PARTIAL = "Agreement with teacher (%)", "ECE", "Partial"
COLUMNS = [
    MODEL,
    ROLE,
    DATASET,
    RUN,
    ACCURACY,
    PARAMS,
    SIZE,
    LATENCY,
    THROUGHPUT,
    SPEEDUP,
    COMPRESSION,
    AGREEMENT,
    ECE,
    PARTIAL,
]
STUDENT_ROLES = ("scratch", "distilled")
# Rows a run's method adds between the ensemble and its students: the teacher assistant ("ta") and the
# born-again generations before the last ("self"), each labelled as such.
METHOD_ROLES = ("assistant", "generation")
SINGLE_TEACHER_PREFIX = "teacher "


def _num(x) -> float:
    return math.nan if x is None else float(x)


def _pct(x) -> float:
    return math.nan if x is None else 100.0 * float(x)


def _ensemble_key(cfg: RunConfig) -> tuple:
    # Everything that decides which teachers were trained and how their outputs were combined.
    return cfg.dataset, cfg.teachers, cfg.teacher_epochs, cfg.combine


def run_label(index: int, result: RunResult, role: str) -> str:
    """ "run 2: distilled mlp-small (T=4, α=0.9)" — the scratch student has no T or α to show; another method
    names itself ("run 3: distilled mlp-small (DKD, T=4, α_tc=1, β_nc=0.5)")."""
    cfg = result.config
    if role == "distilled":
        return f"run {index}: distilled {cfg.student} ({methods.settings_text(cfg)})"
    return f"run {index}: scratch {cfg.student} (no teacher)"


def _method_label(index: int, result: RunResult, name: str, role: str) -> str:
    """ "run 2: teacher assistant mlp-wide (from the ensemble, T=4, α=0.5)", "run 3: generation 1 mlp-small …"."""
    cfg = result.config
    if role == "assistant":
        return (
            f"run {index}: teacher assistant {cfg.assistant_arch} "
            f"(from the ensemble, T={cfg.temperature:g}, α={cfg.alpha:g})"
        )
    return f"run {index}: born-again {name.removesuffix(f' ({cfg.student})')} {cfg.student} (T={cfg.temperature:g})"


def _ensemble_label(cfg: RunConfig) -> str:
    if len(cfg.teachers) == 1:
        return SINGLE_TEACHER_PREFIX + cfg.teachers[0]
    return f"ensemble of {len(cfg.teachers)} ({' + '.join(cfg.teachers)})"


def _record(model, role, dataset, runs, row, partial) -> dict:
    return {
        MODEL: model,
        ROLE: role,
        DATASET: dataset,
        RUN: runs,
        ACCURACY: _pct(row.accuracy),
        PARAMS: int(row.params),
        SIZE: row.size_bytes / 1e6,
        LATENCY: _num(row.latency_ms_b1),
        THROUGHPUT: _num(row.throughput_b256),
        AGREEMENT: _pct(row.agreement),
        ECE: _num(row.ece),
        PARTIAL: bool(partial),
    }


def run_table(result: RunResult) -> pd.DataFrame:
    """One run's models as comparison_table lists them, without the "run N: " before each name: a page
    showing one run names it once, above the table."""
    table = comparison_table([result])
    table[MODEL] = table[MODEL].str.replace(r"^run \d+: ", "", regex=True)
    return table


def comparison_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Every model of the given runs (oldest first) in one table with the COLUMNS above.

    A run is numbered by its run-history id, as on every page; a run never saved by its place in `results`.
    """
    records: list[dict] = []
    group_of: list[tuple] = []  # ensemble key per record, for the relative columns
    runs_of: dict[tuple, list[int]] = {}  # teacher / ensemble identity -> runs that used it
    index_of: dict[tuple, int] = {}
    ensemble_of: dict[tuple, int] = {}  # ensemble key -> index of its record

    def add_shared(identity, group, make):
        if identity in index_of:
            runs_of[identity].append(run)
            return
        index_of[identity] = len(records)
        runs_of[identity] = [run]
        records.append(make())
        group_of.append(group)

    for place, result in enumerate(results, start=1):
        run = result.run_id if result.run_id is not None else place
        cfg = result.config
        group = _ensemble_key(cfg)
        for row in result.rows:
            if row.role == "teacher":
                # A member trained the same way is the same model whichever ensemble it joined.
                identity = ("teacher", cfg.dataset, row.name, cfg.teacher_epochs)
                add_shared(
                    identity,
                    group,
                    lambda row=row, cfg=cfg: _record(f"teacher {row.name}", "teacher", cfg.dataset, "", row, False),
                )
            elif row.role == "ensemble":
                identity = ("ensemble",) + group
                add_shared(
                    identity,
                    group,
                    lambda row=row, cfg=cfg: _record(_ensemble_label(cfg), "ensemble", cfg.dataset, "", row, False),
                )
                ensemble_of.setdefault(group, index_of[identity])
        for row in result.rows:
            if row.role in METHOD_ROLES:
                label = _method_label(run, result, row.name, row.role)
                records.append(_record(label, row.role, cfg.dataset, str(run), row, result.partial))
                group_of.append(group)
        for role in STUDENT_ROLES:
            row = result.row(role)
            if row is not None:
                records.append(_record(run_label(run, result, role), role, cfg.dataset, str(run), row, result.partial))
                group_of.append(group)

    for identity, i in index_of.items():
        records[i][RUN] = ", ".join(str(r) for r in runs_of[identity])
    for rec, group in zip(records, group_of):
        ens = records[ensemble_of[group]] if group in ensemble_of else None
        rec[SPEEDUP] = _ratio(ens[LATENCY] if ens else math.nan, rec[LATENCY])
        rec[COMPRESSION] = _ratio(ens[PARAMS] if ens else math.nan, rec[PARAMS])
    return pd.DataFrame(records, columns=COLUMNS).astype({PARTIAL: bool})


def _ratio(num: float, den: float) -> float:
    if num is None or den is None or math.isnan(num) or math.isnan(den) or den <= 0:
        return math.nan
    return num / den


def pareto_front(df: pd.DataFrame, x: str = LATENCY, y: str = ACCURACY) -> pd.Series:
    """True for rows no other row beats: none has x lower-or-equal and y higher-or-equal, strictly better in one.

    Rows missing x or y are never on the front (they cannot be placed on the chart).
    """
    for col in (x, y):
        if col not in df.columns:
            raise ValueError(f"column {col!r} is not in the table; columns are: {', '.join(map(str, df.columns))}")
    xs, ys = df[x].astype(float).to_numpy(), df[y].astype(float).to_numpy()
    valid = ~(pd.isna(xs) | pd.isna(ys))
    front = []
    for i in range(len(df)):
        if not valid[i]:
            front.append(False)
            continue
        dominated = any(
            valid[j] and xs[j] <= xs[i] and ys[j] >= ys[i] and (xs[j] < xs[i] or ys[j] > ys[i]) for j in range(len(df))
        )
        front.append(not dominated)
    return pd.Series(front, index=df.index, dtype=bool, name="Pareto front")


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def student_weights_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """The state dict as .safetensors bytes (tensors copied to contiguous CPU memory, as the format requires)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    return save(tensors, metadata=metadata)


def weights_filename(result: RunResult, role: str) -> str:
    """ "kd-mnist-sample-distilled-mlp-small-T4-a0.9-seed0.safetensors"; "-partial" marks a stopped run."""
    if role not in STUDENT_ROLES:
        raise ValueError(f"role must be one of {', '.join(STUDENT_ROLES)}, got {role!r}")
    cfg = result.config
    parts = ["kd", cfg.dataset, role, cfg.student]
    if role == "distilled":
        parts += [f"T{cfg.temperature:g}", f"a{cfg.alpha:g}"]
    parts.append(f"seed{cfg.seed}")
    if result.partial:
        parts.append("partial")
    return "-".join(parts) + ".safetensors"


def _times(x: float, more: str, less: str) -> str | None:
    if x is None or math.isnan(x) or x <= 0:
        return None
    if x < 1:
        x, more = 1 / x, less
    return f"{x:.0f}× {more}" if x >= 10 else f"{x:.1f}× {more}"


def against_teachers(result: RunResult) -> str:
    """The distilled student's size and speed against the ensemble and against its best single member."""
    d = result.row("distilled")
    if d is None:
        return ""

    def versus(other) -> str:
        claims = [_times(other.params / d.params, "smaller", "larger")]
        if other.latency_ms_b1 and d.latency_ms_b1:
            claims.append(_times(other.latency_ms_b1 / d.latency_ms_b1, "faster", "slower"))
        return " and ".join(c for c in claims if c)

    members = [r for r in result.rows if r.role == "teacher"]
    ensemble = result.row("ensemble")
    parts = []
    if ensemble is not None:
        parts.append(f"The distilled student is {versus(ensemble)} than the teacher ensemble")
    if members:
        best = max(members, key=lambda r: r.accuracy)
        parts.append(f"{versus(best)} than its best single teacher, {best.name} ({best.accuracy * 100:.1f} %)")
    return "; ".join(parts) + "." if parts else ""


def loss_notes(result: RunResult) -> list[str]:
    """What to notice on the training-loss chart, in plain words with this run's numbers.

    Two things there look like bugs and are lessons: the scratch student's soft loss (how far it is from
    the teacher's soft targets, which it never trains on) can grow while it learns the labels, and the
    distilled student can end with a higher hard loss than the scratch one although it is more accurate,
    because part of its effort goes into matching the teacher rather than the labels.
    """
    scratch, distilled = result.curves.get("scratch", []), result.curves.get("distilled", [])
    notes = []
    soft = [e.soft for e in scratch if e.soft is not None]
    if len(soft) >= 2:
        trend = "rose" if soft[-1] > soft[0] else "fell"
        notes.append(
            f"The scratch student's soft loss {trend} from {soft[0]:.2f} to {soft[-1]:.2f}: it never trains on the "
            "teacher's soft targets, so this only measures how far it drifts from them while it learns the labels."
        )
    if scratch and distilled:
        s, d = scratch[-1], distilled[-1]
        if d.hard > s.hard:
            better = (
                "yet it is the more accurate one" if d.test_acc > s.test_acc else "and here it is not more accurate"
            )
            notes.append(
                f"The distilled student ends with the higher hard loss ({d.hard:.3f} against {s.hard:.3f}), {better} "
                f"({d.test_acc * 100:.1f} % against {s.test_acc * 100:.1f} %): part of its training goes into matching "
                "the teacher's soft targets instead of the labels alone, which keeps it less sure of every label and "
                "more sensible on the ones that look alike."
            )
        else:
            notes.append(
                f"The distilled student ends with the lower hard loss ({d.hard:.3f} against {s.hard:.3f}) as well as "
                f"{'the higher' if d.test_acc > s.test_acc else 'a lower or equal'} test accuracy "
                f"({d.test_acc * 100:.1f} % against {s.test_acc * 100:.1f} %)."
            )
    return notes


def try_next(cfg: RunConfig) -> list[str]:
    """What to change next after a distillation, as markdown bullets: each one a lesson in what KD does."""
    if cfg.fraction < 1:
        data = (
            f"- Raise the **fraction** from {cfg.fraction * 100:g} % to all the training data: the gain shrinks as the "
            "labels alone take the student further, since soft targets help most when labels are scarce."
        )
    else:
        data = (
            "- Use a **smaller fraction** of the training data: the teacher's soft targets help most when "
            "labels are scarce."
        )
    return [
        "- Raise **T** to share more of the teacher's view of similar classes, or set it to 1 to see what is lost.",
        "- Set **α** to 0: the 'distilled' student then ignores the teacher — the gain should vanish.",
        data,
        "- Open **Dark knowledge** to see the soft targets, or **Compare** for size and latency.",
    ]


def summary_sentence(df: pd.DataFrame) -> str:
    """A plain-words reading of one run: its distilled student against its ensemble and its scratch twin.

    The run read is the latest one that finished (the latest stopped one if none did); empty when the
    table holds no distilled student.
    """
    students = df[df[ROLE] == "distilled"]
    if students.empty:
        return ""
    # Finished runs sort after stopped ones, then by run number, so the last row is the one to read.
    order = students.assign(_done=~students[PARTIAL].astype(bool), _run=students[RUN].astype(str).astype(int))
    d = order.sort_values(["_done", "_run"]).iloc[-1]
    run = str(d[RUN])
    ens = df[(df[ROLE] == "ensemble") & (df[DATASET] == d[DATASET])]
    ens = ens[ens[RUN].astype(str).str.split(", ").apply(lambda runs: run in runs)]
    scratch = df[(df[ROLE] == "scratch") & (df[RUN].astype(str) == run)]

    parts = []
    if not ens.empty:
        e = ens.iloc[0]
        teacher = "teacher" if str(e[MODEL]).startswith(SINGLE_TEACHER_PREFIX) else "teacher ensemble"
        claims = [c for c in (_times(d[COMPRESSION], "smaller", "larger"), _times(d[SPEEDUP], "faster", "slower")) if c]
        diff = d[ACCURACY] - e[ACCURACY]
        if abs(diff) < 0.05:
            acc = "matches its accuracy"
        elif diff < 0:
            acc = f"loses {-diff:.1f} points of accuracy"
        else:
            acc = f"gains {diff:.1f} points of accuracy"
        shape = (" and ".join(claims) + f" than the {teacher} and ") if claims else f"compared with the {teacher}, "
        parts.append(f"Run {run}: the distilled student is {shape}{acc} ({d[ACCURACY]:.1f} % vs {e[ACCURACY]:.1f} %).")
    else:
        parts.append(f"Run {run}: the distilled student reaches {d[ACCURACY]:.1f} % accuracy.")
    if not scratch.empty:
        s = scratch.iloc[0]
        gain = d[ACCURACY] - s[ACCURACY]
        verdict = (
            "so the teacher made no measurable difference"
            if abs(gain) < 0.05
            else f"so distillation adds {gain:.1f} points"
            if gain > 0
            else f"so distillation cost {-gain:.1f} points here"
        )
        parts.append(f"The same student trained without a teacher reaches {s[ACCURACY]:.1f} %, {verdict}.")
    if bool(d[PARTIAL]):
        parts.append("This run was stopped early, so its students are not fully trained.")
    return " ".join(parts)
