"""Shared UI pieces for the pages: session state, the sidebar controls, colours, jobs and error display.

Pages stay short: they call `controls()` to get the current RunConfig, start or look up a kdcore
job, and draw. Nothing here trains or measures anything; that is kdcore's job.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import streamlit as st
import torch

from kdcore import dark, experiments, jobs, links, models, store, teachers
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

HELP = {
    "dataset": "Which images to learn from. The MNIST sample works offline; the others download once.",
    "teachers": "The big models that teach. Several members form one ensemble teacher that averages their "
    "probabilities. Add '@1', '@2' variants to repeat an architecture with another seed.",
    "student": "The small model that learns. Both students (scratch and distilled) use this architecture.",
    "temperature": "T softens the teacher's probabilities: T = 1 is the teacher as is, higher T reveals "
    "which wrong classes it finds similar (the 'dark knowledge').",
    "alpha": "alpha weighs the teacher's soft targets against the true labels: 0 = labels only, 1 = teacher only.",
    "epochs": "How many passes over the training images each student makes.",
    "fraction": "Share of the training images the students see (the same stratified subset for both).",
    "seed": "Fixes the students' starting weights and the order of batches, so a run can be repeated.",
}

_FIELDS = ("dataset", "teachers", "student", "temperature", "alpha", "epochs", "fraction", "seed")
TEACHER_CHOICES = [f"{m.name}@{s}" if s else m.name for m in models.available("teacher") for s in range(3)]


def session_id() -> str:
    if "session_id" not in st.session_state:
        st.session_state.session_id = uuid.uuid4().hex[:12]
    return st.session_state.session_id


@st.cache_resource
def runner() -> jobs.JobRunner:
    job_runner = jobs.default_runner()
    # Jobs train in parallel threads of this one process: splitting the cores between them avoids the
    # oversubscription that makes every job many times slower than it would be alone.
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // job_runner.max_workers))
    return job_runner


def config() -> experiments.RunConfig:
    """The configuration the user has set (kept across pages and reruns); a shared link sets it first."""
    if "config" not in st.session_state:
        params = {k: st.query_params[k] for k in st.query_params}
        cfg, warnings = links.config_from_params(params) if params else (experiments.default_config(), [])
        st.session_state.config = cfg
        st.session_state.link_warnings = warnings
    return st.session_state.config


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
    """Draw the sidebar controls and return the validated config; invalid combinations keep the last good one."""
    cfg = config()
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
            max_selections=5,
            help=HELP["teachers"],
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
        )
    if "temperature" in show:
        values["temperature"] = sb.slider(
            "Temperature T",
            *links.TEMPERATURE_RANGE,
            key=_widget("temperature", float(cfg.temperature)),
            step=0.5,
            help=HELP["temperature"],
        )
    if "alpha" in show:
        values["alpha"] = sb.slider(
            "Weight α of the teacher", 0.0, 1.0, key=_widget("alpha", float(cfg.alpha)), step=0.05, help=HELP["alpha"]
        )
    if "epochs" in show:
        values["epochs"] = int(
            sb.number_input(
                "Student epochs", *links.EPOCH_RANGE, key=_widget("epochs", int(cfg.epochs)), help=HELP["epochs"]
            )
        )
    if "fraction" in show:
        values["fraction"] = sb.select_slider(
            "Fraction of training data",
            links.FRACTIONS,
            key=_widget("fraction", float(cfg.fraction)),
            format_func=lambda f: f"{f:.0%}",
            help=HELP["fraction"],
        )
    if "seed" in show:
        values["seed"] = int(
            sb.number_input("Seed", *links.SEED_RANGE, key=_widget("seed", int(cfg.seed)), help=HELP["seed"])
        )
    try:
        new = experiments.RunConfig(**{**values, "teachers": tuple(values["teachers"])})
    except ValueError as exc:
        sb.error(str(exc))
        return cfg
    st.session_state.config = new
    # Mirrored in the URL, so copying the address shares this exact setup (the page is in the path).
    st.query_params.from_dict(links.config_to_params(new))
    for warning in st.session_state.pop("link_warnings", []):
        st.warning(warning, icon=":material/link_off:")
    if sb.button("Reset to defaults", help="Back to the dataset's preset"):
        set_config(experiments.default_config(new.dataset))
        st.rerun()
    return new


def my_jobs(kind: str | None = None) -> list[jobs.Job]:
    """This session's jobs, newest first."""
    return [j for j in runner().jobs(owner=session_id()) if kind is None or j.kind == kind]


RECORDED_KINDS = ("distill", "sweep", "fraction", "missing-class", "capacity")


def submit(fn, *args, name: str, kind: str, **kwargs) -> jobs.Job:
    """Start a background job for this session; runs and experiments are also kept in the history."""
    if kind in RECORDED_KINDS:
        fn = store.recorded(fn, kind)
    return runner().submit(fn, *args, name=name, kind=kind, owner=session_id(), **kwargs)


def job_status(job: jobs.Job) -> None:
    """One line saying where a job is: queued (with position), running, stopped, failed or done."""
    state = job.state
    if state == jobs.JobState.QUEUED:
        st.info(
            f"⏳ {job.name}: waiting in the queue, position {job.queue_position()} "
            f"(the server trains {runner().max_workers} jobs at a time)."
        )
    elif state == jobs.JobState.FAILED:
        st.error(f"{job.name} failed: {job.error}")
    elif state == jobs.JobState.CANCELLED:
        st.warning(f"{job.name} was stopped; what it had finished is kept and labelled partial.")


