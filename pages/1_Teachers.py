"""Teachers page: train or load the teacher ensemble, follow its progress, and compare members with the ensemble."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from kdcore import data as kdata
from kdcore import events, experiments, export, jobs, teachers

st.set_page_config(page_title="Teachers · KD Playground", page_icon=":material/groups:", layout="wide")

ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)


@st.fragment(run_every=1.0)
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


def table(result: experiments.TeachersResult) -> pd.DataFrame:
    source = {
        name: "loaded from cache" if cached else f"trained in {events.format_seconds(result.train_seconds[name])}"
        for name, cached in result.cached.items()
    }
    members = len(result.cached)
    return pd.DataFrame(
        [
            {
                "Model": r.name if r.role == "teacher" or members == 1 else f"Ensemble of {members}",
                "Role": ui.ROLE_LABELS[r.role],
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


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.0f} k"


def summary(rows) -> str:
    ens = next(r for r in rows if r.role == "ensemble")
    members = [r for r in rows if r.role == "teacher"]
    cost = f"{fmt_params(ens.params)} parameters, {ens.latency_ms_b1:.1f} ms per image"
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


def grey_shades(n: int) -> list[str]:
    """n distinguishable greys from dark to light, so members stay visually secondary to the ensemble."""
    levels = [0x4D + (0xBF - 0x4D) * i // max(1, n - 1) for i in range(n)]
    return [f"#{v:02X}{v:02X}{v:02X}" for v in levels]


def per_class_chart(rows, classes) -> go.Figure:
    members = [r for r in rows if r.role == "teacher"]
    greys = grey_shades(len(members))
    fig = go.Figure()
    values = []
    for r, colour in zip(members + [r for r in rows if r.role == "ensemble"], greys + [ui.COLORS["ensemble"]]):
        y = [None if a is None else 100 * a for a in r.per_class]
        values += [v for v in y if v is not None]
        name = "Ensemble" if r.role == "ensemble" and members else r.name
        fig.add_bar(
            x=list(classes),
            y=y,
            name=name,
            marker_color=colour,
            hovertemplate="%{x}: %{y:.1f} %<extra>" + name + "</extra>",
        )
    low = max(0.0, (min(values, default=0.0) // 5) * 5 - 5)
    ui.readable(fig, 460)
    fig.update_layout(
        title=dict(
            text="Test accuracy per class",
            subtitle=dict(
                text=f"the axis starts at {low:.0f} % to show the differences", font=dict(size=15, color="#555")
            ),
        ),
        margin=dict(t=80),
        barmode="group",
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
    )
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 100.5])
    fig.update_xaxes(title_text="Class", type="category")
    return fig


def results(job: jobs.Job) -> None:
    result = job.result()
    rows, classes = result.rows, result.classes
    st.success(summary(rows))
    st.dataframe(
        table(result),
        hide_index=True,
        width="stretch",
        column_config={
            "Test accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
            "Parameters": st.column_config.NumberColumn(format="localized"),
            "Size (MB)": st.column_config.NumberColumn(format="%.2f"),
            "Latency (ms / image)": st.column_config.NumberColumn(
                format="%.2f", help="One image at a time on this CPU."
            ),
            "Throughput (images / s)": st.column_config.NumberColumn(format="localized", help="In batches of 256."),
        },
    )
    st.plotly_chart(per_class_chart(rows, classes), width="stretch")


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
    "them into one small student."
)
cfg = ui.controls(show=("dataset", "teachers"))

job = ui.job_by_id(st.session_state.get("teachers_job"))
running = job is not None and job.state in ACTIVE
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
