"""Experiments page: four what-if studies of distillation (T × α sweep, less data, missing class, student size)."""

from __future__ import annotations

import streamlit as st

import charts
import ui
from kdcore import describe, events, experiments, glossary, jobs, limits, links, models, studies

st.set_page_config(page_title="Experiments · KD Playground", page_icon=":material/grid_on:", layout="wide")


def draw(kind: str, snap: dict, *, live: bool) -> None:
    """The study's charts from a result's `to_json()` (or a cell event's snapshot of it)."""
    tag = "live" if live else "final"
    if kind == "sweep":
        ui.chart(charts.sweep_accuracy(snap, live), key=f"sweep_{tag}", live=live)
        if 0.0 in snap["alphas"]:
            st.caption("α = 0 cells are the scratch student itself: with no weight on the teacher, T does nothing.")
        return
    if kind == "missing-class":
        left, right = st.columns([3, 2])
        ui.chart(charts.missing_class_study(snap), left, key=f"missing_{tag}", live=live)
        right.markdown(describe.bias_fix_sentence(snap))
        right.caption(
            f"The students trained on {snap['transfer_size']:,} images without a single "
            f"{snap['class_name']}. "
            "A student that never sees a class learns to rarely predict it; Hinton et al. raise that "
            "class's output bias so the knowledge the soft targets carried can show."
        )
        return
    if kind == "fraction":
        figures = charts.fraction_accuracy(snap), charts.fraction_gain(snap)
    else:
        figures = charts.capacity_accuracy(snap), charts.capacity_gain(snap)
    for column, fig, part in zip(st.columns(2), figures, ("acc", "gain")):
        ui.chart(fig, column, key=f"{kind}_{part}_{tag}", live=live)
    if kind == "fraction":
        st.caption(f"Epochs per fraction: {snap['epoch_rule']}.")


@ui.live_charts
def live_result(kind: str, job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is None:
        return
    options = dict(job.spec.options)
    empty = charts.empty_sweep(options["temperatures"], options["alphas"]) if kind == "sweep" else None
    snap = job.progress().snapshot or empty
    if snap is not None:
        draw(kind, snap, live=True)


# ---- one tab per study --------------------------------------------------------------------------


def show(kind: str, job: jobs.Job | None, what_to_do: str) -> None:
    """The running study's live view, or its final (possibly partial) result with its reading."""
    if job is None:
        return
    verb = "Running" if job.state in ui.ACTIVE else "This study used"
    st.markdown(f"**{verb}:** {describe.config_summary(job.config, studies.VARIES[kind])}")
    if job.state in ui.ACTIVE:
        ui.live_progress(job.id)
        live_result(kind, job.id)
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
    if kind == jobs.JobKind.CAPACITY and result.assistant_reading():
        st.info(result.assistant_reading(), icon=":material/school:")
    st.caption(f"Took {events.format_seconds(result.seconds)}.")


def study(kind: jobs.JobKind, cfg, plan: str, why_not: str, name: str, change: str, **options) -> None:
    """A tab's plan (what it trains) or why it cannot start, its Start and Stop, and its job's view."""
    if why_not:
        st.warning(why_not)
    else:
        st.caption(f"{plan} · also uses {describe.config_summary(cfg, studies.VARIES[kind])} from the sidebar.")
    job = ui.job_by_id(st.session_state.get(f"experiment_job_{kind}"))
    stop_help = "Stops after the current batch; finished cells are kept as a partial result."
    if ui.start_stop(job, "study", stop_help, key=kind, why_not=why_not):
        status = ui.dataset_status().get(cfg.dataset)
        if status is not None and status.state == "unavailable":
            ui.show_dataset_error(status.message)
        else:
            st.session_state[f"experiment_job_{kind}"] = ui.submit(kind, cfg, name, **options).id
            st.rerun()  # so Start and Stop are drawn for the running job
    show(kind, job, f"Change {change} or the sidebar settings and press **Start** again.")


def sweep_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Which temperature and teacher weight work best?** Each cell is one distilled student trained "
        "with that T and α. Its colour compares it with the same student trained from scratch: white is "
        "equal, green better, red worse.",
        help=glossary.tooltip("temperature", "alpha", "scratch student", "percentage points"),
    )
    left, right = st.columns(2)
    ts = left.multiselect(
        f"Temperatures T (rows, up to {studies.MAX_GRID})",
        studies.SWEEP_TEMPERATURES,
        default=list(studies.DEFAULT_TEMPERATURES),
        max_selections=studies.MAX_GRID,
        format_func="{:g}".format,
        key="sweep_temperatures",
        help=ui.HELP["temperature"],
    )
    als = right.multiselect(
        f"Weights α (columns, up to {studies.MAX_GRID})",
        studies.SWEEP_ALPHAS,
        default=list(studies.DEFAULT_ALPHAS),
        max_selections=studies.MAX_GRID,
        format_func="{:g}".format,
        key="sweep_alphas",
        help=ui.HELP["alpha"],
    )
    ts, als = sorted(ts), sorted(als)
    plan = f"{len(ts)} × {len(als)} grid: {studies.sweep_students(ts, als)} students, the scratch one included"
    why_not = "" if ts and als else "Pick at least one temperature and one α."
    name = f"T × α sweep {len(ts)}×{len(als)} ({cfg.dataset})"
    study(jobs.JobKind.SWEEP, cfg, plan, why_not, name, "the grid", temperatures=ts, alphas=als)


