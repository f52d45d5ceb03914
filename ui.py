"""Shared UI pieces for the pages: session state, the sidebar controls, colours, jobs and error display, and the
widgets more than one page draws (charts at full width, Start and Stop, the model and run tables, side-by-side
tables) or that would make a page long (the Dark knowledge image picker, the instructor's link panel).

Pages stay short: they call `controls()` to get the current RunConfig, start or look up a kdcore
job, and draw. Nothing here trains or measures anything; that is kdcore's job.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import asdict, dataclass

import pandas as pd
import streamlit as st
import torch

from kdcore import (
    assistant,
    budget,
    dark,
    describe,
    events,
    experiments,
    glossary,
    jobs,
    lessons,
    limits,
    links,
    methods,
    models,
    report,
    speed,
    teachers,
)
from kdcore import data as kdata
from kdcore import store as kstore
from kdcore.train import predict_logits

# One colour per role, used by every chart (colour-blind-safe Okabe-Ito hues).
COLORS = {"teacher": "#7F7F7F", "ensemble": "#CC79A7", "scratch": "#0072B2", "distilled": "#E69F00"}
ROLE_LABELS = {
    "teacher": "Teacher",
    "ensemble": "Teacher ensemble",
    "scratch": "Scratch student (no teacher)",
    "distilled": "Distilled student",
}
PLOT_FONT = dict(size=16)
ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)
CHART_CONFIG = {"displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d", "autoScale2d"]}
# The sidebar controls' labels, also used where a page names a control (the instructor's hide list).
CONTROL_LABELS = {
    "dataset": "Dataset",
    "teachers": "Teacher ensemble (1 to 5)",
    "student": "Student size",
    "temperature": "Temperature T",
    "alpha": "Weight α of the teacher",
    "epochs": "Student epochs",
    "fraction": "Fraction of training data",
    "seed": "Seed",
    "method": "Method",
    "alpha_tc": "Weight α_tc of the target class (TCKD)",
    "beta_nc": "Weight β_nc of the other classes (NCKD)",
    "assistant": "Teacher assistant",
    "generations": "Born-again generations",
    "augment": methods.AUGMENT_LABEL,
}

# Widget help comes from kdcore's one glossary, so a term means the same in every tooltip.
HELP = {
    "dataset": "Which images to learn from. The MNIST sample works offline; the others download once.",
    "teachers": glossary.tooltip("ensemble")
    + "\n\nAdd '@1', '@2' variants to repeat an architecture with another seed.",
    "student": glossary.tooltip("student", "MLP", "CNN"),
    "temperature": glossary.tooltip("temperature", "soft targets"),
    "alpha": glossary.tooltip("alpha"),
    "epochs": glossary.tooltip("epoch"),
    "fraction": glossary.tooltip("data fraction"),
    "seed": glossary.tooltip("seed"),
    "method": glossary.tooltip(*methods.LABELS.values()),
    "alpha_tc": glossary.tooltip("TCKD and NCKD", "Decoupled KD (DKD)"),
    "beta_nc": glossary.tooltip("TCKD and NCKD", "Decoupled KD (DKD)"),
    "assistant": glossary.tooltip("Teacher assistant")
    + "\n\nOnly models larger than the student are offered; the default is the next size up in its family.",
    "generations": glossary.tooltip("Self-distillation (born-again)")
    + "\n\nHow many students train after the scratch one (generation 0), each taught by the one before.",
    "augment": glossary.tooltip("Consistent augmentation")
    + "\n\nBoth students see the same altered copies, so the gain still measures what the teacher adds.",
}

_FIELDS = links.CONTROLS
TEACHER_CHOICES = [f"{m.name}@{s}" if s else m.name for m in models.available("teacher") for s in range(3)]


def session_id() -> str:
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex[:12]
    return st.session_state.session_id


@st.cache_resource
def runner() -> jobs.JobRunner:
    """The server's job runner: its worker processes (or Dask cluster) train; this process only draws."""
    return jobs.default_runner()


def live_fragment(fn):
    """A fragment that redraws a running job's progress on its own, as often as the server's load allows.

    The interval (kdcore.jobs.refresh_seconds) is read at every full rerun, so a page slows its redraws
    while a class's jobs queue and speeds up again when they are done.
    """
    return _live(fn, charts=False)


def live_charts(fn):
    """A live fragment for a running job's charts, redrawn less often than its progress (jobs.LIVE_CHARTS_EVERY)."""
    return _live(fn, charts=True)


def _live(fn, charts: bool):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        r = runner()
        every = jobs.refresh_seconds(r.active(), r.backend.slots(), charts=charts)
        return st.fragment(fn, run_every=every)(*args, **kwargs)

    return call


