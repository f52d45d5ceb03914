"""Distill page: train a distilled and a scratch student side by side, live, and show what the teacher added."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from kdcore import events, experiments, glossary, jobs, report, stats, studies

st.set_page_config(page_title="Distill · KD Playground", page_icon=":material/science:", layout="wide")

ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)
STUDENTS = ("scratch", "distilled")
SHORT = {"scratch": "Scratch", "distilled": "Distilled"}
UP, DOWN = "#009E73", "#D55E00"  # Okabe-Ito green and vermillion: colour-blind-safe better / worse
CHART_HEIGHT = 430
FIELD_LABELS = {
    "dataset": "dataset",
    "teachers": "teachers",
    "student": "student",
    "temperature": "T",
    "alpha": "α",
    "epochs": "epochs",
    "fraction": "data fraction",
    "seed": "seed",
}


def describe(cfg: experiments.RunConfig) -> str:
    return (
        f"T = {cfg.temperature:g}, α = {cfg.alpha:g}, student {cfg.student}, {cfg.epochs} epochs, "
        f"{cfg.fraction:.0%} of {cfg.dataset}, teachers {' + '.join(cfg.teachers)}, seed {cfg.seed}"
    )


def changed(run: experiments.RunConfig, now: experiments.RunConfig) -> list[str]:
    return [label for f, label in FIELD_LABELS.items() if getattr(run, f) != getattr(now, f)]


def start(cfg: experiments.RunConfig) -> None:
    # A dataset that cannot be loaded fails the job at once, with kdcore's explanation of where to put the files.
    name = f"{cfg.student} T={cfg.temperature:g} α={cfg.alpha:g} ({cfg.dataset})"
    st.session_state.distill_job = ui.submit(jobs.JobKind.DISTILL, cfg, name).id


# ---- charts -------------------------------------------------------------------------------------


Curves = dict[str, list[events.Step | events.Epoch]]


def _series(curves: Curves, model: str, epochs_only: bool = False) -> list:
    return [e for e in curves.get(model, []) if not epochs_only or isinstance(e, events.Epoch)]


def _figure(
    traces: list[dict],
    title: str,
    subtitle: str,
    epochs: int,
    yaxis: dict,
    *,
    empty_text: str | None,
    empty_y: float,
    shapes=(),
    annotations=(),
    legend=None,
) -> go.Figure:
    """One figure from plain dicts, validated once: the live charts are rebuilt every second."""
    notes = list(annotations)
    if empty_text:
        notes.append(dict(text=empty_text, showarrow=False, x=epochs / 2, y=empty_y, font=dict(size=18, color="#777")))
    fig = go.Figure(
        data=traces,
        layout=dict(
            # Short titles with a subtitle fit a phone.
            title=dict(text=title, subtitle=dict(text=subtitle, font=dict(size=15, color="#555"))),
            legend=dict(orientation="h", yanchor="top", y=-0.22, xanchor="left", x=0, **(legend or {})),
            xaxis=dict(title=dict(text="Epoch"), range=[0, epochs], dtick=max(1, math.ceil(epochs / 10))),
            yaxis=yaxis,
            shapes=list(shapes),
            annotations=notes,
        ),
    )
    ui.readable(fig, CHART_HEIGHT)
    fig.update_layout(margin=dict(t=90))
    return fig


def accuracy_chart(curves: Curves, epochs: int, teacher_acc: float | None = None) -> go.Figure:
    traces, values = [], []
    for m in STUDENTS:
        pts = _series(curves, m, epochs_only=True)
        y = [100 * e.test_acc for e in pts]
        values += y
        traces.append(
            dict(
                type="scatter",
                x=[e.epoch for e in pts],
                y=y,
                name=ui.ROLE_LABELS[m],
                mode="lines+markers",
                line=dict(color=ui.COLORS[m], width=4),
                marker=dict(size=9),
                hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + SHORT[m] + "</extra>",
            )
        )
    shapes, notes = [], []
    if teacher_acc is not None:
        t = 100 * teacher_acc
        values.append(t)
        shapes.append(
            dict(
                type="line",
                xref="paper",
                x0=0,
                x1=1,
                y0=t,
                y1=t,
                line=dict(color=ui.COLORS["ensemble"], dash="dot", width=3),
            )
        )
        notes.append(
            dict(
                text=f"teacher ensemble {t:.1f} %",
                xref="paper",
                x=0,
                y=t,
                xanchor="left",
                yanchor="bottom",
                showarrow=False,
                font=dict(color=ui.COLORS["ensemble"]),
            )
        )
    # The axis only widens in 5-point steps, so it settles after the first epoch instead of following every point.
    low = 0.0 if not values else max(0.0, 5 * math.floor((min(values) - 1) / 5))
    return _figure(
        traces,
        "Test accuracy",
        "higher is better",
        epochs,
        dict(title=dict(text="Test accuracy (%)"), range=[low, 100.5]),
        empty_text=None if values else "appears after the first epoch",
        empty_y=50,
        shapes=shapes,
        annotations=notes,
    )


def loss_chart(curves: Curves, epochs: int) -> go.Figure:
    traces, values = [], []
    for m in STUDENTS:
        pts = _series(curves, m)
        x = [e.epoch for e in pts]
        for part, dash in (("hard", "solid"), ("soft", "dash")):
            y = [getattr(e, part) for e in pts]
            values += [v for v in y if v is not None and v > 0]
            # A dot on the newest point shows where each curve is heading, even before it has two points.
            traces.append(
                dict(
                    type="scatter",
                    x=x,
                    y=y,
                    name=f"{SHORT[m]} {part}",
                    mode="lines+markers",
                    line=dict(color=ui.COLORS[m], dash=dash, width=3),
                    marker=dict(size=[0] * (len(x) - 1) + [9] if x else [], color=ui.COLORS[m]),
                    hovertemplate="epoch %{x:.2f}: %{y:.3f}<extra>" + f"{SHORT[m]} {part}</extra>",
                )
            )
    # Half-decade steps on a log axis: both parts stay readable although they differ by 10x or more.
    if values:
        lo, hi = math.floor(2 * math.log10(min(values))) / 2, math.ceil(2 * math.log10(max(values))) / 2
        hi = max(hi, lo + 1)
    else:
        lo, hi = -1.5, 1.0
    ticks = [m * 10**e for e in range(-4, 4) for m in (1, 2, 5) if lo <= math.log10(m * 10**e) <= hi]
    return _figure(
        traces,
        "Training loss",
        "solid: hard part (labels) · dashed: soft part (teacher)",
        epochs,
        dict(
            title=dict(text="Loss (log scale)"),
            type="log",
            range=[lo, hi],
            tickvals=ticks,
            ticktext=[f"{v:g}" for v in ticks],
        ),
        empty_text=None if values else "appears when the students start",
        empty_y=(lo + hi) / 2,
        # Two entries per row, so the four loss parts line up as a 2 x 2 key.
        legend=dict(entrywidth=0.5, entrywidthmode="fraction"),
    )


def curves(acc: go.Figure, loss: go.Figure, *, live: bool = False) -> None:
    left, right = st.columns(2)
    config = {"displayModeBar": not live, "displaylogo": False}
    left.plotly_chart(acc, width="stretch", config=config, key=f"acc_{'live' if live else 'final'}")
    right.plotly_chart(loss, width="stretch", config=config, key=f"loss_{'live' if live else 'final'}")


def live_figures(job_id: str, p: events.Progress, epochs: int) -> tuple[go.Figure, go.Figure]:
    """The live charts, rebuilt only when new points arrived (building a plotly figure costs real CPU)."""
    key = (job_id, sum(len(v) for v in p.curves.values()))
    cached = st.session_state.get("live_figures")
    if cached is None or cached[0] != key:
        cached = (key, accuracy_chart(p.curves, epochs), loss_chart(p.curves, epochs))
        st.session_state.live_figures = cached
    return cached[1], cached[2]


def per_class_chart(result: experiments.RunResult) -> go.Figure:
    gains = result.per_class_gain
    x = [c for c, g in zip(result.classes, gains) if g is not None]
    y = [100 * g for g in gains if g is not None]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=y,
            marker_color=[UP if v >= 0 else DOWN for v in y],
            text=[f"{v:+.1f}" for v in y],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{y:+.2f} points<extra></extra>",
        )
    )
    # Zero always shows; the axis covers only the side(s) the bars use, plus room for the labels.
    lo, hi = min(y + [0.0]), max(y + [0.0])
    pad = max(1.0, 0.25 * (hi - lo))
    ui.readable(fig, CHART_HEIGHT)
    fig.update_layout(
        title=dict(
            text="KD gain per class",
            subtitle=dict(text="distilled − scratch · green: distilled better", font=dict(size=15, color="#555")),
        ),
        margin=dict(t=90),
        showlegend=False,
    )
    fig.update_yaxes(
        title_text="Accuracy difference (points)",
        range=[lo - pad, hi + pad],
        zeroline=True,
        zerolinewidth=2,
        zerolinecolor="#444",
    )
    fig.update_xaxes(title_text="Class", type="category")
    missing = [c for c, g in zip(result.classes, gains) if g is None]
    if missing:
        fig.add_annotation(
            text=f"no test images of: {', '.join(missing)}",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=1,
            y=1.02,
            xanchor="right",
            font=dict(size=14, color="#777"),
        )
    return fig


# ---- live view ----------------------------------------------------------------------------------


@st.fragment(run_every=1.0)
def live(job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is None:
        return
    p = ui.show_progress(job)
    curves(*live_figures(job.id, p, job.config.epochs), live=True)


# ---- results ------------------------------------------------------------------------------------


def results(job: jobs.Job, result: experiments.RunResult) -> None:
    cfg = result.config
    if result.partial:
        st.warning(
            f"**Stopped after {result.epochs_done} of {cfg.epochs} epochs — partial result.** Both students are "
            f"compared as they were after epoch {result.epochs_done}, so neither had more training than the other."
        )
    for notice in result.notices:
        st.warning(notice, icon=":material/warning:")
    d, s, t = result.row("distilled"), result.row("scratch"), result.row("ensemble")
    gain = result.kd_gain
    cols = st.columns([1.4, 1, 1, 1, 1.2])
    ranges = result.intervals
    cols[0].metric(
        "KD gain",
        ui.fmt_points(gain),
        border=True,
        help="Test accuracy of the distilled student minus that of the same student trained from scratch: what "
        f"the teacher added. {result.gain_stats.text}.",
    )
    cols[1].metric(ui.ROLE_LABELS["distilled"], f"{100 * d.accuracy:.1f} %", help=ranges["distilled"].text)
    cols[2].metric("Scratch student", f"{100 * s.accuracy:.1f} %", help=ranges["scratch"].text)
    cols[3].metric(ui.ROLE_LABELS["ensemble"], f"{100 * t.accuracy:.1f} %", help=ranges["ensemble"].text)
    if t.params and d.params:
        speed = f"{t.latency_ms_b1 / d.latency_ms_b1:.0f}× faster" if t.latency_ms_b1 and d.latency_ms_b1 else None
        cols[4].metric(
            "Student vs. teachers",
            f"{t.params / d.params:.0f}× smaller",
            speed,
            delta_arrow="off",
            help="Parameters and single-image latency of the ensemble divided by the student's.",
        )
        st.caption(report.against_teachers(result))
    st.markdown(
        f"**KD gain {stats.verdict(result.gain_stats).sentence}** The range is where the gain would most likely "
        f"fall on other test images of the same kind; it comes from the "
        f"{result.gain_stats.n01 + result.gain_stats.n10} images on which exactly one of the two students is right. "
        f"Run took {events.format_seconds(result.seconds)}."
    )
    repeat_over_seeds(cfg)
    p = job.progress()
    if isinstance(p.saved, events.SaveFailed):
        st.warning(f"{p.saved.message} The result below is complete; only the saved copy is missing.")
    elif p.saved is not None:
        st.caption(
            f":material/history: Saved as run {p.saved.run_id} on the History page."
            + (f" {p.saved.message}" if p.saved.message else "")
        )
    shown = p.curves if any(p.curves.values()) else result.curves
    curves(accuracy_chart(shown, cfg.epochs, t.accuracy), loss_chart(shown, cfg.epochs))
    notes = report.loss_notes(result)
    if notes:
        st.markdown("**What to notice in the training loss**\n" + "\n".join(f"- {n}" for n in notes))
    left, right = st.columns(2)
    left.plotly_chart(per_class_chart(result), width="stretch", config={"displaylogo": False})
    right.markdown(
        "**What to try next**\n"
        "- Raise **T** to share more of the teacher's view of similar classes, or set it to 1 to see "
        "what is lost.\n"
        "- Set **α** to 0: the 'distilled' student then ignores the teacher — the gain should vanish.\n"
        "- Use a **smaller fraction** of the training data: the teacher's soft targets help most when "
        "labels are scarce.\n"
        "- Open **Dark knowledge** to see the soft targets, or **Compare** for size and latency."
    )
    st.markdown("**Every model of this run**")
    num = st.column_config.NumberColumn
    table = report.comparison_table([result]).drop(columns=[report.DATASET, report.RUN, report.PARTIAL])
    table[report.THROUGHPUT] = table[report.THROUGHPUT].round()
    # One run here: its number is in the caption above, so the rows need no "run N:" prefix.
    table[report.MODEL] = table[report.MODEL].str.replace(r"^run \d+: ", "", regex=True)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            report.ACCURACY: num(format="%.1f"),
            report.SIZE: num(format="%.2f"),
            report.PARAMS: num(format="localized", help=glossary.define("parameters")),
            report.LATENCY: num(format="%.2f", help=glossary.define("latency")),
            report.THROUGHPUT: num(format="localized", help=glossary.define("throughput")),
            report.SPEEDUP: num(format="%.1f"),
            report.COMPRESSION: num(format="%.1f"),
            report.AGREEMENT: num(format="%.1f", help=glossary.define("agreement")),
            report.ECE: num(format="%.3f", help=glossary.define("ECE")),
        },
    )


@st.fragment(run_every=1.0)
def seeds_live(job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is not None:
        ui.show_progress(job)


def repeat_over_seeds(cfg: experiments.RunConfig) -> None:
    """One run's gain can be seed luck: repeat it over seeds and show the mean and spread."""
    job = ui.job_by_id(st.session_state.get("seeds_job"))
    if job is not None and job.config != cfg:
        job = None
    if job is None:
        seeds = ", ".join(map(str, studies.DEFAULT_SEEDS))
        if st.button(
            f"Repeat over seeds {seeds}",
            icon=":material/repeat:",
            help="Trains the same pair with other starting weights and data orders, to see whether the gain holds.",
        ):
            st.session_state.seeds_job = ui.submit(jobs.JobKind.SEEDS, cfg, f"{cfg.student} over seeds {seeds}").id
            st.rerun()
    elif job.state in ACTIVE:
        seeds_live(job.id)
    elif job.state is jobs.JobState.FAILED:
        ui.show_job_failure(job, "Press **Start** and try again.")
    elif job.result() is not None:
        st.info(job.result().reading(), icon=":material/repeat:")


