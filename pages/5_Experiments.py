"""Experiments page: four what-if studies of distillation (T × α sweep, less data, missing class, student size)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import streamlit as st

import ui
from kdcore import data as kdata
from kdcore import events, experiments, jobs, models, studies

st.set_page_config(page_title="Experiments · KD Playground", page_icon=":material/grid_on:", layout="wide")

ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)
UP, DOWN = "#009E73", "#D55E00"  # Okabe-Ito green and vermillion: better / worse than scratch, as on Distill
NEUTRAL, PENDING = "#F4F4F4", "#E2E2E2"
CHART_HEIGHT = 430
TEMPERATURE_CHOICES = [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 12.0, 15.0, 20.0]
ALPHA_CHOICES = [0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9, 1.0]
FRACTION_CHOICES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
CLASS_NAMES = {
    "mnist-sample": kdata.MNIST_CLASSES,
    "mnist": kdata.MNIST_CLASSES,
    "fashion-mnist": kdata.FASHION_CLASSES,
    "cifar10": kdata.CIFAR_CLASSES,
}
TABS = {
    jobs.JobKind.SWEEP: "T × α sweep",
    jobs.JobKind.FRACTION: "Less data",
    jobs.JobKind.MISSING_CLASS: "Missing class",
    jobs.JobKind.CAPACITY: "Student capacity",
}
# The sidebar settings a study varies itself, so its description leaves them out.
VARIES = {
    jobs.JobKind.SWEEP: ("temperature", "alpha"),
    jobs.JobKind.FRACTION: ("fraction",),
    jobs.JobKind.MISSING_CLASS: (),
    jobs.JobKind.CAPACITY: ("student",),
}


def _share(f: float) -> str:
    return f"{f * 100:g} %"


def epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def uses(cfg: experiments.RunConfig, skip: tuple[str, ...] = ()) -> str:
    parts = {
        "student": f"student {cfg.student}",
        "temperature": f"T = {cfg.temperature:g}",
        "alpha": f"α = {cfg.alpha:g}",
        "epochs": epochs(cfg.epochs),
        "fraction": f"{cfg.fraction:.0%} of the training images",
        "teachers": f"teachers {' + '.join(cfg.teachers)}",
        "seed": f"seed {cfg.seed}",
    }
    return f"{cfg.dataset}, " + ", ".join(text for field, text in parts.items() if field not in skip)


def start(kind: jobs.JobKind, cfg: experiments.RunConfig, name: str, **options) -> None:
    """Submit a study as a job for this session (unless its dataset cannot be loaded) and remember it per tab."""
    status = ui.dataset_status().get(cfg.dataset)
    if status is not None and status.state == "unavailable":
        ui.show_dataset_error(status.message)
        return
    st.session_state[f"experiment_job_{kind}"] = ui.submit(kind, cfg, name, **options).id
    st.rerun()  # so Start and Stop are drawn for the running job


# ---- charts -------------------------------------------------------------------------------------


def _titled(fig: go.Figure, title: str, subtitle: str, height: int = CHART_HEIGHT) -> go.Figure:
    ui.readable(fig, height)
    fig.update_layout(
        title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=15, color="#555"))), margin=dict(t=90)
    )
    return fig


def _bottom_legend(fig: go.Figure, y: float = -0.25) -> None:
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=y, xanchor="left", x=0))


def _log_axis(values: list[float], labels: list[str], title: str) -> dict:
    """A log x axis ticked at exactly these values, padded so the outermost labels are not cut off."""
    lo, hi = math.log10(min(values)), math.log10(max(values))
    pad = max(0.12, 0.08 * (hi - lo))
    return dict(type="log", tickvals=values, ticktext=labels, range=[lo - pad, hi + pad], title_text=title)


def sweep_chart(snap: dict, live: bool) -> go.Figure:
    """Heatmap of the distilled students' test accuracy, white at the scratch student's, best cell outlined."""
    ts, als, s = snap["temperatures"], snap["alphas"], snap["scratch_acc"]
    acc = snap["accuracy"]
    best = snap.get("best")
    z = [[None if a is None else 100 * a for a in row] for row in acc]
    text = [
        [
            ("★ " if best and (best["row"], best["col"]) == (i, j) else "") + f"{a:.1f} %<br>{a - 100 * s:+.1f}"
            if a is not None
            else ""
            for j, a in enumerate(row)
        ]
        for i, row in enumerate(z)
    ]
    x, y = [f"{a:g}" for a in als], [f"{t:g}" for t in ts]
    # Undone cells get their own grey layer so they read as "not yet", not as a colour on the scale.
    pending = [(i, j) for i, row in enumerate(z) for j, a in enumerate(row) if a is None]
    waiting = "waiting" if live else "not run"
    pending_text = [[""] * len(als) for _ in ts]
    for n, (i, j) in enumerate(pending):
        pending_text[i][j] = "training…" if live and n == 0 and s is not None else waiting
    fig = go.Figure()
    fig.add_heatmap(
        z=[[1 if a is None else None for a in row] for row in z],
        x=x,
        y=y,
        text=pending_text,
        texttemplate="%{text}",
        textfont=dict(size=15, color="#666"),
        showscale=False,
        colorscale=[[0, PENDING], [1, PENDING]],
        hoverinfo="skip",
        xgap=4,
        ygap=4,
    )
    if s is not None:
        # A symmetric range around the scratch accuracy puts it at the scale's white midpoint.
        span = max([abs(a - 100 * s) for row in z for a in row if a is not None] + [0.5])
        fig.add_heatmap(
            z=z,
            x=x,
            y=y,
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=17),
            colorscale=[[0, DOWN], [0.5, NEUTRAL], [1, UP]],
            zmin=100 * s - span,
            zmax=100 * s + span,
            xgap=4,
            ygap=4,
            colorbar=dict(
                title=dict(text="Test accuracy (%)", side="right", font=dict(size=16, color="#333")),
                thickness=18,
                tickfont=dict(size=14),
            ),
            hovertemplate="T = %{y}, α = %{x}: %{z:.2f} %<extra></extra>",
        )
    if best is not None:
        i, j = best["row"], best["col"]
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5, line=dict(color="#111", width=4))
    reference = "scratch student: appears first" if s is None else f"white = scratch student ({100 * s:.1f} %)"
    _titled(
        fig,
        "Test accuracy of the distilled student",
        f"{reference} · green: better, red: worse · ★ best · second line: points against scratch",
        height=max(CHART_HEIGHT, 170 + 75 * len(ts)),
    )
    fig.update_xaxes(title_text="α (weight of the teacher)", type="category", side="bottom", showgrid=False)
    fig.update_yaxes(title_text="temperature T", type="category", autorange="reversed", showgrid=False)
    fig.update_layout(plot_bgcolor="white")
    return fig


def _teacher_line(fig: go.Figure, teacher_acc: float | None) -> None:
    if teacher_acc is not None:
        fig.add_hline(
            y=100 * teacher_acc,
            line=dict(color=ui.COLORS["ensemble"], dash="dot", width=3),
            annotation_text=f"teacher ensemble {100 * teacher_acc:.1f} %",
            annotation_position="bottom right",
            annotation_font=dict(color=ui.COLORS["ensemble"]),
        )


def _accuracy_range(fig: go.Figure, values: list[float]) -> None:
    low = max(0.0, 5 * math.floor((min(values) - 1) / 5)) if values else 0.0
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 100.5])


def _gain_trace(fig: go.Figure, x: list, gains: list[float | None], hover: str) -> list[float]:
    pts = [(xi, 100 * g) for xi, g in zip(x, gains) if g is not None]
    fig.add_scatter(
        x=[p[0] for p in pts],
        y=[p[1] for p in pts],
        mode="lines+markers+text",
        showlegend=False,
        line=dict(color="#888", width=2),
        marker=dict(size=14, color=[UP if v >= 0 else DOWN for _, v in pts]),
        text=[f"{v:+.1f}" for _, v in pts],
        textposition="top center",
        textfont=dict(size=16, color="#333"),
        cliponaxis=False,
        hovertemplate=hover,
    )
    return [p[1] for p in pts]


def _gain_axis(fig: go.Figure, values: list[float]) -> None:
    span = max([abs(v) for v in values] + [1.0]) * 1.35
    fig.update_yaxes(
        title_text="KD gain (points)", range=[-span, span], zeroline=True, zerolinewidth=2, zerolinecolor="#444"
    )


def fraction_charts(snap: dict) -> tuple[go.Figure, go.Figure]:
    points = snap["points"]
    x = [p["fraction"] for p in points]
    custom = [[p["train_size"], p["epochs"]] for p in points]
    ticks = _log_axis(x, [_share(f) for f in x], "Share of the training images (log scale)")
    acc = go.Figure()
    values = []
    for role in ("scratch", "distilled"):
        y = [None if p[f"{role}_acc"] is None else 100 * p[f"{role}_acc"] for p in points]
        values += [v for v in y if v is not None]
        acc.add_scatter(
            x=x,
            y=y,
            name=ui.ROLE_LABELS[role],
            mode="lines+markers",
            customdata=custom,
            line=dict(color=ui.COLORS[role], width=4),
            marker=dict(size=11),
            hovertemplate="%{x:.0%} of the data (%{customdata[0]} images, %{customdata[1]} epochs): "
            "%{y:.1f} %<extra>" + role + "</extra>",
        )
    _teacher_line(acc, snap.get("teacher_acc"))
    _titled(acc, "Test accuracy against training data", "the same student, from scratch and distilled")
    _bottom_legend(acc)
    acc.update_xaxes(**ticks)
    _accuracy_range(acc, values + ([100 * snap["teacher_acc"]] if snap.get("teacher_acc") else []))
    gap = go.Figure()
    gains = _gain_trace(gap, x, [p["gain"] for p in points], "%{x:.0%} of the data: %{y:+.2f} points<extra></extra>")
    _titled(gap, "What the teacher adds at each data size", "distilled − scratch · above 0: KD helps")
    gap.update_xaxes(**ticks)
    _gain_axis(gap, gains)
    return acc, gap


def missing_chart(snap: dict) -> go.Figure:
    name = snap["class_name"]
    groups = [f"class {name} (never seen)", "all classes"]
    styles = {
        "teacher": ("Teacher ensemble (saw it)", ui.COLORS["ensemble"], ""),
        "scratch": (ui.ROLE_LABELS["scratch"], ui.COLORS["scratch"], ""),
        "distilled": (ui.ROLE_LABELS["distilled"], ui.COLORS["distilled"], ""),
        "distilled + bias fix": ("Distilled + bias fix", ui.COLORS["distilled"], "/"),
    }
    fig = go.Figure()
    for row in snap["rows"]:
        label, colour, pattern = styles[row["name"]]
        y = [None if row[k] is None else 100 * row[k] for k in ("missing_acc", "accuracy")]
        fig.add_bar(
            x=groups,
            y=y,
            name=label,
            marker=dict(
                color=colour,
                line=dict(color="#333", width=1),
                pattern=dict(shape=pattern, fgcolor="#333", fillmode="overlay", solidity=0.25),
            ),
            text=[f"{v:.1f} %" if v is not None else "" for v in y],
            textposition="outside",
            textfont=dict(size=16, color="#333"),
            cliponaxis=False,
            hovertemplate="%{x}: %{y:.2f} %<extra>" + label + "</extra>",
        )
    _titled(
        fig,
        f"Accuracy with class {name} left out of the students' training",
        f"share of test images classified correctly · left: class {name} only · right: all classes",
    )
    _bottom_legend(fig)
    fig.update_layout(barmode="group", bargroupgap=0.08)
    fig.update_yaxes(title_text="Test accuracy (%)", range=[0, 110])
    fig.update_xaxes(type="category")
    return fig


def capacity_charts(snap: dict) -> tuple[go.Figure, go.Figure]:
    points = snap["points"]
    x = [p["params"] for p in points]
    ticks = _log_axis(
        x, [f"{p['student']}<br>{fmt_params(p['params'])}" for p in points], "Student parameters (log scale)"
    )
    acc = go.Figure()
    values = []
    for role in ("scratch", "distilled"):
        y = [None if p[f"{role}_acc"] is None else 100 * p[f"{role}_acc"] for p in points]
        values += [v for v in y if v is not None]
        acc.add_scatter(
            x=x,
            y=y,
            name=ui.ROLE_LABELS[role],
            mode="lines+markers",
            customdata=[p["student"] for p in points],
            line=dict(color=ui.COLORS[role], width=4),
            marker=dict(size=11),
            hovertemplate="%{customdata} (%{x:,} parameters): %{y:.1f} %<extra>" + role + "</extra>",
        )
    _teacher_line(acc, snap.get("teacher_acc"))
    teacher = f"teacher ensemble: {fmt_params(snap['teacher_params'])} parameters" if snap.get("teacher_params") else ""
    _titled(acc, "Test accuracy against student size", teacher)
    _bottom_legend(acc, y=-0.36)  # below the two-line tick labels and the axis title
    acc.update_xaxes(**ticks)
    _accuracy_range(acc, values + ([100 * snap["teacher_acc"]] if snap.get("teacher_acc") else []))
    gain = go.Figure()
    gains = _gain_trace(gain, x, [p["gain"] for p in points], "%{x:,} parameters: %{y:+.2f} points<extra></extra>")
    _titled(gain, "KD gain against student size", "distilled − scratch · above 0: KD helps")
    gain.update_xaxes(**ticks)
    _gain_axis(gain, gains)
    return acc, gain


def bias_sentence(snap: dict) -> str:
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


def draw(kind: str, snap: dict, *, live: bool) -> None:
    """The study's charts from a result's `to_json()` (or a cell event's snapshot of it)."""
    config = {"displayModeBar": not live, "displaylogo": False}
    tag = "live" if live else "final"
    if kind == "sweep":
        st.plotly_chart(sweep_chart(snap, live), width="stretch", config=config, key=f"sweep_{tag}")
        if 0.0 in snap["alphas"]:
            st.caption("α = 0 cells are the scratch student itself: with no weight on the teacher, T does nothing.")
        return
    if kind == "missing-class":
        left, right = st.columns([3, 2])
        left.plotly_chart(missing_chart(snap), width="stretch", config=config, key=f"missing_{tag}")
        right.markdown(bias_sentence(snap))
        right.caption(
            f"The students trained on {snap['transfer_size']:,} images without a single "
            f"{snap['class_name']}. "
            "A student that never sees a class learns to rarely predict it; Hinton et al. raise that "
            "class's output bias so the knowledge the soft targets carried can show."
        )
        return
    charts = fraction_charts(snap) if kind == "fraction" else capacity_charts(snap)
    for column, fig, part in zip(st.columns(2), charts, ("acc", "gain")):
        column.plotly_chart(fig, width="stretch", config=config, key=f"{kind}_{part}_{tag}")
    if kind == "fraction":
        st.caption(f"Epochs per fraction: {snap['epoch_rule']}.")


def skeleton(kind: jobs.JobKind, options: dict) -> dict | None:
    """What to draw before the first cell: an empty sweep grid; the other studies wait for their first point."""
    if kind is not jobs.JobKind.SWEEP:
        return None
    ts, als = options["temperatures"], options["alphas"]
    return {
        "temperatures": ts,
        "alphas": als,
        "accuracy": [[None] * len(als) for _ in ts],
        "scratch_acc": None,
        "best": None,
    }


@st.fragment(run_every=1.0)
def live(kind: str, job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is None:
        return
    p = ui.show_progress(job)
    snap = p.snapshot or skeleton(kind, dict(job.spec.options))
    if snap is not None:
        draw(kind, snap, live=True)


# ---- one tab per study --------------------------------------------------------------------------


def controls_and_job(kind: str, ready: bool, why_not: str) -> tuple[jobs.Job | None, bool]:
    """Start and Stop for this tab's study; returns its job and whether Start was pressed."""
    job = ui.job_by_id(st.session_state.get(f"experiment_job_{kind}"))
    running = job is not None and job.state in ACTIVE
    b1, b2, _ = st.columns([1, 1, 4])
    clicked = b1.button(
        "Start",
        type="primary",
        icon=":material/play_arrow:",
        width="stretch",
        disabled=running or not ready,
        key=f"start_{kind}",
        help="Stop the current study first." if running else why_not or "Run this study.",
    )
    if b2.button(
        "Stop",
        icon=":material/stop:",
        width="stretch",
        key=f"stop_{kind}",
        disabled=not running or job.cancel_requested,
        help="Stops after the current batch; finished cells are kept as a partial result.",
    ):
        job.cancel()
    return job, clicked and not running


def show(kind: str, job: jobs.Job | None, what_to_do: str) -> None:
    """The running study's live view, or its final (possibly partial) result with its reading."""
    if job is None:
        return
    st.markdown(f"**{'Running' if job.state in ACTIVE else 'This study used'}:** {uses(job.config, VARIES[kind])}")
    if job.state in ACTIVE:
        live(kind, job.id)
        return
    if job.state is jobs.JobState.FAILED:
        ui.show_job_failure(job, what_to_do)
        return
    result = job.result()
    if result is None:
        st.warning(
            "Stopped before any student started training. Teachers that finished stay cached; press "
            "**Start** to run again."
        )
        return
    if result.partial:
        st.warning("**Stopped — partial result.** Only the finished students are shown; the reading describes them.")
    draw(kind, result.to_json(), live=False)
    st.info(result.reading())
    st.caption(f"Took {events.format_seconds(result.seconds)}.")


def sweep_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Which temperature and teacher weight work best?** Each cell is one distilled student trained "
        "with that T and α. Its colour compares it with the same student trained from scratch: white is "
        "equal, green better, red worse."
    )
    left, right = st.columns(2)
    ts = left.multiselect(
        f"Temperatures T (rows, up to {studies.MAX_GRID})",
        TEMPERATURE_CHOICES,
        default=list(studies.DEFAULT_TEMPERATURES),
        max_selections=studies.MAX_GRID,
        format_func=lambda t: f"{t:g}",
        key="sweep_temperatures",
        help=ui.HELP["temperature"],
    )
    als = right.multiselect(
        f"Weights α (columns, up to {studies.MAX_GRID})",
        ALPHA_CHOICES,
        default=list(studies.DEFAULT_ALPHAS),
        max_selections=studies.MAX_GRID,
        format_func=lambda a: f"{a:g}",
        key="sweep_alphas",
        help=ui.HELP["alpha"],
    )
    ts, als = sorted(ts), sorted(als)
    students = len(ts) * sum(a > 0 for a in als) + 1
    used = uses(cfg, skip=("temperature", "alpha"))
    ready = bool(ts and als)
    if ready:
        st.caption(
            f"{len(ts)} × {len(als)} grid: {students} students of {epochs(cfg.epochs)} each, including the "
            f"scratch student · also uses {used} from the sidebar."
        )
    else:
        st.warning("Pick at least one temperature and one α.")
    job, clicked = controls_and_job(jobs.JobKind.SWEEP, ready, "" if ready else "Pick at least one T and one α.")
    if clicked:
        start(jobs.JobKind.SWEEP, cfg, f"T × α sweep {len(ts)}×{len(als)} ({cfg.dataset})", temperatures=ts, alphas=als)
    show(jobs.JobKind.SWEEP, job, "Change the grid or the sidebar settings and press **Start** again.")


def fraction_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Does the teacher make up for missing labels?** At each share of the training images, the "
        "same student trains from scratch and distilled, on the same stratified subset. Soft targets "
        "usually help most when examples are few."
    )
    fs = st.multiselect(
        f"Shares of the training images (up to {studies.MAX_POINTS})",
        FRACTION_CHOICES,
        default=list(studies.DEFAULT_FRACTIONS),
        max_selections=studies.MAX_POINTS,
        format_func=_share,
        key="fraction_values",
        help=ui.HELP["fraction"],
    )
    fs = sorted(fs)
    used = uses(cfg, skip=("fraction",))
    if fs:
        per_share = ", ".join(f"{_share(f)}: {studies.fraction_epochs(cfg.epochs, f)}" for f in fs)
        st.caption(
            f"{2 * len(fs)} students · epochs per share ({per_share}): smaller shares train longer so each "
            f"student gets enough steps · also uses {used} from the sidebar."
        )
    else:
        st.warning("Pick at least one share of the data.")
    job, clicked = controls_and_job(jobs.JobKind.FRACTION, bool(fs), "" if fs else "Pick at least one share.")
    if clicked:
        start(jobs.JobKind.FRACTION, cfg, f"Less data: {', '.join(map(_share, fs))} ({cfg.dataset})", fractions=fs)
    show(jobs.JobKind.FRACTION, job, "Change the shares or the sidebar settings and press **Start** again.")