def config() -> experiments.RunConfig:
    """The configuration the user has set (kept across pages and reruns); a shared link sets it first."""
    if "config" not in st.session_state:
        params = {k: st.query_params[k] for k in st.query_params}
        cfg, warnings = links.config_from_params(params) if params else (experiments.default_config(), [])
        st.session_state.config = cfg
        st.session_state.link_warnings = st.session_state.get("link_warnings", []) + warnings
    return st.session_state.config


def link_view() -> links.LinkView:
    """How the link that opened this session asked the app to look (lesson, hidden controls, lock)."""
    if "link_view" not in st.session_state:
        params = {k: st.query_params[k] for k in st.query_params}
        view, warnings = links.view_from_params(params)
        st.session_state.link_view = view
        st.session_state.link_warnings = st.session_state.get("link_warnings", []) + warnings
    return st.session_state.link_view


def set_config(cfg: experiments.RunConfig) -> None:
    st.session_state.config = cfg
    for name in _FIELDS:  # widgets pick the new values up on the next run
        st.session_state.pop(f"w_{name}", None)


@st.cache_data(ttl=60, show_spinner=False)
def dataset_status() -> dict[str, kdata.DatasetStatus]:
    return {s.name: s for s in kdata.status(check_network=True)}


def _status_label(name: str) -> str:
    st_ = dataset_status().get(name)
    short = {
        "offline-sample": "offline sample",
        "ready": "ready",
        "unavailable": "unavailable offline",
        "will-download": f"will download {st_.size_bytes / 1e6:.0f} MB" if st_ else "will download",
    }
    return f"{name} ({short.get(st_.state, st_.state)})" if st_ else name


def _widget(name: str, default):
    key = f"w_{name}"
    if key not in st.session_state:
        st.session_state[key] = default
    return key


def controls(show=_FIELDS) -> experiments.RunConfig:
    """Draw the sidebar controls and return the validated config; invalid combinations keep the last good one.

    An instructor's link may hide controls (they keep the link's values) or lock them all (shown, read-only).
    """
    cfg = config()
    view = link_view()
    show = [name for name in show if view.shows(name)]
    for name in _FIELDS:
        # A widget's value does not follow it to another page unless it is re-assigned (Streamlit's own advice).
        if f"w_{name}" in st.session_state:
            st.session_state[f"w_{name}"] = st.session_state[f"w_{name}"]
    sb = st.sidebar
    sb.header("Setup")
    values = asdict(cfg)  # every field, a method's own ones included, so hidden controls keep theirs
    if "dataset" in show:
        ds = sb.selectbox(
            CONTROL_LABELS["dataset"],
            kdata.DATASETS,
            key=_widget("dataset", cfg.dataset),
            format_func=_status_label,
            help=HELP["dataset"],
            disabled=view.locked,
        )
        if ds != cfg.dataset:  # a new dataset brings its own preset
            base = experiments.default_config(ds)
            set_config(base)
            st.rerun()
        status = dataset_status().get(ds)
        if status is not None and status.state == "unavailable":
            sb.error(status.message)
    if "teachers" in show:
        picked = sb.multiselect(
            CONTROL_LABELS["teachers"],
            TEACHER_CHOICES,
            key=_widget("teachers", list(cfg.teachers)),
            max_selections=limits.MAX_TEACHERS,
            help=HELP["teachers"],
            disabled=view.locked,
        )
        values["teachers"] = tuple(picked) or cfg.teachers
        if not picked:
            sb.warning("Pick at least one teacher; keeping the previous ensemble.")
    if "student" in show:
        students = [m.name for m in models.available("student")]
        values["student"] = sb.selectbox(
            CONTROL_LABELS["student"],
            students,
            key=_widget("student", cfg.student),
            help=HELP["student"],
            disabled=view.locked,
        )
        # The description under the box: inside it, a long one was cut off mid-word.
        sb.caption(models.ZOO[values["student"]].description)
    runnable = _method_controls(sb, cfg, values, show, view.locked)
    if "temperature" in show:
        values["temperature"] = sb.slider(
            CONTROL_LABELS["temperature"],
            *links.TEMPERATURE_RANGE,
            key=_widget("temperature", float(cfg.temperature)),
            step=limits.UI_TEMPERATURE_STEP,
            help=HELP["temperature"],
            disabled=view.locked,
        )
    if "alpha" in show and values["method"] != "dkd":  # DKD weights its two parts with α_tc and β_nc instead
        values["alpha"] = sb.slider(
            CONTROL_LABELS["alpha"],
            0.0,
            1.0,
            key=_widget("alpha", float(cfg.alpha)),
            step=0.05,
            help=HELP["alpha"],
            disabled=view.locked,
        )
    if "epochs" in show:
        values["epochs"] = int(
            sb.number_input(
                CONTROL_LABELS["epochs"],
                *links.EPOCH_RANGE,
                key=_widget("epochs", int(cfg.epochs)),
                help=HELP["epochs"],
                disabled=view.locked,
            )
        )
    if "fraction" in show:
        values["fraction"] = sb.select_slider(
            CONTROL_LABELS["fraction"],
            links.FRACTIONS,
            key=_widget("fraction", float(cfg.fraction)),
            format_func=lambda f: f"{f:.0%}",
            help=HELP["fraction"],
            disabled=view.locked,
        )
    if "seed" in show:
        values["seed"] = int(
            sb.number_input(
                CONTROL_LABELS["seed"],
                *links.SEED_RANGE,
                key=_widget("seed", int(cfg.seed)),
                help=HELP["seed"],
                disabled=view.locked,
            )
        )
    if not runnable:
        return cfg
    try:
        new = experiments.RunConfig(**{**values, "teachers": tuple(values["teachers"])})
    except ValueError as exc:
        sb.error(str(exc))
        return cfg
    st.session_state.config = new
    # Mirrored in the URL, so copying the address shares this exact setup (the page is in the path); an
    # instructor's lesson, hidden controls and lock stay in it too.
    st.query_params.from_dict({**links.config_to_params(new), **links.view_to_params(view)})
    for warning in st.session_state.pop("link_warnings", []):
        st.warning(warning, icon=":material/link_off:")
    if view.locked:
        sb.caption(":material/lock: Your instructor fixed these settings for this lesson.")
    elif sb.button("Reset to defaults", help="Back to the dataset's preset"):
        set_config(experiments.default_config(new.dataset))
        st.rerun()
    sb.caption(f":material/memory: Jobs run on {runner().backend.describe()}.")
    return new


