"""The Dark knowledge page's last panel: the session's last run's two students scrubbed through their epochs
on the probe images (kdcore.probes), with Play, a slider, a picked image and clickable points."""

from __future__ import annotations

import time

import streamlit as st

import charts
import ui
from kdcore import dark
from kdcore import probes as kprobes

PLAY_SECONDS = 0.6  # how long Play shows each epoch


def watched_result(dataset: str):
    """This session's newest finished distillation on this dataset that watched its students on the probe images."""
    return next(
        (
            r
            for r in reversed(ui.finished_distill_results())
            if r.config.dataset == dataset and r.probes is not None and kprobes.common_epochs(r.probes)
        ),
        None,
    )


def _select_probe(p: kprobes.Probes, position: int) -> None:
    """Make one probe image the selected image of the whole page: the scrub panel and the image at the top."""
    test_index = int(p.indices[position])
    st.session_state.watch_image = position
    st.session_state.dark_index = st.session_state.dark_probe_index = test_index
    # A drawing or an upload is showing at the top: show this probe image there instead.
    if ui.PICK_LABELS.get(st.session_state.get("dark_source")) is None:
        st.session_state.dark_source = next(iter(ui.PICK_LABELS))


def _on_point(p: kprobes.Probes) -> None:
    points = st.session_state.watch_points.selection.points
    if points and points[0].get("customdata"):
        _select_probe(p, int(points[0]["customdata"][0]))


def _on_pick(p: kprobes.Probes) -> None:
    _select_probe(p, st.session_state.watch_image)


def _play(last: int) -> None:
    st.session_state.watch_playing = True
    if st.session_state.get("watch_epoch") == last:  # start again from the first epoch
        st.session_state.watch_epoch = 1


def _pause() -> None:
    st.session_state.watch_playing = False


def show_watch(result, data) -> None:
    """Scrub the last run's two students through their epochs on the probe images, one of them picked."""
    p = result.probes
    n = kprobes.common_epochs(p)
    if "watch_next" in st.session_state:  # Play's next epoch, set before the slider exists
        st.session_state.watch_epoch = st.session_state.pop("watch_next")
    if not 1 <= st.session_state.get("watch_epoch", 0) <= n:
        st.session_state.watch_epoch = n
    position = kprobes.position_of(p, st.session_state.get("dark_index"))
    if position is not None:  # the image chosen at the top of the page is a probe image: show it here too
        st.session_state.watch_image = position
    if not 0 <= st.session_state.get("watch_image", -1) < len(p.indices):
        st.session_state.watch_image = kprobes.opening_position(p)
    cfg = result.config
    partial = " (stopped early)" if result.partial else ""
    st.caption(
        f"Your last run{partial}: {cfg.student} students trained for {kprobes.common_epochs(p)} epochs with T = "
        f"{cfg.temperature:g} and α = {cfg.alpha:g} from {', '.join(cfg.teachers)}. After every epoch both students "
        f"answered the same {len(p.indices)} test images (the probe images, {len(p.indices) // data.num_classes} per "
        "class); every probability here is at T = 1, as the students answer."
    )
    phrases = [dark.class_phrase(c) for c in data.classes]
    playing = st.session_state.get("watch_playing", False)
    c1, c2, c3 = st.columns([1, 4, 3])
    if playing:
        c1.button("Pause", icon=":material/pause:", on_click=_pause, key="watch_pause", width="stretch")
    else:
        c1.button(
            "Play",
            icon=":material/play_arrow:",
            on_click=_play,
            args=(n,),
            key="watch_play",
            width="stretch",
            disabled=n < 2,
            help="Steps through the epochs, one every half second or so.",
        )
    if n >= 2:
        epoch = c2.slider("Epoch", 1, n, key="watch_epoch", disabled=playing)
    else:
        epoch = 1
        c2.caption("The run finished one epoch only, so there is nothing to scrub.")
    c3.selectbox(
        "Probe image",
        range(len(p.indices)),
        key="watch_image",
        on_change=_on_pick,
        args=(p,),
        format_func=lambda i: f"test image #{int(p.indices[i])}: {phrases[int(p.labels[i])]}",
    )
    position = st.session_state.watch_image
    label = int(p.labels[position])
    left, right = st.columns(2)
    log = st.session_state.get("dark_log", False)  # the page's log-scale toggle, when an image is shown above
    snap = kprobes.snapshot(p, position, epoch)
    ui.chart(charts.watch_probabilities(snap, data.classes, label, epoch, log), left)
    right.plotly_chart(
        charts.watch_points(kprobes.image_points(p, epoch), phrases, epoch, position),
        width="stretch",
        config=ui.CHART_CONFIG,
        key="watch_points",
        on_select=lambda: _on_point(p),
        selection_mode="points",
    )
    right.caption(
        "Each dot is one probe image for one student: far left and high up means it answers like the teacher; "
        "a cross means it picks another class. **Click a dot** to show that image everywhere on this page."
    )
    curves = kprobes.learning_curves(p)
    a, b = st.columns(2)
    ui.chart(charts.watch_curve(curves, "agreement", epoch), a)
    ui.chart(charts.watch_curve(curves, "kl", epoch), b)
    if playing:
        nxt = kprobes.next_epoch(p, epoch)
        if nxt is None:
            st.session_state.watch_playing = False
        else:
            time.sleep(PLAY_SECONDS)
            st.session_state.watch_next = nxt
        st.rerun()
