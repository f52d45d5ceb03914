"""Lessons page: predict, run the lesson's preset, and read a reveal that quotes this run; and a panel that composes
instructor links (lesson, hidden controls, lock) as text and QR code."""

from __future__ import annotations

import streamlit as st

import charts
import ui
from kdcore import dark, jobs, lessons

st.set_page_config(page_title="Lessons · KD Playground", page_icon=":material/school:", layout="wide")

IMAGE_PX = 168


def key(lesson: lessons.Lesson, what: str) -> str:
    return f"lesson_{lesson.number}_{what}"


# ---- callbacks (they run before the page, so the sidebar drawn next already shows what they set) ----------


def open_lesson(number: int | None) -> None:
    st.session_state.lesson_open = number


def lock_in(lesson: lessons.Lesson) -> None:
    st.session_state[key(lesson, "choice")] = st.session_state[key(lesson, "radio")]


def run(variant: lessons.Lesson, job_key: str) -> None:
    """Apply the variant's preset to the sidebar (and so to the URL) and run it on that configuration."""
    ui.set_config(variant.preset.config)
    st.session_state[job_key] = ui.runner().submit(variant.spec(ui.config(), owner=ui.session_id())).id


def start_over(lesson: lessons.Lesson) -> None:
    for what in ("choice", "radio", "job", "next_job"):
        st.session_state.pop(key(lesson, what), None)


# ---- the lesson --------------------------------------------------------------------------------------------


def chart(reveal: lessons.Reveal, result, tag: str) -> None:
    fig = charts.lesson_chart(reveal.chart, result)
    if isinstance(result, lessons.LookResult):
        left, right = st.columns([1, 4], vertical_alignment="center")
        left.image(
            dark.enlarge(result.image, IMAGE_PX),
            caption=f"test image #{result.index}: {dark.class_phrase(result.classes[result.label])}",
        )
        ui.chart(fig, right, key=f"chart_{tag}")
    else:
        ui.chart(fig, key=f"chart_{tag}")


def show_run(variant: lessons.Lesson, choice: str, job: jobs.Job, tag: str) -> lessons.Reveal | None:
    """A running job's progress, or its reveal: the verdict, the chart, what was measured and why."""
    if job.state in ui.ACTIVE:
        ui.live_progress(job.id)
        return None
    if job.state is jobs.JobState.FAILED:
        ui.show_job_failure(job, "Press **Run** to try again; if it fails again, tell your instructor.")
        return None
    result = job.result(timeout=0)
    if result is None:
        st.warning("The run was stopped before it had measured anything. Press **Run** to start it again.")
        return None
    reveal = lessons.grade(variant, choice, result)
    if reveal.matched is True:
        st.success(f"**✓ Right.** {reveal.verdict}", icon=":material/check_circle:")
    elif reveal.matched is False:
        st.warning(f"**✗ Not this time.** {reveal.verdict}", icon=":material/cancel:")
    else:
        st.info(reveal.verdict, icon=":material/hourglass_empty:")
    if result.partial:
        st.warning("**Stopped early: partial result.** Only what finished before the stop is shown and graded.")
    if reveal.outcome is not None:
        chart(reveal, result, tag)
    st.markdown(f"**What this run measured.** {reveal.measured}")
    st.markdown(f"**Why.** {reveal.explanation}")
    return reveal


def card(title: str):
    box = st.container(border=True)
    box.markdown(f"#### {title}")
    return box