def _method_controls(sb, cfg: experiments.RunConfig, values: dict, show, locked: bool) -> bool:
    """The Method box and only the chosen method's own controls, into `values`; a combination the method cannot
    run is said in a warning and left out (consistent augmentation), or False is returned (no assistant)."""
    if "method" in show:
        values["method"] = sb.selectbox(
            CONTROL_LABELS["method"],
            limits.METHODS,
            key=_widget("method", cfg.method),
            format_func=methods.label,
            help=HELP["method"],
            disabled=locked,
        )
        sb.caption(methods.SUMMARIES[values["method"]])
    method, dataset, student = values["method"], values["dataset"], values["student"]
    if method == "dkd":
        low, high = limits.UI_DKD_WEIGHTS
        if "alpha_tc" in show:
            values["alpha_tc"] = sb.slider(
                CONTROL_LABELS["alpha_tc"],
                low,
                high,
                key=_widget("alpha_tc", float(cfg.alpha_tc)),
                step=limits.UI_DKD_STEP,
                help=HELP["alpha_tc"],
                disabled=locked,
            )
        if "beta_nc" in show:
            measured = experiments.default_config(dataset).nckd_weight
            beta = sb.slider(
                CONTROL_LABELS["beta_nc"],
                low,
                high,
                key=_widget("beta_nc", float(cfg.nckd_weight)),
                step=limits.UI_DKD_STEP,
                help=f"{HELP['beta_nc']}\n\nDefault on {dataset}: {measured:g} (see the README's measurements).",
                disabled=locked,
            )
            # The dataset's default stays "default" (None), so the run is the one the CLI's default makes.
            values["beta_nc"] = None if beta == measured else beta
    if method == "ta" and "assistant" in show:
        options = assistant.choices(student, dataset)
        if not options:
            sb.warning(
                f"No model is larger than the student {student}, so it cannot have a teacher assistant: pick a "
                "smaller student or another method."
            )
            return False
        else:
            default = assistant.default_assistant(student, dataset) or options[0]
            # A new student gets its own default, unless the chosen assistant is one it can have too.
            if st.session_state.get("assistant_student") != student and cfg.assistant not in options:
                st.session_state.pop("w_assistant", None)
            st.session_state.assistant_student = student
            chosen = sb.selectbox(
                CONTROL_LABELS["assistant"],
                options,
                key=_widget("assistant", cfg.assistant if cfg.assistant in options else default),
                format_func=lambda a: (
                    f"{a} ({describe.params(assistant.params(a, dataset))} parameters)"
                    + (" · next size up" if a == default else "")
                ),
                help=HELP["assistant"],
                disabled=locked,
            )
            values["assistant"] = None if chosen == default else chosen
    if method == "self" and "generations" in show:
        values["generations"] = sb.slider(
            CONTROL_LABELS["generations"],
            *limits.GENERATIONS,
            key=_widget("generations", int(cfg.generations)),
            help=HELP["generations"],
            disabled=locked,
        )
    if not methods.augment_offered(dataset):
        values["augment"] = False
    elif "augment" in show:
        values["augment"] = sb.toggle(
            CONTROL_LABELS["augment"], key=_widget("augment", bool(cfg.augment)), help=HELP["augment"], disabled=locked
        )
    if values["augment"] and methods.augment_conflict(method):
        sb.warning(methods.augment_conflict(method))
        values["augment"] = False
    return True


