"""Shared UI pieces for the pages: session state, the sidebar controls, colours, jobs and error display.

Pages stay short: they call `controls()` to get the current RunConfig, start or look up a kdcore
job, and draw. Nothing here trains or measures anything; that is kdcore's job.
"""

from __future__ import annotations

import time
import uuid

import streamlit as st

from kdcore import budget, events, experiments, glossary, jobs, limits, links, models, speed, teachers
from kdcore import data as kdata

# One colour per role, used by every chart (colour-blind-safe Okabe-Ito hues).
COLORS = {"teacher": "#7F7F7F", "ensemble": "#CC79A7", "scratch": "#0072B2", "distilled": "#E69F00"}
ROLE_LABELS = {
    "teacher": "Teacher",
    "ensemble": "Teacher ensemble",
    "scratch": "Scratch student (no teacher)",
    "distilled": "Distilled student",
}
PLOT_FONT = dict(size=16)

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
    values = cfg.to_dict()
    if "dataset" in show:
        ds = sb.selectbox(
            "Dataset",
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
            "Teacher ensemble (1 to 5)",
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
            "Student size",
            students,
            key=_widget("student", cfg.student),
            format_func=lambda n: f"{n} ({models.ZOO[n].description})",
            help=HELP["student"],
            disabled=view.locked,
        )
    if "temperature" in show:
        values["temperature"] = sb.slider(
            "Temperature T",
            *links.TEMPERATURE_RANGE,
            key=_widget("temperature", float(cfg.temperature)),
            step=0.5,
            help=HELP["temperature"],
            disabled=view.locked,
        )
    if "alpha" in show:
        values["alpha"] = sb.slider(
            "Weight α of the teacher",
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
                "Student epochs",
                *links.EPOCH_RANGE,
                key=_widget("epochs", int(cfg.epochs)),
                help=HELP["epochs"],
                disabled=view.locked,
            )
        )
    if "fraction" in show:
        values["fraction"] = sb.select_slider(
            "Fraction of training data",
            links.FRACTIONS,
            key=_widget("fraction", float(cfg.fraction)),
            format_func=lambda f: f"{f:.0%}",
            help=HELP["fraction"],
            disabled=view.locked,
        )
    if "seed" in show:
        values["seed"] = int(
            sb.number_input(
                "Seed", *links.SEED_RANGE, key=_widget("seed", int(cfg.seed)), help=HELP["seed"], disabled=view.locked
            )
        )
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
    missing = [m.name for m in teachers.missing_members(data, teacher_members(cfg), cfg.teacher_epochs)]
    threads = budget.share(runner().running() + 1)
    estimate = speed.job_estimate(jobs.JobSpec(kind, cfg, options), data, missing, threads)
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
    )
    fig.update_xaxes(tickfont=dict(size=15), title_font=dict(size=17, color="#333"))
    fig.update_yaxes(tickfont=dict(size=15), title_font=dict(size=17, color="#333"))
    return fig


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
