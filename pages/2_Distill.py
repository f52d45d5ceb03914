"""Distill page: train a distilled and a scratch student side by side, live, and show what the teacher added."""

from __future__ import annotations

import streamlit as st

import charts
import ui
from kdcore import describe, events, experiments, glossary, jobs, methods, report, stats, studies

st.set_page_config(page_title="Distill · KD Playground", page_icon=":material/science:", layout="wide")


def start(cfg: experiments.RunConfig) -> None:
    # A dataset that cannot be loaded fails the job at once, with kdcore's explanation of where to put the files.
    name = f"{cfg.student} {methods.settings_text(cfg).replace(', ', ' ')} ({cfg.dataset})"
    st.session_state.distill_job = ui.submit(jobs.JobKind.DISTILL, cfg, name).id


def curves(acc, loss, parts=None, *, live: bool = False) -> None:
    """Accuracy and loss side by side; for DKD, its two loss parts below them."""
    left, right = st.columns(2)
    tag = "live" if live else "final"
    ui.chart(acc, left, key=f"acc_{tag}", live=live)
    ui.chart(loss, right, key=f"loss_{tag}", live=live)
    if parts is not None:
        left, right = st.columns(2)
        ui.chart(parts, left, key=f"parts_{tag}", live=live)
        right.markdown(
            "**DKD's two parts.** TCKD: how sure the student is of the true class, against the teacher. "
            "NCKD: how it spreads the rest over the wrong classes (the dark knowledge). Hinton KD weights NCKD "
            "down as the teacher grows sure; DKD gives each part its own weight, α_tc and β_nc.",
            help=glossary.tooltip("TCKD and NCKD", "Decoupled KD (DKD)"),
        )


def parts_figure(cfg: experiments.RunConfig, shown) -> object:
    return charts.dkd_parts(shown, cfg.epochs) if cfg.method == "dkd" else None


def live_figures(job_id: str, p: events.Progress, cfg: experiments.RunConfig):
    """The live charts, rebuilt only when new points arrived (building a plotly figure costs real CPU)."""
    key = (job_id, sum(len(v) for v in p.curves.values()))
    cached = st.session_state.get("live_figures")
    if cached is None or cached[0] != key:
        epochs = cfg.epochs
        figures = charts.training_accuracy(p.curves, epochs), charts.training_loss(p.curves, epochs)
        cached = (key, *figures, parts_figure(cfg, p.curves))
        st.session_state.live_figures = cached
    return cached[1:]


# ---- live view ----------------------------------------------------------------------------------


@ui.live_charts
def live_curves(job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is not None and job.state is not jobs.JobState.QUEUED:  # no curves yet: empty charts only cost redraws
        curves(*live_figures(job.id, job.progress(), job.config), live=True)


# ---- results ------------------------------------------------------------------------------------


def headline(result: experiments.RunResult) -> None:
    """The KD gain and each model's accuracy, every number with its range on hover."""
    d, s, t = result.row("distilled"), result.row("scratch"), result.row("ensemble")
    ranges = result.intervals
    cols = st.columns([1.4, 1, 1, 1, 1.2])
    cols[0].metric(
        "KD gain",
        ui.fmt_points(result.kd_gain),
        border=True,
        help=f"{glossary.define('KD gain')} {result.gain_stats.text}.",
    )
    cols[1].metric(ui.ROLE_LABELS["distilled"], f"{100 * d.accuracy:.1f} %", help=ranges["distilled"].text)
    cols[2].metric("Scratch student", f"{100 * s.accuracy:.1f} %", help=ranges["scratch"].text)
    cols[3].metric(ui.ROLE_LABELS["ensemble"], f"{100 * t.accuracy:.1f} %", help=ranges["ensemble"].text)
    smaller, faster = describe.student_vs_ensemble(result)
    if smaller:
        cols[4].metric(
            "Student vs. teachers",
            smaller,
            faster,
            delta_arrow="off",
            help="The ensemble's parameters and single-image latency divided by the student's.\n\n"
            + glossary.tooltip("parameters", "latency"),
        )
        st.caption(report.against_teachers(result))
    st.markdown(
        f"**KD gain {stats.verdict(result.gain_stats).sentence}** The range is where the gain would most likely "
        f"fall on other test images of the same kind; it comes from the "
        f"{result.gain_stats.n01 + result.gain_stats.n10} images on which exactly one of the two students is right. "
        f"Run took {events.format_seconds(result.seconds)}."
    )


def results(job: jobs.Job, result: experiments.RunResult) -> None:
    cfg = result.config
    if result.partial:
        st.warning(
            f"**Stopped after {result.epochs_done} of {cfg.epochs} epochs — partial result.** Both students are "
            f"compared as they were after epoch {result.epochs_done}, so neither had more training than the other."
        )
    for notice in result.notices:
        st.warning(notice, icon=":material/warning:")
    headline(result)
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
    curves(
        charts.training_accuracy(shown, cfg.epochs, result.row("ensemble").accuracy),
        charts.training_loss(shown, cfg.epochs),
        parts_figure(cfg, shown),
    )
    if cfg.method == "self":
        born_again(result)
    notes = report.loss_notes(result)
    if notes:
        st.markdown("**What to notice in the training loss**\n" + "\n".join(f"- {n}" for n in notes))
    left, right = st.columns(2)
    ui.chart(charts.gain_per_class(result), left)
    right.markdown("**What to try next**\n" + "\n".join(report.try_next(cfg)))
    st.markdown("**Every model of this run**")
    if cfg.method == "ta":
        st.caption(f":material/school: {methods.chain_caption(cfg)}")
    ui.model_table(report.run_table(result), hide=(report.DATASET, report.RUN, report.PARTIAL))


def born_again(result: experiments.RunResult) -> None:
    """The born-again students' accuracy per generation, generation 0 being the scratch student."""
    left, right = st.columns(2)
    ui.chart(charts.generation_accuracy(methods.generation_rows(result), result.row("ensemble").accuracy), left)
    right.markdown(
        f"**Born-again generations.** {methods.generations_reading(result)} The test accuracy curves above "
        "show every generation, epoch by epoch.",
        help=glossary.tooltip("Self-distillation (born-again)"),
    )


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
    elif job.state in ui.ACTIVE:
        ui.live_progress(job.id)
    elif job.state is jobs.JobState.FAILED:
        ui.show_job_failure(job, "Press **Start** and try again.")
    elif job.result() is not None:
        st.info(job.result().reading(), icon=":material/repeat:")


def history() -> None:
    runs = ui.my_jobs(jobs.JobKind.DISTILL)
    if runs:
        with st.expander(f"This session's runs ({len(runs)})", expanded=len(runs) > 1):
            st.dataframe(
                describe.session_runs(runs),
                hide_index=True,
                width="stretch",
                column_config=ui.RUN_TABLE,
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
ui.settings_hint(cfg)

job = ui.job_by_id(st.session_state.get("distill_job"))
running = job is not None and job.state in ui.ACTIVE
start_clicked = ui.start_stop(
    job, "run", "Stops after the current batch; finished epochs are kept as a partial result."
)
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
    st.markdown(f"**{verb}:** {describe.config_summary(job.config)}")
    diff = describe.changed_settings(job.config, cfg)
    if diff:
        st.caption(
            f":material/warning: Settings changed since this run started ({', '.join(diff)}) — "
            "press **Start** to run with the new ones."
        )
    if running:
        ui.live_progress(job.id)
        live_curves(job.id)
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