def my_jobs(kind: jobs.JobKind | None = None) -> list[jobs.Job]:
    """This session's jobs, newest first."""
    return [j for j in runner().jobs(owner=session_id()) if kind is None or j.kind == kind]


def submit(kind: jobs.JobKind, cfg: experiments.RunConfig, name: str, **options) -> jobs.Job:
    """Start a background job for this session; runs and studies are also kept in the history."""
    return runner().submit(jobs.JobSpec(kind, cfg, options, name=name, owner=session_id()))


def show_estimate(kind: jobs.JobKind, cfg: experiments.RunConfig, **options) -> None:
    """How long this job should take here, from the speed of recent runs, said before Start."""
    try:
        data = kdata.load(cfg.dataset, download=False)
    except kdata.DatasetError:
        return  # the dataset's own message is already on the page
    threads = budget.share(runner().running() + 1)
    estimate = speed.job_estimate(jobs.JobSpec(kind, cfg, options), data, threads)
    st.caption(f":material/schedule: {estimate.text}")


def job_status(job: jobs.Job) -> None:
    """One line saying where a job is: queued (with position), stopped or failed."""
    if job.state is jobs.JobState.QUEUED:
        st.info(f":material/hourglass_top: {job.name}: {job.progress().text}.")
    elif job.state is jobs.JobState.FAILED:
        st.error(f"{job.name} failed: {job.error.message}")
    elif job.state is jobs.JobState.CANCELLED:
        st.warning(f"{job.name} was stopped; what it had finished is kept and labelled partial.")


def show_dataset_error(exc: Exception | str) -> None:
    st.error(f"**The dataset is not available.** {exc}")


def fmt_points(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} points"


def teacher_members(cfg: experiments.RunConfig) -> tuple[teachers.Member, ...]:
    return teachers.parse_members(cfg.teachers)


def job_by_id(job_id: str | None) -> jobs.Job | None:
    """This session's job with that id (None if unknown, e.g. after a server restart)."""
    job = runner().get(job_id) if job_id else None
    return job if job is not None and job.owner == session_id() else None


def live_job(job_id: str | None) -> jobs.Job | None:
    """For a page's live-progress fragment: the job while it runs, None if unknown.

    Once the job has finished the whole page re-runs, so it draws the result in place of the fragment.
    """
    job = job_by_id(job_id)
    if job is not None and job.done:
        st.rerun()
    return job


def finished_distill_results() -> list[experiments.RunResult]:
    """This session's finished (or stopped) distillations that produced a result, oldest first."""
    results = []
    for job in reversed(my_jobs(jobs.JobKind.DISTILL)):
        if job.state in (jobs.JobState.DONE, jobs.JobState.CANCELLED) and job.result(timeout=0) is not None:
            results.append(job.result(timeout=0))
    return results


@live_fragment
def live_progress(job_id: str) -> None:
    """A running job's progress bar, redrawn on its own; the whole page reruns to draw the result, at once if
    the job ends within the next redraw (jobs.final_wait_seconds)."""
    job = live_job(job_id)
    if job is None:
        return
    r = runner()
    wait = jobs.final_wait_seconds(show_progress(job), jobs.refresh_seconds(r.active(), r.backend.slots()))
    if wait and job.wait(wait):
        st.rerun()


def show_progress(job: jobs.Job) -> events.Progress:
    """A running job's progress bar with its one line of text, and each teacher's state while teachers load."""
    p = job.progress()
    if job.state is jobs.JobState.QUEUED:
        job_status(job)
        return p
    if job.cancel_requested:
        st.warning("Stopping after the current batch…")
    elapsed = events.format_seconds(max(0.0, (job.finished or time.time()) - (job.started or time.time())))
    st.progress(min(1.0, p.fraction), text=f"{p.text} · {elapsed} elapsed")
    if p.phase is events.Phase.TEACHERS:
        st.markdown(" · ".join(f"**{m}** {line.label}" for m, line in p.teachers.items()))
    for notice in p.notices:
        st.warning(notice.message, icon=":material/warning:")
    return p


