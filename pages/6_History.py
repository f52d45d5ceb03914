"""History page: list the saved runs, compare selected ones side by side, download their students, delete them."""

from __future__ import annotations

import streamlit as st

import charts
import ui
from kdcore import data as kdata
from kdcore import describe
from kdcore import store as kstore

st.set_page_config(page_title="History · KD Playground", page_icon=":material/history:", layout="wide")

ALL = "All"
ORDERS = {"Descending": True, "Ascending": False}


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
        describe.saved_runs_table(runs),
        hide_index=True,
        width="stretch",
        column_config=ui.RUN_TABLE,
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
    kind = c2.selectbox(
        "Kind", [ALL, *kinds], key="hist_kind", format_func=lambda k: k if k == ALL else describe.kind_label(k)
    )
    sort_by = c3.selectbox(
        "Sort by",
        kstore.SORT_KEYS,
        key="hist_sort",
        format_func=describe.SORT_LABELS.get,
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


def summaries(records: list[kstore.RunRecord]) -> None:
    """Runs without per-epoch student curves (studies): their one-paragraph reading and all their numbers."""
    per_row = 3
    for start in range(0, len(records), per_row):
        for col, rec in zip(st.columns(per_row), records[start : start + per_row]):
            with col.container(border=True):
                st.markdown(f"**Run {rec.id} · {describe.kind_label(rec.kind)}** ({rec.dataset})")
                st.markdown(rec.metrics.get("reading") or "No written summary was saved with this run.")
                with st.expander("All saved numbers"):
                    st.json(rec.metrics, expanded=1)


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
        ui.side_by_side({f"Run {r.id}": describe.saved_settings(r) for r in records})
    with right:
        st.markdown("**Results**")
        ui.side_by_side({f"Run {r.id}": describe.saved_results(r) for r in records})
    if len(records) > 1:
        st.caption("Shaded rows differ between the selected runs.")
    ui.student_downloads(records)
    with_curves = [r for r in records if r.kind == "distill"]
    if with_curves:
        ui.chart(charts.saved_runs_accuracy(with_curves), key="hist_overlay")
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
        st.markdown(describe.deletion_question(selected))
        if st.button("Delete for good", type="primary", icon=":material/delete_forever:", key="hist_delete"):
            try:
                deletion = store.delete_runs(selected, owner=owner)
            except kstore.StoreError as exc:
                st.error(f"**Could not delete the runs.** {exc}")
                return
            st.session_state.hist_selected = []
            if deletion.warning:
                st.session_state.hist_delete_warning = deletion.warning
            st.session_state.hist_flash = describe.deletion_done(deletion.count)
            st.rerun()


# ---- page ---------------------------------------------------------------------------------------


def page() -> None:
    st.title("History")
    st.markdown(
        "Every distillation you finish or stop is kept here with its settings, its curves and its distilled "
        "student — also after the app restarts. **Tick two or more rows** to compare them side by side."
    )
    store = ui.open_history()
    if store is None:
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