def missing_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Can a student recognise a class it never saw?** Following Hinton et al. (2015, section 3), "
        "the students' training images leave out one class entirely. Only the distilled student hears "
        "about it — through the teacher's soft targets on other images that look a little like it."
    )
    names = CLASS_NAMES.get(cfg.dataset, tuple(str(i) for i in range(models.NUM_CLASSES)))
    left, right = st.columns(2)
    missing = left.selectbox(
        "Class the students never see",
        range(len(names)),
        index=3,
        format_func=lambda i: names[i],
        key=f"missing_class_{cfg.dataset}",
    )
    fix = right.checkbox(
        "Apply the bias fix",
        value=True,
        key="missing_fix",
        help="After training, raise the distilled student's output bias for the missing class, "
        "so it predicts that class about as often as the teacher does.",
    )
    bias = None
    if fix:
        own = right.toggle(
            "Set the bias value myself",
            key="missing_own_bias",
            help="Off: chosen on the training images so the student predicts the class as often "
            "as the teacher does (no test images are used).",
        )
        if own:
            bias = float(right.number_input("Bias increase", 0.0, 50.0, 3.0, step=0.5, key="missing_bias"))
    used = uses(cfg)
    st.caption(f"2 students of {epochs(cfg.epochs)} · uses {used} from the sidebar.")
    job, clicked = controls_and_job(jobs.JobKind.MISSING_CLASS, True, "")
    if clicked:
        start(
            jobs.JobKind.MISSING_CLASS,
            cfg,
            f"Missing class {names[missing]} ({cfg.dataset})",
            missing=missing,
            bias_fix=fix,
            bias_value=bias,
        )
    show(
        jobs.JobKind.MISSING_CLASS, job, "Pick another class or change the sidebar settings and press **Start** again."
    )