def show_job_failure(job: jobs.Job, what_to_do: str) -> None:
    """A failed job's user-facing error and what to do; dataset problems get the dataset explanation."""
    if job.error.about_dataset:
        show_dataset_error(job.error.message)
    else:
        st.error(f"**{job.name} failed.** {job.error.message}\n\n{what_to_do}")


def readable(fig, height: int = 430):
    """Projector-sized text on every part of a plotly figure; Streamlit's chart theme would shrink ticks and legend."""
    fig.update_layout(
        font=PLOT_FONT,
        title_font=dict(size=20),
        legend_font=dict(size=15),
        height=height,
        margin=dict(l=10, r=10, t=60, b=10),
        # Upright at the right edge, the toolbar shown on hover covers neither the title nor the subtitle.
        modebar=dict(orientation="v", bgcolor="rgba(255,255,255,0.85)"),
    )
    fig.update_xaxes(tickfont=dict(size=15), title_font=dict(size=17, color="#333"))
    fig.update_yaxes(tickfont=dict(size=15), title_font=dict(size=17, color="#333"))
    return fig


def chart(fig, where=None, *, key: str | None = None, live: bool = False) -> None:
    """A plotly figure at full width with the app's toolbar; a live chart, rebuilt every second, has none."""
    config = {**CHART_CONFIG, "displayModeBar": False} if live else CHART_CONFIG
    (where or st).plotly_chart(fig, width="stretch", config=config, key=key)


def settings_hint(cfg: experiments.RunConfig, shown=("method", "temperature", "alpha", "student")) -> None:
    """Say where the settings are: on a phone the sidebar starts closed, behind the » at the top left."""
    view = link_view()
    values = {
        "student": f"student {cfg.student}",
        "temperature": f"T = {cfg.temperature:g}",
        "alpha": f"α = {cfg.alpha:g}",
        "epochs": describe.plural(cfg.epochs, "epoch"),
        "dataset": cfg.dataset,
        "teachers": " + ".join(cfg.teachers),
    }
    if cfg.method == "dkd":  # DKD weights its parts with α_tc and β_nc, not α
        values["alpha"] = f"α_tc = {cfg.alpha_tc:g}, β_nc = {cfg.nckd_weight:g}"
    values["method"] = "" if cfg.method == "kd" else methods.label(cfg.method)
    now = ", ".join(values[name] for name in shown if values.get(name) and view.shows(name))
    st.caption(
        f":material/tune: **Settings** ({now}, …) are in the sidebar, opened on a phone with the **»** at the top left."
    )


def start_stop(job: jobs.Job | None, what: str, stop_help: str, key: str | None = None, why_not: str = "") -> bool:
    """Start and Stop side by side for this page's job; True when Start was pressed while nothing runs.

    `why_not` says why Start is disabled (e.g. an empty grid); `what` names the job in the help ("run", "study").
    """
    running = job is not None and job.state in ACTIVE
    b1, b2, _ = st.columns([1, 1, 4])
    clicked = b1.button(
        "Start",
        type="primary",
        icon=":material/play_arrow:",
        width="stretch",
        disabled=running or bool(why_not),
        key=None if key is None else f"start_{key}",
        help=f"Stop the current {what} first." if running else why_not or f"Start this {what}.",
    )
    if b2.button(
        "Stop",
        icon=":material/stop:",
        width="stretch",
        key=None if key is None else f"stop_{key}",
        disabled=not running or job.cancel_requested,
        help=stop_help,
    ):
        job.cancel()
    return clicked and not running


@st.cache_resource(show_spinner=False)
def _open_store(path: str) -> kstore.RunStore:
    return kstore.open_store(path)


def history_store() -> kstore.RunStore:
    """The server's run history, one per data folder (so a changed KD_DATA_DIR, as in tests, opens its own)."""
    return _open_store(str(kdata.data_dir() / kstore.DEFAULT_FILENAME))


