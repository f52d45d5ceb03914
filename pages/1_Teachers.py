"""Teachers page: train or load the teacher ensemble, follow its progress, and compare members with the ensemble."""

from __future__ import annotations

import streamlit as st

import charts
import ui
from kdcore import data as kdata
from kdcore import describe, experiments, export, glossary, jobs, teachers

st.set_page_config(page_title="Teachers · KD Playground", page_icon=":material/groups:", layout="wide")


@ui.live_fragment
def live(job_id: str) -> None:
    job = ui.live_job(job_id)
    if job is None:
        return
    ui.show_progress(job)
    st.caption(
        "Trained teachers are cached on disk, so they load in a second next time — on this page, "
        "on Distill and on Dark knowledge. A stopped job keeps the members it finished."
    )
    if st.button("Stop", icon=":material/stop:", key="stop_teachers", disabled=job.cancel_requested):
        job.cancel()
        st.rerun(scope="fragment")


def results(job: jobs.Job) -> None:
    result = job.result()
    st.success(describe.teachers_summary(result.rows))
    num = st.column_config.NumberColumn
    st.dataframe(
        describe.teachers_table(result),
        hide_index=True,
        width="stretch",
        column_config={
            "Test accuracy (%)": num(
                "Accuracy %", format="%.1f", help="Share of the test images classified correctly."
            ),
            "Parameters": num("Params", format="localized", help=glossary.tooltip("parameters")),
            "Size (MB)": num("MB", format="%.2f", help="Size of the weights file in megabytes."),
            "Latency (ms / image)": num("ms / image", format="%.2f", help=glossary.tooltip("latency")),
            "Throughput (images / s)": num("images / s", format="localized", help=glossary.tooltip("throughput")),
        },
    )
    ui.chart(charts.teacher_accuracy_per_class(result.rows, result.classes))


def selection(c: experiments.RunConfig) -> tuple:
    """What decides the teachers on this page: the same selection loads the same ensemble."""
    return c.dataset, tuple(c.teachers), c.teacher_epochs, c.combine


def load(c: experiments.RunConfig) -> None:
    """Starts this session's teachers job; the page then follows it."""
    # A dataset that cannot be loaded fails the job at once, with kdcore's explanation of where to put the files.
    st.session_state.teachers_job = ui.submit(jobs.JobKind.TEACHERS, c, f"Teachers {c.dataset}").id


def still_to_train(c: experiments.RunConfig) -> list[str] | None:
    """The selected members that are not trained on this machine yet, or None if the dataset is not here."""
    try:
        data = kdata.load(c.dataset, download=False)
    except kdata.DatasetError:
        return None
    return [m.name for m in teachers.missing_members(data, ui.teacher_members(c), c.teacher_epochs)]


st.title("Teachers")
st.markdown(
    "The teacher is an **ensemble**: several big networks whose predicted probabilities are averaged. "
    "Ensembles are usually more accurate than any member — but slow and large, which is why we distil "
    "them into one small student.",
    help=glossary.tooltip("ensemble", "teacher", "student"),
)
cfg = ui.controls(show=("dataset", "teachers"))
ui.settings_hint(cfg, ("dataset", "teachers"))

job = ui.job_by_id(st.session_state.get("teachers_job"))
running = job is not None and job.state in ui.ACTIVE
stale = job is None or (job.state is jobs.JobState.DONE and selection(job.config) != selection(cfg))
missing = still_to_train(cfg) if stale else None
if stale and missing == []:
    # Already trained here: loading takes a second, so show them without asking.
    load(cfg)
    st.rerun()
if st.button(
    "Train / load teachers",
    type="primary",
    icon=":material/model_training:",
    disabled=running,
    help="Stop the current job first." if running else "Loads cached teachers in a second; trains the missing ones.",
):
    load(cfg)
    st.rerun()  # so the button is drawn disabled while the job runs

if stale and missing:
    already = len(cfg.teachers) - len(missing)
    st.info(
        f"**{', '.join(missing)}** {'is' if len(missing) == 1 else 'are'} not trained on this machine yet"
        + (f" ({already} of the {len(cfg.teachers)} selected teachers are)" if already else "")
        + ". Press **Train / load teachers** to train "
        + ("it" if len(missing) == 1 else "them")
        + ". Trained teachers are cached, so they load in a second next time."
    )
    ui.show_estimate(jobs.JobKind.TEACHERS, cfg)
if job is None:
    if missing is None:
        st.info("Pick a dataset and the ensemble's members in the sidebar, then press **Train / load teachers**.")
elif running:
    st.caption(f"{job.config.dataset}: {' + '.join(job.config.teachers)}")
    live(job.id)
elif job.state is jobs.JobState.FAILED:
    ui.show_job_failure(job, "Check the dataset and the teacher list in the sidebar, then press the button again.")
elif job.state is jobs.JobState.CANCELLED and job.result() is None:
    st.warning(
        "Stopped before all teachers were ready. The members that finished stay cached; press "
        "**Train / load teachers** to continue where it stopped."
    )
else:
    if stale:
        shown = job.config
        st.caption(f"Below: the ensemble loaded before ({shown.dataset}: {' + '.join(shown.teachers)}).")
    results(job)


def share_zoo() -> None:
    """Instructors train teachers once on a fast machine and hand the zip to the class."""
    with st.expander("Share trained teachers (export / import a teacher zoo)"):
        st.markdown(
            "Export every teacher trained on this machine as one zip; on another machine, import it and "
            "the teachers load from the cache instead of training. Import checks names, shapes and "
            "hashes and reads only weights (no code runs from the file)."
        )
        cached = export.cached_teachers()
        if cached:
            if st.button(
                f"Prepare zip of {len(cached)} cached teacher{'s' if len(cached) > 1 else ''}",
                icon=":material/archive:",
            ):
                st.session_state.zoo_zip = export.export_zoo()
            if "zoo_zip" in st.session_state:
                st.download_button(
                    "Download teacher zoo (.zip)",
                    st.session_state.zoo_zip,
                    file_name="kd-teacher-zoo.zip",
                    mime="application/zip",
                    icon=":material/download:",
                )
        else:
            st.caption("No trained teachers on this machine yet.")
        upload = st.file_uploader("Import a teacher zoo (.zip)", type=["zip"], key="zoo_upload")
        if upload is not None and st.session_state.get("zoo_imported") != upload.file_id:
            try:
                keys = export.import_zoo(upload)
            except export.ZooImportError as exc:
                st.error(str(exc))
            else:
                st.session_state.zoo_imported = upload.file_id
                st.success(
                    f"Imported {len(keys)} teacher{'s' if len(keys) != 1 else ''}; they now load from the cache."
                )


share_zoo()
