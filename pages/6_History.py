"""History page: list the saved runs, compare selected ones side by side, download their students, delete them."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from kdcore import data as kdata
from kdcore import store as kstore

st.set_page_config(page_title="History · KD Playground", page_icon=":material/history:", layout="wide")

ALL = "All"
KIND_LABELS = {
    "distill": "Distillation",
    "sweep": "T × α sweep",
    "fraction": "Less data",
    "missing-class": "Missing class",
    "capacity": "Student capacity",
}
SORT_LABELS = {
    "created": "Date saved",
    "id": "Run number",
    "kind": "Kind",
    "dataset": "Dataset",
    "partial": "Stopped early",
    "kd_gain": "KD gain",
    "scratch_acc": "Scratch accuracy",
    "distilled_acc": "Distilled accuracy",
    "student": "Student",
    "temperature": "Temperature T",
    "alpha": "Weight α",
    "epochs": "Epochs",
}
ORDERS = {"Descending": True, "Ascending": False}
# One colour per run; the role colours (blue scratch, orange distilled) come last so that with a few runs
# nobody reads a run's colour as a role. The line style carries the role instead.
RUN_COLORS = ("#009E73", "#D55E00", "#56B4E9", "#000000", "#CC79A7", "#0072B2", "#E69F00", "#7F7F7F")
DASH = {"distilled": "solid", "scratch": "dash"}
DIFFERS = "background-color: #FFF1C2"
CHART_HEIGHT = 480


@st.cache_resource(show_spinner=False)
def history_store(path: str) -> kstore.RunStore:
    # Keyed by the file, so a changed KD_DATA_DIR (as in tests) opens that folder's history.
    return kstore.open_store(path)


# ---- formatting ---------------------------------------------------------------------------------


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


def when(created: float) -> str:
    return datetime.fromtimestamp(created).strftime("%Y-%m-%d %H:%M")


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def num(x, fmt: str = "{:g}") -> str:
    return "–" if x is None else fmt.format(x)


def size(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} KB"


def duration(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.0f} s" if s < 90 else f"{int(s // 60)} min {int(s % 60):02d} s"


def points(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


# ---- table --------------------------------------------------------------------------------------


def table(runs: list[kstore.RunSummary]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Run": s.id,
                "Saved": when(s.created),
                "Kind": kind_label(s.kind),
                "Dataset": s.dataset,
                "Student": s.student,
                "T": s.temperature,
                "α": s.alpha,
                "Epochs": s.epochs,
                "Scratch (%)": points(s.scratch_acc),
                "Distilled (%)": points(s.distilled_acc),
                "KD gain (points)": points(s.kd_gain),
                "Partial": s.partial,
            }
            for s in runs
        ]
    )


COLUMNS = {
    "Run": st.column_config.NumberColumn(
        help="The run's number; it stays the same until the run is deleted.", format="%d", width="small"
    ),
    "T": st.column_config.NumberColumn(format="%g", help="Temperature", width="small"),
    "α": st.column_config.NumberColumn(format="%g", help="Weight of the teacher's soft targets", width="small"),
    "Epochs": st.column_config.NumberColumn(width="small"),
    "Scratch (%)": st.column_config.NumberColumn(
        format="%.2f", help="Test accuracy of the student trained on the labels alone"
    ),
    "Distilled (%)": st.column_config.NumberColumn(format="%.2f", help="Test accuracy of the distilled student"),
    "KD gain (points)": st.column_config.NumberColumn(format="%+.2f", help="Distilled minus scratch accuracy"),
    "Partial": st.column_config.CheckboxColumn(help="Stopped before all epochs finished", width="small"),
}


def run_table(runs: list[kstore.RunSummary]) -> list[int]:
    """Draw the runs with row selection; returns the selected run ids in table order.

    The selection is kept by run id: when the rows change (filter, sort, a delete, a run saved by another
    session) the table gets a new key and re-selects the runs that are still listed, so a row position
    never silently points at another run.
    """
    ids = [s.id for s in runs]
    if st.session_state.get("hist_view") != ids:
        st.session_state.hist_view = ids
        st.session_state.hist_generation = st.session_state.get("hist_generation", 0) + 1
    kept = set(st.session_state.get("hist_selected", []))
    default = {"selection": {"rows": [i for i, run_id in enumerate(ids) if run_id in kept]}}
    event = st.dataframe(
        table(runs),
        hide_index=True,
        width="stretch",
        column_config=COLUMNS,
        placeholder="–",
        key=f"hist_table_{st.session_state.hist_generation}",
        on_select="rerun",
        selection_mode="multi-row",
        selection_default=default,
    )
    rows = sorted(i for i in event.selection.rows if 0 <= i < len(ids))
    selected = [ids[i] for i in rows]
    st.session_state.hist_selected = selected
    return selected


def filters(kinds: list[str]) -> dict:
    """The dataset, kind and sort controls; returns list_runs keyword arguments."""
    if st.session_state.get("hist_kind", ALL) not in (ALL, *kinds):
        st.session_state.hist_kind = ALL  # its last runs were deleted
    c1, c2, c3, c4 = st.columns([1, 1, 1, 1])
    dataset = c1.selectbox("Dataset", [ALL, *kdata.DATASETS], key="hist_dataset")
    kind = c2.selectbox("Kind", [ALL, *kinds], key="hist_kind", format_func=lambda k: k if k == ALL else kind_label(k))
    sort_by = c3.selectbox(
        "Sort by",
        kstore.SORT_KEYS,
        key="hist_sort",
        format_func=SORT_LABELS.get,
        help="Runs without this value (e.g. a sweep has no single KD gain) come last.",
    )
    order = c4.radio(
        "Order",
        list(ORDERS),
        key="hist_order",
        horizontal=True,
        help="Descending: newest, highest or last in the alphabet first.",
    )
    return {
        "dataset": None if dataset == ALL else dataset,
        "kind": None if kind == ALL else kind,
        "sort_by": sort_by,
        "descending": ORDERS[order],
    }


# ---- comparison ---------------------------------------------------------------------------------


def settings(rec: kstore.RunRecord) -> dict[str, str]:
    """What one run was, as text for the side-by-side table."""
    c = rec.config
    teachers = c.get("teachers")
    return {
        "Kind": kind_label(rec.kind),
        "Saved": when(rec.created),
        "Dataset": rec.dataset,
        "Teachers": " + ".join(teachers) if isinstance(teachers, list) else num(teachers, "{}"),
        "Student": num(c.get("student"), "{}"),
        "Temperature T": num(c.get("temperature")),
        "Weight α": num(c.get("alpha")),
        "Epochs": num(c.get("epochs")),
        "Data fraction": num(c.get("fraction"), "{:.0%}"),
        "Seed": num(c.get("seed")),
    }


def results(rec: kstore.RunRecord) -> dict[str, str]:
    """How one run scored, as text for the side-by-side table (studies keep some numbers at the top level)."""
    m = rec.metrics
    d, s, t = rec.row("distilled") or {}, rec.row("scratch") or {}, rec.row("ensemble") or {}
    gain, latency = m.get("kd_gain"), d.get("latency_ms_b1")
    return {
        "Status": "stopped early (partial)" if rec.partial else "finished",
        "Teacher ensemble accuracy": pct(t.get("accuracy", m.get("teacher_acc"))),
        "Scratch accuracy": pct(s.get("accuracy", m.get("scratch_acc"))),
        "Distilled accuracy": pct(d.get("accuracy", m.get("distilled_acc"))),
        "KD gain": "–" if gain is None else f"{100 * gain:+.2f} points",
        "Student parameters": num(d.get("params"), "{:,}"),
        "Student size": size(d.get("size_bytes")),
        "Student latency (1 image)": "–" if latency is None else f"{latency:.3f} ms",
        "Agreement with the teacher": pct(d.get("agreement")),
        "Calibration error (ECE)": num(d.get("ece"), "{:.3f}"),
        "Run time": duration(m.get("seconds")),
    }


def side_by_side(records: list[kstore.RunRecord], describe) -> None:
    frame = pd.DataFrame({f"Run {r.id}": describe(r) for r in records})
    data = frame
    if len(records) > 1:
        # Shading the rows that differ points straight at what was changed between the runs.
        data = frame.style.apply(lambda row: [DIFFERS if row.nunique() > 1 else ""] * len(row), axis=1)
    st.dataframe(
        data,
        width="stretch",
        height=35 * (len(frame) + 1) + 3,
        column_config={"_index": st.column_config.TextColumn(width="medium")},
    )


def overlay_chart(records: list[kstore.RunRecord]) -> go.Figure:
    """Test accuracy per epoch of every selected run's two students: a colour per run, a line style per role."""
    fig = go.Figure()
    values, last_epoch = [], 1
    for n, rec in enumerate(records):
        color = RUN_COLORS[n % len(RUN_COLORS)]
        for role in ("distilled", "scratch"):
            pts = [e for e in rec.curves.get(role, []) if e.get("test_acc") is not None]
            x, y = [e["epoch"] for e in pts], [100 * e["test_acc"] for e in pts]
            values += y
            last_epoch = max([last_epoch, rec.config.get("epochs") or 1, *x])
            fig.add_scatter(
                x=x,
                y=y,
                name=f"run {rec.id} · {role}",
                mode="lines+markers",
                legendgroup=str(rec.id),
                line=dict(color=color, dash=DASH[role], width=4 if role == "distilled" else 3),
                marker=dict(size=9 if role == "distilled" else 7, color=color),
                hovertemplate="epoch %{x}: %{y:.2f} %<extra>" + f"run {rec.id} · {role}</extra>",
            )
    ui.readable(fig, CHART_HEIGHT)
    fig.update_layout(
        title=dict(
            text="Test accuracy of the selected runs",
            subtitle=dict(
                text="solid: distilled student · dashed: scratch student (no teacher)", font=dict(size=15, color="#555")
            ),
        ),
        margin=dict(t=90),
        legend=dict(orientation="h", yanchor="top", y=-0.2, xanchor="left", x=0),
    )
    low = 0.0 if not values else max(0.0, 5 * math.floor((min(values) - 1) / 5))
    fig.update_yaxes(title_text="Test accuracy (%)", range=[low, 100.5])
    fig.update_xaxes(title_text="Epoch", range=[0, last_epoch + 0.2], dtick=max(1, math.ceil(last_epoch / 10)))
    if not values:
        fig.add_annotation(
            text="these runs stopped before their first epoch finished",
            showarrow=False,
            x=last_epoch / 2,
            y=50,
            font=dict(size=18, color="#777"),
        )
    return fig


