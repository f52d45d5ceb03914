"""Class board page: every run finished on this server in the last N minutes, as KD gain against T, α, student size
and data fraction, refreshed every few seconds; anonymous, and an instructor can clear it."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

import charts
import ui
from kdcore import classboard
from kdcore import store as kstore

st.set_page_config(page_title="Class board · KD Playground", page_icon=":material/scoreboard:", layout="wide")

REFRESH_SECONDS = 5
MINUTE_CHOICES = (10, 15, 30, 60, 120, 240, 480, classboard.MAX_MINUTES)


def minutes_label(m: int) -> str:
    return f"{m} min" if m < 60 else f"{m // 60} h"


def clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M")


@st.fragment(run_every=REFRESH_SECONDS)
def live_board(store: kstore.RunStore, minutes: int) -> None:
    b = classboard.board(store, minutes)
    since = (
        f"since the board was cleared at {clock(b.cleared_at)}"
        if b.cleared_at is not None and b.since == b.cleared_at
        else f"in the last {minutes_label(minutes)}"
    )
    runs = f"{b.runs} run{'s' if b.runs != 1 else ''}"
    st.markdown(f"**{runs}** finished {since} (updated {clock(b.until)}).")
    if b.empty:
        st.info("No runs yet. As students run lessons, distillations and studies, their results appear here.")
    for i, axis in enumerate(classboard.AXES):
        if i % 2 == 0:
            columns = st.columns(2)
        ui.chart(charts.board_chart(b.series[axis]), columns[i % 2], key=f"board_{axis}")


def ask_to_clear() -> None:
    st.session_state.board_confirm = True


def clear(store: kstore.RunStore, yes: bool) -> None:
    st.session_state.board_confirm = False
    if yes:
        st.session_state.board_cleared = classboard.clear(store)


def instructor_panel(store: kstore.RunStore) -> None:
    with st.expander("For instructors", icon=":material/co_present:"):
        st.markdown("Start a fresh board for a new class or exercise. The runs stay in the History page.")
        if not st.session_state.get("board_confirm"):
            st.button("Clear the board", icon=":material/delete_sweep:", on_click=ask_to_clear, key="board_clear")
        else:
            st.warning("Hide every run so far from the board, for everyone watching it?")
            yes, no, _ = st.columns([1, 1, 3])
            yes.button("Yes, clear it", type="primary", on_click=clear, args=(store, True), key="board_clear_yes")
            no.button("Cancel", on_click=clear, args=(store, False), key="board_clear_no")
        if st.session_state.get("board_cleared"):
            st.caption(f"Cleared at {clock(st.session_state.board_cleared)}.")


st.title("Class board")
st.markdown(
    "Every run finished on this server, one dot each, with the mean per setting: when each student in the room "
    "runs a different T, the board draws the class's T sweep. Anonymous: it shows numbers and settings, never "
    f"names. It refreshes every {REFRESH_SECONDS} seconds."
)
history = ui.open_history()
if history is None:
    st.stop()
minutes = st.select_slider(
    "Show the runs of the last",
    MINUTE_CHOICES,
    value=classboard.DEFAULT_MINUTES,
    format_func=minutes_label,
    key="board_minutes",
)
live_board(history, minutes)
instructor_panel(history)