def show_dataset_error(exc: Exception) -> None:
    st.error(f"**The dataset is not available.** {exc}")


def fmt_points(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} points"


def teacher_members(cfg: experiments.RunConfig) -> tuple[teachers.Member, ...]:
    return teachers.parse_members(cfg.teachers)


def job_by_id(job_id: str | None) -> jobs.Job | None:
    """This session's job with that id (None if unknown, e.g. after a server restart)."""
    return next((j for j in my_jobs() if j.id == job_id), None) if job_id else None


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
    for job in reversed(my_jobs("distill")):
        if job.state not in (jobs.JobState.DONE, jobs.JobState.CANCELLED):
            continue
        try:
            result = job.result(timeout=0)
        except Exception:
            continue
        if result is not None:
            results.append(result)
    return results


def show_teacher_step(teachers_: list[str], dataset: str, events: list[dict], prefix: str = "") -> None:
    """The "preparing the teacher ensemble" part of a run's progress: a bar with an ETA and each member's status."""
    p = teacher_progress(teachers_, events)
    if not p.total_epochs:
        st.progress(0.0, text=f"{prefix}Loading the {dataset} images…")
        return
    eta = "" if p.eta_seconds is None else f" · about {dark.format_seconds(p.eta_seconds)} left at most"
    st.progress(
        p.fraction,
        text=f"{prefix}Preparing the teacher ensemble: {p.done_epochs:.1f} of {p.total_epochs} teacher epochs{eta}",
    )
    st.markdown(" · ".join(f"**{m}** {s}" for m, s in p.status.items()))


@dataclass
class TeacherProgress:
    """Where a teacher-ensemble job is, summarised from its events."""

    status: dict[str, str]  # member -> human-readable status
    done_epochs: float  # cached members count as fully done
    total_epochs: int
    eta_seconds: float | None  # None until a member has trained long enough to time it
    current: str | None

    @property
    def fraction(self) -> float:
        return min(1.0, self.done_epochs / self.total_epochs) if self.total_epochs else 0.0


def teacher_progress(members: list[str], events: list[dict]) -> TeacherProgress:
    """Per-member status, epochs done out of all members' epochs, and an ETA from the time per trained epoch."""
    per_member, count = 0, len(members)
    state = dict.fromkeys(members, "waiting")
    epochs = dict.fromkeys(members, 0.0)
    seconds = dict.fromkeys(members, 0.0)
    current = None
    for e in events:
        kind, member = e.get("kind"), e.get("member", e.get("model"))
        if kind == "teacher_start":
            per_member, count, current = e["epochs"], e["count"], member
            state.setdefault(member, "waiting")
            state[member] = "checking the cache"
        elif kind == "teacher" and member in state:
            state[member] = {"cached": "cached", "training": "training"}.get(e["status"], state[member])
            if e["status"] == "done" and state[member] != "cached":
                state[member] = "trained"
        elif kind in ("step", "epoch") and member in epochs:
            epochs[member] = float(e["epoch"])
            seconds[member] = float(e.get("elapsed", 0.0))
    trained = sum(epochs[m] for m in epochs if state.get(m) in ("training", "trained"))
    spent = sum(seconds[m] for m in seconds if state.get(m) in ("training", "trained"))
    done = sum(per_member if state[m] in ("cached", "trained") else epochs.get(m, 0.0) for m in state)
    eta = None
    if trained >= 0.2 and per_member:
        remaining = sum(per_member - epochs.get(m, 0.0) for m in state if state[m] not in ("cached", "trained"))
        eta = remaining * spent / trained
    labels = {}
    for m, s in state.items():
        if s == "training":
            labels[m] = f":material/hourglass_top: training, epoch {epochs[m]:.1f} of {per_member}"
        elif s == "trained":
            labels[m] = f":material/check_circle: trained in {seconds[m]:.0f} s and cached"
        elif s == "cached":
            labels[m] = ":material/check_circle: loaded from the cache"
        elif s == "checking the cache":
            labels[m] = ":material/search: checking the cache"
        else:
            labels[m] = ":material/schedule: waiting"
    return TeacherProgress(labels, done, per_member * count, eta, current)


def _raised_type(job: jobs.Job) -> str:
    """Class name of the exception that ended a job, read from its traceback's final unindented line."""
    for line in reversed((job.traceback or "").splitlines()):
        head = line.split(":", 1)[0]
        if line[:1].strip() and head.replace(".", "").replace("_", "").isalnum() and " " not in head:
            return head.rsplit(".", 1)[-1]
    return ""


def show_job_failure(job: jobs.Job, what_to_do: str) -> None:
    """A failed job's user-facing error and what to do; dataset problems get the dataset explanation."""
    raised = getattr(kdata, _raised_type(job), None)
    if isinstance(raised, type) and issubclass(raised, kdata.DatasetError):
        # Dataset errors are written for the user; drop the runner's "Training failed: <type>:" prefix.
        show_dataset_error((job.error or "").split(f"{raised.__name__}: ", 1)[-1])
    else:
        st.error(f"**{job.name} failed.** {job.error}\n\n{what_to_do}")


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