def summaries(records: list[kstore.RunRecord]) -> None:
    """Runs without per-epoch student curves (studies): their one-paragraph reading and all their numbers."""
    per_row = 3
    for start in range(0, len(records), per_row):
        for col, rec in zip(st.columns(per_row), records[start : start + per_row]):
            with col.container(border=True):
                st.markdown(f"**Run {rec.id} · {kind_label(rec.kind)}** ({rec.dataset})")
                st.markdown(rec.metrics.get("reading") or "No written summary was saved with this run.")
                with st.expander("All saved numbers"):
                    st.json(rec.metrics, expanded=1)


def downloads(records: list[kstore.RunRecord]) -> None:
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
            help=f"{rec.config.get('student')} on {rec.dataset}, {size(path.stat().st_size)}",
        )


def compare(store: kstore.RunStore, selected: list[int]) -> None:
    records = []
    for run_id in selected:
        try:
            records.append(store.get_run(run_id))
        except KeyError:
            st.warning(f"Run {run_id} is no longer in the history; it was probably deleted in another session.")
    if not records:
        return
    records.sort(key=lambda r: r.id)
    ids = ", ".join(str(r.id) for r in records)
    st.subheader(f"Run {ids}" if len(records) == 1 else f"Runs {ids} side by side")
    left, right = st.columns(2)
    with left:
        st.markdown("**Settings**")
        side_by_side(records, settings)
    with right:
        st.markdown("**Results**")
        side_by_side(records, results)
    if len(records) > 1:
        st.caption("Shaded rows differ between the selected runs.")
    downloads(records)
    with_curves = [r for r in records if r.kind == "distill"]
    if with_curves:
        st.plotly_chart(overlay_chart(with_curves), width="stretch", key="hist_overlay")
    others = [r for r in records if r.kind != "distill"]
    if others:
        summaries(others)