_num = st.column_config.NumberColumn
# Short headers, so a table's columns fit at desktop width and the important ones show first on a phone; the
# full meaning is in each header's tooltip, from the glossary where it has the term.
MODEL_TABLE = {
    report.MODEL: st.column_config.TextColumn(
        "Model", width="medium", pinned=True, help="Teachers, their ensemble, and each run's two students."
    ),
    report.ROLE: st.column_config.TextColumn("Role"),
    report.DATASET: st.column_config.TextColumn("Dataset"),
    report.RUN: st.column_config.TextColumn("Run", help="The run's number on the History page."),
    report.ACCURACY: _num("Accuracy %", format="%.1f", help="Share of the test images classified correctly."),
    report.SPEEDUP: _num("× faster", format="%.1f", help="Speed-up: the ensemble's latency divided by this model's."),
    report.COMPRESSION: _num(
        "× smaller", format="%.1f", help="Compression: the ensemble's parameters divided by this model's."
    ),
    report.LATENCY: _num("ms / image", format="%.2f", help=glossary.tooltip("latency")),
    report.PARAMS: _num("Params", format="localized", help=glossary.tooltip("parameters")),
    report.SIZE: _num("MB", format="%.2f", help="Size of the weights file in megabytes."),
    report.THROUGHPUT: _num("images / s", format="localized", help=glossary.tooltip("throughput")),
    report.AGREEMENT: _num("Agrees %", format="%.1f", help=glossary.tooltip("agreement")),
    report.ECE: _num("ECE", format="%.3f", help=glossary.tooltip("ECE")),
    report.PARTIAL: st.column_config.CheckboxColumn("Partial", help="The run was stopped before its last epoch."),
}
# What matters most first: a phone shows the first two or three columns next to the model.
MODEL_TABLE_ORDER = [
    report.MODEL,
    report.ACCURACY,
    report.SPEEDUP,
    report.COMPRESSION,
    report.LATENCY,
    report.PARAMS,
    report.SIZE,
    report.THROUGHPUT,
    report.AGREEMENT,
    report.ECE,
    report.RUN,
    report.ROLE,
    report.DATASET,
    report.PARTIAL,
]


# The columns of kdcore.describe's run tables (this session's runs on Distill, the saved runs on History).
RUN_TABLE = {
    "Run": _num(help="The run's number on the History page; it stays until the run is deleted.", format="%d"),
    "T": _num(format="%g", help=glossary.tooltip("T")),
    "α": _num(format="%g", help=glossary.tooltip("α")),
    "Epochs": _num(),
    "Scratch (%)": _num("Scratch %", format="%.2f", help=glossary.tooltip("scratch student")),
    "Distilled (%)": _num("Distilled %", format="%.2f", help=glossary.tooltip("distilled student")),
    "KD gain (points)": _num("KD gain", format="%+.2f", help=glossary.tooltip("KD gain")),
    "Partial": st.column_config.CheckboxColumn(help="Stopped before all epochs finished"),
}


def open_history() -> kstore.RunStore | None:
    """The run history, or None after saying why it cannot be opened."""
    try:
        return history_store()
    except (kstore.StoreError, kdata.DatasetError) as exc:
        st.error(f"**The run history cannot be opened.** {exc}")
        return None


DIFFERS = "background-color: #FFF1C2"


def side_by_side(columns: dict[str, dict[str, str]]) -> None:
    """Things described field by field, one column each; with more than one, the rows that differ are shaded."""
    frame = pd.DataFrame(columns)
    data = frame
    if len(columns) > 1:
        # Shading the rows that differ points straight at what was changed between them.
        data = frame.style.apply(lambda row: [DIFFERS if row.nunique() > 1 else ""] * len(row), axis=1)
    st.dataframe(
        data,
        width="stretch",
        height=35 * (len(frame) + 1) + 3,
        column_config={"_index": st.column_config.TextColumn(width="medium")},
    )


def student_downloads(records: list[kstore.RunRecord]) -> None:
    """A download button for each saved run's distilled student (safetensors), or why its file is missing."""
    with_student = [r for r in records if r.student_path is not None]
    if not with_student:
        return
    st.markdown(
        "**Distilled students** · weights in safetensors format, for the student architecture named in "
        "the run's settings"
    )
    cols = st.columns(min(4, len(with_student)))
    for n, rec in enumerate(with_student):
        col = cols[n % len(cols)]
        path = rec.student_path
        if not path.is_file():
            col.caption(f":material/warning: The student file of run {rec.id} is missing ({path}).")
            continue
        col.download_button(
            f"Student of run {rec.id}",
            data=path.read_bytes,
            icon=":material/download:",
            file_name=f"kd-run-{rec.id}-{rec.config.get('student', 'student')}.safetensors",
            mime="application/octet-stream",
            on_click="ignore",
            key=f"hist_download_{rec.id}",
            help=f"{rec.config.get('student')} on {rec.dataset}, {describe.file_size(path.stat().st_size)}",
        )


def model_table(df, hide=()) -> None:
    """report.comparison_table's rows with short headers and the important columns first; `hide` leaves some out."""
    shown = df.copy()
    shown[report.THROUGHPUT] = shown[report.THROUGHPUT].round()
    order = [c for c in MODEL_TABLE_ORDER if c in shown.columns and c not in hide]
    st.dataframe(shown, hide_index=True, width="stretch", column_config=MODEL_TABLE, column_order=order)


# ---- teachers a page needs ----------------------------------------------------------------------------------