def history() -> None:
    runs = ui.my_jobs(jobs.JobKind.DISTILL)
    if not runs:
        return
    rows = []
    for job in runs:
        result = job.result(timeout=0) if job.state in (jobs.JobState.DONE, jobs.JobState.CANCELLED) else None
        cfg = job.config
        state = {
            jobs.JobState.QUEUED: "queued",
            jobs.JobState.RUNNING: "running",
            jobs.JobState.FAILED: "failed",
            jobs.JobState.CANCELLED: "stopped",
        }.get(job.state, "done")
        if result is not None and result.partial:
            state = "partial"

        def acc(role: str, result=result) -> float | None:
            row = None if result is None else result.row(role)
            return None if row is None else round(100 * row.accuracy, 2)

        rows.append(
            {
                "Run": None if result is None else result.run_id,
                "Started": datetime.fromtimestamp(job.created).strftime("%H:%M:%S"),
                "Student": cfg.student if cfg else "?",
                "T": cfg.temperature if cfg else None,
                "α": cfg.alpha if cfg else None,
                "Epochs": cfg.epochs if cfg else None,
                "Data": f"{cfg.fraction:.0%}" if cfg else "?",
                "Scratch (%)": acc("scratch"),
                "Distilled (%)": acc("distilled"),
                "KD gain (points)": None
                if result is None or result.kd_gain is None
                else round(100 * result.kd_gain, 2),
                "Status": state,
            }
        )
    with st.expander(f"This session's runs ({len(rows)})", expanded=len(rows) > 1):
        st.dataframe(
            pd.DataFrame(rows),
            hide_index=True,
            width="stretch",
            column_config={
                "KD gain (points)": st.column_config.NumberColumn(format="%+.2f"),
                "T": st.column_config.NumberColumn(format="%g"),
                "α": st.column_config.NumberColumn(format="%g"),
            },
        )