def delete_button(store: kstore.RunStore, selected: list[int], owner: str | None) -> None:
    label = "Delete the selected run" + ("s" if len(selected) != 1 else "")
    with st.popover(
        label,
        icon=":material/delete:",
        disabled=not selected,
        help="Select rows in the table first." if not selected else None,
    ):
        many = len(selected) > 1
        st.markdown(
            f"Delete run{'s' if many else ''} **{', '.join(map(str, sorted(selected)))}** and "
            f"{'their saved students' if many else 'its saved student'}? This cannot be undone."
        )
        if st.button("Delete for good", type="primary", icon=":material/delete_forever:", key="hist_delete"):
            try:
                deletion = store.delete_runs(selected, owner=owner)
            except kstore.StoreError as exc:
                st.error(f"**Could not delete the runs.** {exc}")
                return
            st.session_state.hist_selected = []
            count = deletion.count
            if deletion.warning:
                st.session_state.hist_delete_warning = deletion.warning
            plural = count != 1
            st.session_state.hist_flash = (
                f"Deleted {count} run{'s' if plural else ''} and "
                f"{'their' if plural else 'its'} saved student file{'s' if plural else ''}."
            )
            st.rerun()


# ---- page ---------------------------------------------------------------------------------------


def page() -> None:
    st.title("History")
    st.markdown(
        "Every distillation you finish or stop is kept here with its settings, its curves and its distilled "
        "student — also after the app restarts. **Tick two or more rows** to compare them side by side."
    )
    try:
        store = history_store(str(kdata.data_dir() / kstore.DEFAULT_FILENAME))
    except (kstore.StoreError, kdata.DatasetError) as exc:
        st.error(f"**The run history cannot be opened.** {exc}")
        return
    if store.recovered_message:
        # Shared by all sessions: the session that finds the message keeps it, the others are not told twice.
        st.session_state.hist_recovered = store.recovered_message
        store.recovered_message = None
    if "hist_recovered" in st.session_state:
        st.warning(st.session_state.hist_recovered, icon=":material/warning:")
    if "hist_flash" in st.session_state:
        st.success(st.session_state.pop("hist_flash"), icon=":material/check_circle:")
    if "hist_delete_warning" in st.session_state:
        st.warning(st.session_state.pop("hist_delete_warning"), icon=":material/warning:")
    scope = st.segmented_control(
        "Runs",
        ["Mine", "All runs on this server"],
        default="Mine",
        key="hist_scope",
        help="Mine: the runs of this browser session. All: every run anyone saved on this server, read-only "
        "unless the server was started with KD_INSTRUCTOR=1.",
    )
    everyone = scope == "All runs on this server"
    owner = None if everyone else ui.session_id()
    try:
        everything = store.list_runs(owner=owner)
        if not everything:
            st.info(
                "No saved runs yet"
                + ("" if everyone else " in this browser session")
                + ". Start a run on the **Distill** page: when it finishes, or when you stop it, it appears "
                "here with its settings, curves and distilled student.",
                icon=":material/history:",
            )
            return
        runs = store.list_runs(owner=owner, **filters(sorted({s.kind for s in everything})))
        if not runs:
            st.info(
                f"None of the {len(everything)} saved runs match these filters. Set Dataset and Kind to "
                "**All** to see them all."
            )
            return
        selected = run_table(runs)
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption(
            f"{len(runs)} of {len(everything)} saved runs · "
            + (f"{len(selected)} selected" if selected else "tick the boxes on the left to select runs")
        )
        with right:
            if not everyone:
                delete_button(store, selected, ui.session_id())
            elif kstore.may_delete_all():
                delete_button(store, selected, None)
            else:
                st.caption(":material/lock: Read-only: other sessions' runs.")
        if selected:
            compare(store, selected)
    except kstore.StoreError as exc:
        st.error(f"**The run history could not be read.** {exc}")


page()