@live_fragment
def _teachers_progress(job: jobs.Job) -> None:
    if job.state not in ACTIVE:
        st.rerun()
    show_progress(job)
    if st.button("Stop training", icon=":material/stop:"):
        job.cancel()


def offer_teacher_training(cfg: experiments.RunConfig) -> None:
    """The teachers a page needs are not on disk: train them in the background, never in the page's script."""
    name = f"Teachers for {cfg.dataset}: {' + '.join(cfg.teachers)}"
    mine = [j for j in my_jobs(jobs.JobKind.TEACHERS) if j.name == name]
    st.info(
        "**These teachers are not trained yet.** Train them once; they are then kept on disk and this page "
        "shows their soft targets instantly. Training runs in the background, so you can visit other pages "
        "meanwhile."
    )
    active = next((j for j in mine if j.state in ACTIVE), None)
    if active is not None:
        _teachers_progress(active)
        return
    show_estimate(jobs.JobKind.TEACHERS, cfg)
    if mine:
        job_status(mine[0])
    if st.button("Train these teachers", type="primary", icon=":material/play_arrow:"):
        submit(jobs.JobKind.TEACHERS, cfg, name)
        st.rerun()


# ---- an image to look at through the teacher's eyes (Dark knowledge) ----------------------------------------

THUMBS, THUMB_PX = 12, 84
UPLOAD = "Upload an image"


@dataclass
class Selected:
    """The image being inspected and every model's logits for it."""

    image: torch.Tensor  # uint8 [C, H, W]
    teacher: torch.Tensor  # ensemble logits [K]
    members: list[torch.Tensor]
    label: int | None  # true class, unknown for drawn or uploaded images
    student: torch.Tensor | None
    source: str


def _choose(index: int) -> None:
    st.session_state.dark_index = index


def _new_random() -> None:
    st.session_state.dark_seed = st.session_state.get("dark_seed", 0) + 1
    unpin_probe_image()


def unpin_probe_image() -> None:
    """Let the test-set picker show its own images again instead of a probe image picked further down."""
    st.session_state.pop("dark_probe_index", None)


# The Dark knowledge page's ways to pick a test image, by their labels (kdcore.dark.PICK_MODES).
PICK_LABELS = {
    "Clear runner-up": "telling",
    "By class": "class",
    "At random": "random",
    "Most ambiguous to the teacher": "ambiguous",
    "Teacher's mistakes": "mistakes",
}


def pick_from_test_set(data, ens, how: str, student_logits) -> Selected | None:
    """A row of test images picked by kdcore.dark.pick_images (`how`), each with a Look button."""
    cls = None
    if how == "class":
        cls = st.selectbox(
            "Class",
            range(data.num_classes),
            format_func=lambda i: data.classes[i],
            key="dark_class",
            on_change=unpin_probe_image,
        )
    elif how == "random":
        st.button("New random images", icon=":material/casino:", on_click=_new_random)
    seed = st.session_state.get("dark_seed", 0)
    idx = dark.pick_images(ens.test_logits, data.test_y, how, cls=cls, k=THUMBS, seed=seed).tolist()
    if not idx:
        st.info("The teacher ensemble gets every test image right, so there are no mistakes to show.")
        return None
    current = st.session_state.get("dark_index")
    # A probe image picked in "Watching the students learn" stays shown though it is not among these.
    pinned = current is not None and current == st.session_state.get("dark_probe_index")
    if current not in idx and not pinned:
        current = idx[0]
    preds = ens.test_logits[idx].argmax(1).tolist()
    st.caption(
        "Under each image: true class → the teacher's answer (✗ marks a mistake). "
        "Click **Look** to inspect an image below."
    )
    for n, (col, i, pred) in enumerate(zip(st.columns(THUMBS), idx, preds)):
        mark = "✓" if pred == int(data.test_y[i]) else "✗"
        caption = f"{data.classes[int(data.test_y[i])]} → {data.classes[pred]} {mark}"
        col.image(dark.enlarge(data.test_x[i], THUMB_PX), width="stretch", caption=caption)
        kind = "primary" if i == current else "secondary"
        col.button("Look", key=f"dark_pick_{n}", on_click=_choose, args=(i,), type=kind, width="stretch")
    if current not in idx:
        st.caption(f"Showing test image #{current}, picked among the probe images further down this page.")
    members = [m.test_logits[current] for m in ens.members]
    student = None if student_logits is None else student_logits[current]
    label = int(data.test_y[current])
    return Selected(data.test_x[current], ens.test_logits[current], members, label, student, f"test image #{current}")