def show_lesson(lesson: lessons.Lesson) -> None:
    st.button("All lessons", icon=":material/arrow_back:", on_click=open_lesson, args=(None,), key="lesson_back")
    st.header(f"Lesson {lesson.number}: {lesson.title}")
    choice = st.session_state.get(key(lesson, "choice"))
    job = ui.job_by_id(st.session_state.get(key(lesson, "job")))
    next_job = ui.job_by_id(st.session_state.get(key(lesson, "next_job")))
    busy = any(j is not None and j.state in ui.ACTIVE for j in (job, next_job))

    card("1 · The goal").markdown(lesson.goal)

    with card("2 · Your prediction"):
        st.markdown(lesson.question)
        if choice is not None and key(lesson, "radio") not in st.session_state:
            st.session_state[key(lesson, "radio")] = choice  # the radio forgets it on other pages; the lock does not
        picked = st.radio(
            "Your prediction",
            [c.outcome for c in lesson.choices],
            index=None,
            format_func=lambda outcome: lesson.choice(outcome).text,
            key=key(lesson, "radio"),
            disabled=choice is not None,
            label_visibility="collapsed",
        )
        if choice is None:
            st.button(
                "Lock in my prediction",
                icon=":material/lock:",
                disabled=picked is None,
                help="Pick an answer first." if picked is None else "Commit to it before you run.",
                on_click=lock_in,
                args=(lesson,),
                key=key(lesson, "lock"),
            )
        else:
            st.caption(":material/lock: Locked in. Now run the lesson and see.")

    with card("3 · Run it"):
        st.caption(f"Sets the sidebar to the lesson's preset and runs it: {lesson.preset.summary()}.")
        left, right, _ = st.columns([1, 1, 4])
        left.button(
            "Run",
            type="primary",
            icon=":material/play_arrow:",
            width="stretch",
            disabled=choice is None or busy,
            help="Lock in a prediction first." if choice is None else "Run the lesson's preset.",
            on_click=run,
            args=(lesson, key(lesson, "job")),
            key=key(lesson, "run"),
        )
        running = next((j for j in (job, next_job) if j is not None and j.state in ui.ACTIVE), None)
        if right.button(
            "Stop",
            icon=":material/stop:",
            width="stretch",
            disabled=running is None or running.cancel_requested,
            key=key(lesson, "stop"),
        ):
            running.cancel()
        if job is not None and job.state in ui.ACTIVE:
            show_run(lesson, choice, job, "run")
    if job is None or job.state in ui.ACTIVE:
        return

    with card("4 · What happened"):
        reveal = show_run(lesson, choice, job, "run")
    if reveal is None:
        return

    with card("5 · Try this next"):
        st.markdown(reveal.try_next.text)
        st.caption(f"Runs: {reveal.try_next.preset.summary()}. It is graded against the prediction you locked in.")
        st.button(
            "Try it",
            icon=":material/replay:",
            disabled=busy,
            on_click=run,
            args=(lesson.tried_next(), key(lesson, "next_job")),
            key=key(lesson, "next"),
        )
        if next_job is not None:
            show_run(lesson.tried_next(), choice, next_job, "next")
    st.button("Start this lesson over", on_click=start_over, args=(lesson,), key=key(lesson, "over"))


def show_list(all_lessons: tuple[lessons.Lesson, ...]) -> None:
    st.markdown(
        "Each lesson asks you to **predict** what a short experiment will show, **runs** it on the cached "
        "teachers (seconds), and **explains** what this run measured, whether you were right or not."
    )
    for lesson in all_lessons:
        with st.container(border=True):
            text, button = st.columns([5, 1], vertical_alignment="center")
            text.markdown(f"**{lesson.number} · {lesson.title}**  \n{lesson.goal}")
            button.button(
                f"Open lesson {lesson.number}",
                icon=":material/arrow_forward:",
                width="stretch",
                on_click=open_lesson,
                args=(lesson.number,),
                key=f"open_{lesson.number}",
            )


# ---- page --------------------------------------------------------------------------------------------------

st.title("Lessons")
try:
    ALL = lessons.load_lessons()
except lessons.LessonError as exc:
    st.error(f"**The lessons file has a problem.** {exc}")
    st.stop()
ui.controls()
if "lesson_open" not in st.session_state:  # a link's ?lesson=N opens that lesson on the first load only
    st.session_state.lesson_open = ui.link_view().lesson
current = lessons.find(ALL, st.session_state.lesson_open)
if current is None:
    st.query_params.pop("lesson", None)
    show_list(ALL)
else:
    st.query_params["lesson"] = str(current.number)  # so the address bar shares the open lesson
    show_lesson(current)
ui.instructor_panel(ALL, current)