def fraction_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Does the teacher make up for missing labels?** At each share of the training images, the "
        "same student trains from scratch and distilled, on the same stratified subset. Soft targets "
        "usually help most when examples are few.",
        help=glossary.tooltip("data fraction", "soft targets", "KD gain"),
    )
    fs = st.multiselect(
        f"Shares of the training images (up to {studies.MAX_POINTS})",
        limits.UI_FRACTIONS,
        default=list(studies.DEFAULT_FRACTIONS),
        max_selections=studies.MAX_POINTS,
        format_func=describe.share,
        key="fraction_values",
        help=ui.HELP["fraction"],
    )
    fs = sorted(fs)
    per_share = ", ".join(f"{describe.share(f)}: {studies.fraction_epochs(cfg.epochs, f, cfg.fraction)}" for f in fs)
    plan = (
        f"{2 * len(fs)} students · epochs per share ({per_share}): smaller shares train longer so each "
        "student gets enough steps"
    )
    name = f"Less data: {', '.join(map(describe.share, fs))} ({cfg.dataset})"
    why_not = "" if fs else "Pick at least one share of the data."
    study(jobs.JobKind.FRACTION, cfg, plan, why_not, name, "the shares", fractions=fs)


def missing_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Can a student recognise a class it never saw?** Following Hinton et al. (2015, section 3), "
        "the students' training images leave out one class entirely. Only the distilled student hears "
        "about it — through the teacher's soft targets on other images that look a little like it.",
        help=glossary.tooltip("soft targets", "dark knowledge", "logits"),
    )
    names = describe.class_names(cfg.dataset)
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
        help="After training, raise the distilled student's output bias (added to the missing class's logit), "
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
    plan = f"2 students of {describe.plural(cfg.epochs, 'epoch')}"
    name = f"Missing class {names[missing]} ({cfg.dataset})"
    options = dict(missing=missing, bias_fix=fix, bias_value=bias)
    study(jobs.JobKind.MISSING_CLASS, cfg, plan, "", name, "the class", **options)


def capacity_tab(cfg: experiments.RunConfig) -> None:
    st.markdown(
        "**Is the student big enough to take what the teacher knows?** For each student size, a scratch "
        "and a distilled student train with the sidebar's T, α and data. A tiny student may lack the "
        "room to use the soft targets; a large one may learn most of it from the labels alone.",
        help=glossary.tooltip("parameters", "MLP", "CNN"),
    )
    picked = st.multiselect(
        "Student sizes",
        [m.name for m in models.available("student")],
        default=studies.family_students(cfg.student),
        max_selections=studies.MAX_POINTS,
        key=f"capacity_students_{cfg.student}",
        help=ui.HELP["student"],
    )
    through = studies.assisted_sizes(cfg.student, picked, cfg.dataset)
    # As the study counts them: the assistant is one more student, trained once and then cached.
    plan = f"{2 * len(picked) + len(through) + bool(through)} students of {describe.plural(cfg.epochs, 'epoch')}"
    if through:
        plan += (
            f" (the teacher assistant {studies.study_assistant(cfg.student)}, and {', '.join(through)} also "
            "distilled through it)"
        )
    why_not = "" if picked else "Pick at least one student size."
    name = f"Student capacity ({cfg.dataset})"
    study(jobs.JobKind.CAPACITY, cfg, plan, why_not, name, "the sizes", students=picked)


# ---- page ---------------------------------------------------------------------------------------

st.title("Experiments")
st.markdown(
    "Four questions about distillation, each answered by training a set of students against the cached "
    "teacher ensemble. The sidebar sets what they share; each tab sets what it varies. Studies keep "
    "running when you switch tabs or pages, and **Stop** keeps what has finished."
)
# The studies distil with Hinton KD, so the sidebar offers no method here (consistent augmentation applies).
cfg = ui.controls(show=(*links.RUN_CONTROLS, "augment"))
ui.settings_hint(cfg, ("student", "epochs"))
TABS = ("T × α sweep", "Less data", "Missing class", "Student capacity")
for tab, draw_tab in zip(st.tabs(TABS), (sweep_tab, fraction_tab, missing_tab, capacity_tab)):
    with tab:
        draw_tab(cfg)