# ---- page ---------------------------------------------------------------------------------------

st.title("Distill")
st.markdown(
    "Two copies of the same small student start from the same weights and see the same batches. "
    "The **scratch** student learns from the labels only; the **distilled** one also learns from the "
    "teacher ensemble's soft targets. The difference in their test accuracy is the KD gain."
)
st.caption(
    "Changing T or α reuses the cached teachers and their logits, so only the two students train; the "
    "teachers train only the first time."
)
cfg = ui.controls()

job = ui.job_by_id(st.session_state.get("distill_job"))
running = job is not None and job.state in ACTIVE
b1, b2, _ = st.columns([1, 1, 4])
start_clicked = b1.button(
    "Start",
    type="primary",
    icon=":material/play_arrow:",
    width="stretch",
    disabled=running,
    help="Stop the current run first." if running else "Train both students with these settings.",
)
if b2.button(
    "Stop",
    icon=":material/stop:",
    width="stretch",
    disabled=not running or job.cancel_requested,
    help="Stops after the current batch; finished epochs are kept as a partial result.",
):
    job.cancel()
if not running:
    ui.show_estimate(jobs.JobKind.DISTILL, cfg)
autostart = st.session_state.pop("autostart", False)
if (start_clicked or autostart) and not running:
    start(cfg)
    st.rerun()  # so Start and Stop are drawn for the running job

if job is None:
    st.info(
        "Set up the teachers and the student in the sidebar and press **Start**. You will see both students' "
        "test accuracy and training loss live, epoch by epoch."
    )
else:
    verb = "Running" if running else "This run used"
    st.markdown(f"**{verb}:** {describe(job.config)}")
    diff = changed(job.config, cfg)
    if diff:
        st.caption(
            f":material/warning: Settings changed since this run started ({', '.join(diff)}) — "
            "press **Start** to run with the new ones."
        )
    if running:
        live(job.id)
    elif job.state is jobs.JobState.FAILED:
        ui.show_job_failure(
            job,
            "Change the settings in the sidebar (for example a lower T or a different "
            "student) and press **Start** again.",
        )
    elif job.result() is None:
        st.warning(
            "Stopped before both students finished their first epoch, so there is nothing to compare. Teachers "
            "that finished stay cached; press **Start** to run again."
        )
    else:
        results(job, job.result())
history()