def _run_models(image: torch.Tensor, data, ens, student, source: str) -> Selected:
    members, combined = dark.predict_image(ens.models, image, data.mean, data.std, ens.combine)
    student_out = None if student is None else predict_logits(student, image.unsqueeze(0), data.mean, data.std)[0]
    return Selected(image, combined, members, None, student_out, source)


def draw_image(data, ens, student) -> Selected | None:
    """A black square to draw on, read as a test image of this dataset."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:
        st.error(
            "The drawing canvas could not be loaded in this installation. "
            f"Draw a digit in any paint program and use **{UPLOAD}** instead."
        )
        return None
    thing = "piece of clothing" if data.name.startswith("fashion") else "digit"
    st.caption(
        f"Draw one large {thing} with the mouse (or a finger); the buttons that appear above the square undo or clear."
    )
    st.space(36)  # room for that toolbar, which would otherwise cover the hint above
    canvas = st_canvas(
        stroke_width=18,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=280,
        width=280,
        drawing_mode="freedraw",
        return_image_data=True,
        key="dark_canvas",
    )
    try:
        image = None if canvas.image_data is None else dark.image_from_canvas(canvas.image_data, data.name)
    except dark.ImageError:
        image = None
    if image is None:
        st.info("Draw on the black square; the teacher's answer appears below.")
        return None
    return _run_models(image, data, ens, student, "your drawing, as the teacher sees it (28 × 28)")


def upload_image(data, ens, student) -> Selected | None:
    kind = "a digit" if data.image_shape[0] == 1 and not data.name.startswith("fashion") else "a picture"
    file = st.file_uploader(
        f"Upload {kind} ({dark.UPLOAD_FORMATS_TEXT}, up to {dark.MAX_UPLOAD_BYTES // 2**20} MB)",
        type=list(dark.UPLOAD_EXTENSIONS),
        key="dark_upload",
    )
    if file is None:
        return None
    try:
        image = dark.image_from_upload(file.getvalue(), data)
    except dark.ImageError as exc:
        st.error(str(exc))
        return None
    except Exception as exc:
        st.error(f"Could not use this image ({type(exc).__name__}): upload a {dark.UPLOAD_FORMATS_TEXT} image.")
        return None
    return _run_models(image, data, ens, student, f"uploaded file {file.name}")


# ---- a lesson link for a class (Lessons) -------------------------------------------------------------------

DEFAULT_BASE_URL = "http://localhost:8501/Lessons"  # when the browser has not told the server its address
LIST = 0  # the link opens the list of lessons (lesson numbers start at 1)


def instructor_panel(all_lessons: tuple[lessons.Lesson, ...], current: lessons.Lesson | None) -> None:
    """Compose a link that opens a lesson (or the list) with controls hidden or locked, as text and QR code."""
    with st.expander("For instructors", icon=":material/co_present:"):
        st.markdown(
            "Compose a link for your class: it opens a lesson with its settings in the sidebar, can hide "
            "sidebar controls, and can lock the rest read-only. Put the QR code on the projector."
        )
        numbers = [LIST] + [lesson.number for lesson in all_lessons]
        number = st.selectbox(
            "The link opens",
            numbers,
            index=numbers.index(current.number if current else LIST),
            format_func=lambda n: "the list of lessons" if n == LIST else f"lesson {n}",
            key=f"instructor_lesson_{current.number if current else 'list'}",
        )
        st.markdown("Hide these sidebar controls:")
        columns = st.columns(4)
        hide = [
            name
            for i, name in enumerate(links.CONTROLS)
            if columns[i % 4].checkbox(CONTROL_LABELS[name], key=f"instructor_hide_{name}")
        ]
        lock = st.checkbox("Lock the controls that stay visible (read-only)", key="instructor_lock")
        chosen = lessons.find(all_lessons, number)
        config = chosen.preset.config if chosen else None
        link = links.instructor_link(st.context.url or DEFAULT_BASE_URL, number or None, hide, lock, config)
        st.code(link, language=None, wrap_lines=True)
        try:
            svg = links.qr_svg(link)
        except ValueError as exc:
            st.warning(str(exc))
            return
        st.image(svg, width=280, caption="Scan to open the link")


def _use_app_navigation() -> None:
    """Route every run through app.py's st.navigation, even on a fresh server opened directly on a page URL.

    Until st.navigation has been called once in the process, Streamlit treats a pages/ folder in its
    legacy way: it runs the requested page on its own, without app.py, and lists every file in the
    menu (with app.py as "app"). Switching that mode off and re-running once fixes the menu for good.
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # a Streamlit without this internal has no legacy mode to leave
        return
    if getattr(PagesManager, "uses_pages_directory", False) and st.runtime.exists():
        PagesManager.uses_pages_directory = False
        st.rerun()


_use_app_navigation()
