"""Streamlit entry point (`streamlit run app.py`): page setup, navigation, and the Home page explaining KD."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

import ui
from kdcore import glossary
from kdcore.experiments import default_config

ASSETS = Path(__file__).parent / "assets"
DIAGRAM, DIAGRAM_NARROW = ASSETS / "kd_diagram.svg", ASSETS / "kd_diagram_narrow.svg"
# The server cannot know the screen's width, so both diagrams are sent and the browser shows the one that fits:
# on a phone the wide one's labels would be a few pixels high.
DIAGRAM_CSS = (
    "<style>@media (max-width: 640px) { .st-key-diagram_wide { display: none; } } "
    "@media (min-width: 641px) { .st-key-diagram_narrow { display: none; } }</style>"
)
# Short lines, so the formula fits a phone's width as well as a projector's.
LOSS = (
    r"\begin{aligned}\mathcal{L} &= (1-\alpha)\,\mathrm{CE}\big(\text{student},\ \text{labels}\big)\\"
    r"&\quad+\;\alpha\,T^{2}\,\mathrm{KL}\big(p_{t}\ \|\ p_{s}\big),\\"
    r"p &= \operatorname{softmax}(z/T)\end{aligned}"
)


def home() -> None:
    st.title("KD Playground")
    st.markdown(
        "**Knowledge distillation** trains a small, fast *student* model to imitate a big, accurate *teacher*. "
        "Here the teacher is an **ensemble** of several networks whose probabilities are averaged. "
        "Besides the true label of each image, the student also learns from the teacher's full "
        'probability distribution, softened by a **temperature T**: a teacher that says *"a 7, but a bit '
        'like a 1"* carries more information than the label *"7"* alone. A weight **α** decides how much '
        "the student listens to the teacher versus the labels."
    )
    left, right = st.columns([1, 3], vertical_alignment="center")
    if left.button("Run the default demo", type="primary", icon=":material/play_arrow:", width="stretch"):
        ui.set_config(default_config("mnist-sample"))
        st.session_state.autostart = True
        st.switch_page(DISTILL)
    right.markdown(
        "Distils three teachers into a small MLP on a 5 000-image MNIST sample that ships with the app, next to "
        "the same student trained **from scratch**, so you see what the teacher adds. Offline, on the CPU: the "
        "very first run also trains the teachers; after that only the two students train. The Distill page "
        "says how long a run should take on this machine before you start it."
    )
    st.html(DIAGRAM_CSS)
    caption = "The teacher ensemble is trained once and frozen; only the student learns."
    for key, path in (("diagram_wide", DIAGRAM), ("diagram_narrow", DIAGRAM_NARROW)):
        st.container(key=key).image(str(path), width="stretch", caption=caption)

    st.subheader("The loss the student minimises")
    st.latex(LOSS, help=glossary.tooltip("CE", "KL", "logits", "softmax"))
    st.markdown(
        "- $p_t$ and $p_s$ are the teacher's and the student's probabilities softened by $T$, from their logits $z$; "
        "the ensemble's logits are the log of its members' mean probabilities.\n"
        "- **T** (1 to 20): $T = 1$ uses the teacher's probabilities as they are; larger $T$ flattens them so the "
        "small probabilities of similar-looking classes (the *dark knowledge*) become visible.\n"
        "- **α** (0 to 1): $\\alpha = 0$ is ordinary training on labels (our *scratch* student), $\\alpha = 1$ "
        "learns from the teacher alone.\n"
        "- The factor $T^2$ keeps the soft term's gradients about as strong as the hard term's when $T$ changes."
    )

    with st.expander("Words used here", icon=":material/menu_book:"):
        st.markdown(glossary.as_markdown())

    st.subheader("Learn by predicting")
    cols = st.columns([1, 3], vertical_alignment="center")
    cols[0].page_link(LESSONS, width="stretch")
    cols[1].markdown(
        "Six short lessons: predict what an experiment will show, run it in seconds, and see why it came out "
        "that way. Teaching a class? The lessons page makes links that open a lesson with controls hidden, and "
        "the **Class board** gathers everyone's runs on one chart."
    )

    st.subheader("Explore")
    for page, text in (
        (TEACHERS, "train or load the teacher ensemble and see what each member adds"),
        (DISTILL, "distil with your own T, α, student size and data fraction, live"),
        (DARK, "look at the teacher's soft targets and what the temperature does to them"),
        (COMPARE, "accuracy, size and latency of teachers and students side by side"),
        (EXPERIMENTS, "what-if studies: a T × α sweep, less data, a missing class, student size"),
        (HISTORY, "saved runs: compare them, download their students"),
        (CLASS_BOARD, "everyone's runs of the last hour on shared charts, live"),
    ):
        cols = st.columns([1, 3], vertical_alignment="center")
        cols[0].page_link(page, width="stretch")
        cols[1].markdown(text)


st.set_page_config(page_title="KD Playground", page_icon=":material/school:", layout="wide")
ui.runner()  # worker processes start loading PyTorch now, not when the first Start is pressed
HOME = st.Page(home, title="Home", icon=":material/home:", default=True)
LESSONS = st.Page("pages/0_Lessons.py", title="Lessons", icon=":material/school:", url_path="Lessons")
TEACHERS = st.Page("pages/1_Teachers.py", title="Teachers", icon=":material/groups:")
DISTILL = st.Page("pages/2_Distill.py", title="Distill", icon=":material/science:")
DARK = st.Page("pages/3_Dark_knowledge.py", title="Dark knowledge", icon=":material/flare:")
COMPARE = st.Page("pages/4_Compare.py", title="Compare", icon=":material/compare_arrows:")
EXPERIMENTS = st.Page("pages/5_Experiments.py", title="Experiments", icon=":material/grid_on:")
HISTORY = st.Page("pages/6_History.py", title="History", icon=":material/history:")
CLASS_BOARD = st.Page(
    "pages/7_Class_board.py", title="Class board", icon=":material/scoreboard:", url_path="Class_board"
)
st.navigation([HOME, LESSONS, TEACHERS, DISTILL, DARK, COMPARE, EXPERIMENTS, HISTORY, CLASS_BOARD]).run()