def capacity_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Is the student big enough to take what the teacher knows?** For each student size, a scratch "
        "and a distilled student train with the sidebar's T, α and data. A tiny student may lack the "
        "room to use the soft targets; a large one may learn most of it from the labels alone."
    )
    all_students = [m.name for m in models.available("student")]
    picked = st.multiselect(
        "Student sizes",
        all_students,
        default=studies.family_students(cfg.student),
        max_selections=studies.MAX_POINTS,
        key=f"capacity_students_{cfg.student}",
        format_func=lambda n: f"{n} ({models.ZOO[n].description})",
        help=ui.HELP["student"],
    )
    used = uses(cfg, skip=("student",))
    if picked:
        st.caption(f"{2 * len(picked)} students of {epochs(cfg.epochs)} · also uses {used} from the sidebar.")
    else:
        st.warning("Pick at least one student size.")
    job, clicked = controls_and_job(jobs.JobKind.CAPACITY, bool(picked), "" if picked else "Pick at least one student.")
    if clicked:
        start(jobs.JobKind.CAPACITY, cfg, f"Student capacity ({cfg.dataset})", students=picked)
    show(jobs.JobKind.CAPACITY, job, "Change the sizes or the sidebar settings and press **Start** again.")


# ---- page ---------------------------------------------------------------------------------------

st.title("Experiments")
st.markdown(
    "Four questions about distillation, each answered by training a set of students against the cached "
    "teacher ensemble. The sidebar sets what they share; each tab sets what it varies. Studies keep "
    "running when you switch tabs or pages, and **Stop** keeps what has finished."
)
cfg = ui.controls()
for tab, draw_tab in zip(st.tabs(list(TABS.values())), (sweep_tab, fraction_tab, missing_tab, capacity_tab)):
    with tab:
        draw_tab(cfg)
