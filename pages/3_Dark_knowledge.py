"""Dark knowledge page: the teacher ensemble's soft targets for one image and over the test set, as T moves."""

from __future__ import annotations

import math
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st
import torch

import ui
from kdcore import dark, experiments, jobs, teachers
from kdcore import data as kdata
from kdcore.train import predict_logits

st.set_page_config(page_title="Dark knowledge · KD Playground", page_icon="🔦", layout="wide")

T_GRID = [1.0 + 0.5 * i for i in range(39)]  # the temperature slider's values, 1 to 20
PICKS = {
    "Clear runner-up": "telling",
    "By class": "class",
    "At random": "random",
    "Most ambiguous to the teacher": "ambiguous",
    "Teacher's mistakes": "mistakes",
}
UPLOAD = "Upload an image"
THUMBS, THUMB_PX, BIG_PX = 12, 84, 224
ACTIVE = (jobs.JobState.QUEUED, jobs.JobState.RUNNING)
LOG_FLOOR = 1e-4  # percent; smaller probabilities sit at the bottom of the log axis


@dataclass
class Selected:
    """The image being inspected and every model's logits for it."""

    image: torch.Tensor  # uint8 [C, H, W]
    teacher: torch.Tensor  # ensemble logits [K]
    members: list[torch.Tensor]
    label: int | None  # true class, unknown for drawn or uploaded images
    student: torch.Tensor | None
    source: str


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def load_dataset(name: str) -> kdata.Dataset:
    return kdata.load(name)


@st.cache_resource(show_spinner="Loading the trained teachers from disk…", max_entries=4)
def load_teachers(dataset: str, members: tuple[str, ...], teacher_epochs: int | None, combine: str):
    cfg = experiments.default_config(dataset, teachers=members, teacher_epochs=teacher_epochs, combine=combine)
    return experiments.load_ensemble(cfg, data=load_dataset(dataset))[1]


@st.cache_data(show_spinner=False, max_entries=16)
def mean_entropy_curve(key: str, _logits: torch.Tensor) -> list[float]:
    return dark.entropy_curve(_logits, T_GRID)


@st.cache_data(show_spinner=False, max_entries=128)
def similarity(key: str, temperature: float, _logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return dark.class_similarity(_logits, _y, temperature)


def job_name(cfg: experiments.RunConfig) -> str:
    return f"Teachers for {cfg.dataset}: {' + '.join(cfg.teachers)}"


@st.fragment(run_every=1.0)
def training_progress(job: jobs.Job) -> None:
    if job.state not in ACTIVE:
        st.rerun()
    ui.show_progress(job)
    if st.button("Stop training", icon="⏹️"):
        job.cancel()


def offer_training(cfg: experiments.RunConfig) -> None:
    """The teachers are not on disk: train them in the background, never in this script."""
    name = job_name(cfg)
    mine = [j for j in ui.my_jobs(jobs.JobKind.TEACHERS) if j.name == name]
    st.info(
        "**These teachers are not trained yet.** Train them once; they are then kept on disk and this page "
        "shows their soft targets instantly. Training runs in the background, so you can visit other pages "
        "meanwhile."
    )
    active = next((j for j in mine if j.state in ACTIVE), None)
    if active is None:
        ui.show_estimate(jobs.JobKind.TEACHERS, cfg)
    if active is not None:
        training_progress(active)
        return
    if mine:
        ui.job_status(mine[0])
    if st.button("Train these teachers", type="primary", icon="▶️"):
        ui.submit(jobs.JobKind.TEACHERS, cfg, name)
        st.rerun()


def distilled_result(dataset: str):
    """This session's newest finished distillation on this dataset that produced a distilled student."""
    return next(
        (
            r
            for r in reversed(ui.finished_distill_results())
            if r.config.dataset == dataset and "distilled" in r.students
        ),
        None,
    )


def choose(index: int) -> None:
    st.session_state.dark_index = index


def new_random() -> None:
    st.session_state.dark_seed = st.session_state.get("dark_seed", 0) + 1


def pick_from_test_set(data, ens, how: str, student_logits) -> Selected | None:
    cls = None
    if how == "class":
        cls = st.selectbox("Class", range(data.num_classes), format_func=lambda i: data.classes[i], key="dark_class")
    elif how == "random":
        st.button("New random images", icon="🎲", on_click=new_random)
    idx = dark.pick_images(
        ens.test_logits, data.test_y, how, cls=cls, k=THUMBS, seed=st.session_state.get("dark_seed", 0)
    ).tolist()
    if not idx:
        st.info("The teacher ensemble gets every test image right, so there are no mistakes to show.")
        return None
    current = st.session_state.get("dark_index")
    if current not in idx:
        current = idx[0]
    preds = ens.test_logits[idx].argmax(1).tolist()
    st.caption(
        "Under each image: true class → the teacher's answer (✗ marks a mistake). "
        "Click **Look** to inspect an image below."
    )
    cols = st.columns(THUMBS)
    for n, (i, pred) in enumerate(zip(idx, preds)):
        with cols[n]:
            mark = "✓" if pred == int(data.test_y[i]) else "✗"
            st.image(
                dark.enlarge(data.test_x[i], THUMB_PX),
                width="stretch",
                caption=f"{data.classes[int(data.test_y[i])]} → {data.classes[pred]} {mark}",
            )
            st.button(
                "Look",
                key=f"dark_pick_{n}",
                on_click=choose,
                args=(i,),
                type="primary" if i == current else "secondary",
                width="stretch",
            )
    return Selected(
        data.test_x[current],
        ens.test_logits[current],
        [m.test_logits[current] for m in ens.members],
        int(data.test_y[current]),
        None if student_logits is None else student_logits[current],
        f"test image #{current}",
    )


def run_models(image: torch.Tensor, data, ens, student, source: str) -> Selected:
    members, combined = dark.predict_image(ens.models, image, data.mean, data.std, ens.combine)
    student_out = None if student is None else predict_logits(student, image.unsqueeze(0), data.mean, data.std)[0]
    return Selected(image, combined, members, None, student_out, source)


def draw_digit(data, ens, student) -> Selected | None:
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception:
        st.error(
            "The drawing canvas could not be loaded in this installation. "
            f"Draw a digit in any paint program and use **{UPLOAD}** instead."
        )
        return None
    thing = "piece of clothing" if data.name.startswith("fashion") else "digit"
    st.caption(f"Draw one large {thing} with the mouse (or a finger); use the toolbar to undo or clear.")
    canvas = st_canvas(
        stroke_width=18,
        stroke_color="#FFFFFF",
        background_color="#000000",
        height=280,
        width=280,
        drawing_mode="freedraw",
        return_image_data=True,
        key="dark_canvas",
    )
    rgba = canvas.image_data
    try:
        image = None if rgba is None else dark.image_from_canvas(rgba, data.name)
    except dark.ImageError:
        image = None
    if image is None:
        st.info("Draw on the black square; the teacher's answer appears below.")
        return None
    return run_models(image, data, ens, student, "your drawing, as the teacher sees it (28 × 28)")


def upload_image(data, ens, student) -> Selected | None:
    kind = "a digit" if data.image_shape[0] == 1 and not data.name.startswith("fashion") else "a picture"
    file = st.file_uploader(
        f"Upload {kind} ({dark.UPLOAD_FORMATS_TEXT}, up to {dark.MAX_UPLOAD_BYTES // 2**20} MB)",
        type=list(dark.UPLOAD_EXTENSIONS),
        key="dark_upload",
    )
    if file is None:
        return None
    try:
        image = dark.image_from_upload(file.getvalue(), data)
    except dark.ImageError as exc:
        st.error(str(exc))
        return None
    except Exception as exc:
        st.error(f"Could not use this image ({type(exc).__name__}): upload a {dark.UPLOAD_FORMATS_TEXT} image.")
        return None
    return run_models(image, data, ens, student, f"uploaded file {file.name}")


def readable(fig: go.Figure) -> go.Figure:
    """Projector-size text: Streamlit's chart theme sets small tick and legend fonts that win over layout.font."""
    size = ui.PLOT_FONT.get("size", 16)
    fig.update_layout(font=ui.PLOT_FONT, title_font_size=size + 3, legend_font_size=size - 1)
    fig.update_xaxes(tickfont_size=size - 1, title_font_size=size)
    fig.update_yaxes(tickfont_size=size - 1, title_font_size=size)
    return fig


def prob_figure(
    probs: torch.Tensor, classes, title: str, color: str, name: str, label: int | None, log: bool
) -> go.Figure:
    pct = (probs * 100).tolist()
    shown = [max(p, LOG_FLOOR) for p in pct] if log else pct
    text = [f"{p:.1f}" if p >= 0.05 else "" for p in pct]
    fig = go.Figure(
        go.Bar(
            x=list(classes),
            y=shown,
            name=name,
            marker_color=color,
            text=text,
            textposition="outside",
            textfont_size=14,
            cliponaxis=False,
            showlegend=True,
            marker_line=dict(color="#000000", width=[4 if i == label else 0 for i in range(len(pct))]),
            customdata=pct,
            hovertemplate="%{x}: %{customdata:.3f} %<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=title),
        font=ui.PLOT_FONT,
        height=420,
        bargap=0.25,
        margin=dict(l=10, r=10, t=60, b=10),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, x=1, xanchor="right"),
    )
    fig.update_xaxes(title_text="class" + (" (outlined: true class)" if label is not None else ""), type="category")
    if log:
        fig.update_yaxes(
            title_text="probability (%, log scale)", type="log", range=[math.log10(LOG_FLOOR), math.log10(150)]
        )
    else:
        fig.update_yaxes(title_text="probability (%)", range=[0, 110])
    return readable(fig)


def entropy_figure(
    all_curve: list[float], image_curve: list[float] | None, temperature: float, at_t: list[float], num_classes: int
) -> go.Figure:
    color = ui.COLORS["ensemble"]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=T_GRID, y=all_curve, mode="lines", name="all test images (mean)", line=dict(color=color, width=4))
    )
    if image_curve is not None:
        fig.add_trace(
            go.Scatter(
                x=T_GRID,
                y=image_curve,
                mode="lines",
                name="the selected image",
                line=dict(color=color, width=3, dash="dash"),
            )
        )
    fig.add_trace(
        go.Scatter(
            x=[temperature] * len(at_t),
            y=at_t,
            mode="markers",
            name=f"T = {temperature:g}",
            marker=dict(color="#000000", size=14, symbol="circle"),
        )
    )
    uniform = math.log2(num_classes)
    fig.add_hline(
        y=uniform,
        line=dict(color=ui.COLORS["teacher"], dash="dot", width=2),
        annotation_text=f"all classes equally likely ({uniform:.2f} bits)",
        annotation_position="top left",
    )
    fig.update_layout(
        title=dict(text="Entropy of the soft targets vs T"),
        font=ui.PLOT_FONT,
        height=420,
        margin=dict(l=10, r=10, t=60, b=10),
        legend=dict(yanchor="bottom", y=0.03, xanchor="right", x=0.98, bgcolor="rgba(255,255,255,0.8)"),
    )
    # A log axis gives the low temperatures, where most of the change happens, room to show it.
    fig.update_xaxes(
        title_text="temperature T (log scale)",
        type="log",
        range=[-0.02, math.log10(21)],
        tickvals=[1, 2, 3, 4, 5, 7, 10, 15, 20],
    )
    fig.update_yaxes(title_text="entropy of the soft targets (bits)", range=[0, uniform * 1.2])
    return readable(fig)


def similarity_figure(sim: torch.Tensor, classes, temperature: float) -> go.Figure:
    pct = (sim * 100).tolist()
    for i in range(len(pct)):
        pct[i][i] = None  # the true class dwarfs everything else; leaving it blank lets the rest show
    fig = go.Figure(
        go.Heatmap(
            z=pct,
            x=list(classes),
            y=list(classes),
            colorscale="Blues",
            texttemplate="%{z:.1f}",
            textfont=dict(size=13),
            hoverongaps=False,
            xgap=1,
            ygap=1,
            colorbar=dict(title=dict(text="mean soft<br>probability (%)", side="right")),
            hovertemplate="true class %{y}<br>soft target for %{x}: %{z:.2f} %<extra></extra>",
        )
    )
    fig.update_layout(
        title=dict(text=f"Which classes the teacher finds alike (T = {temperature:g})"),
        font=ui.PLOT_FONT,
        height=560,
        margin=dict(l=10, r=10, t=60, b=10),
    )
    fig.update_xaxes(title_text="soft target for class", type="category", side="bottom")
    fig.update_yaxes(title_text="true class", type="category", autorange="reversed")
    return readable(fig)


def show_selected(sel: Selected, data, ens, temperature: float, result) -> None:
    classes = data.classes
    view = dark.teacher_view(sel.teacher, temperature)
    log = st.toggle(
        "Log scale for probabilities",
        key="dark_log",
        help="Shows the tiny probabilities that a linear axis squashes to zero.",
    )
    cols = st.columns([1.1, 2, 2])
    with cols[0]:
        st.image(dark.enlarge(sel.image, BIG_PX), caption=sel.source)
        lines = []
        if sel.label is not None:
            lines.append(f"True class: **{classes[sel.label]}**")
        lines.append(f"Teacher ensemble: **{classes[view['pred']]}** ({view['confidence']:.1%})")
        for name, cls, p in dark.member_predictions(sel.members, [m.name for m in ens.members], classes):
            lines.append(f"· {name}: {cls} ({p:.1%})")
        st.markdown("  \n".join(lines))
    color = ui.COLORS["ensemble"]
    cols[1].plotly_chart(
        prob_figure(
            view["p1"],
            classes,
            f"Teacher at T = 1 (entropy {view['entropy_1']:.2f} bits)",
            color,
            "teacher ensemble, T = 1",
            sel.label,
            log,
        ),
        width="stretch",
    )
    cols[2].plotly_chart(
        prob_figure(
            view["pT"],
            classes,
            f"Soft targets at T = {temperature:g} (entropy {view['entropy_T']:.2f} bits)",
            color,
            f"teacher ensemble, T = {temperature:g}",
            sel.label,
            log,
        ),
        width="stretch",
    )
    if result is not None and sel.student is not None:
        student = dark.teacher_view(sel.student, temperature)
        cfg = result.config
        partial = " (stopped early)" if result.partial else ""
        _, mid, right = st.columns([1.1, 2, 2])
        mid.markdown(
            f"**Your distilled student**{partial}: {cfg.student}, trained with T = {cfg.temperature:g} and "
            f"α = {cfg.alpha:g} from {', '.join(cfg.teachers)}. It answers "
            f"**{classes[student['pred']]}** ({student['confidence']:.1%}). Next to it: its own "
            f"probabilities softened by the same T as the teacher's."
        )
        right.plotly_chart(
            prob_figure(
                student["pT"],
                classes,
                f"Distilled student at T = {temperature:g}",
                ui.COLORS["distilled"],
                f"distilled student, T = {temperature:g}",
                sel.label,
                log,
            ),
            width="stretch",
        )


cfg = ui.controls(show=("dataset", "teachers", "temperature"))
st.title("Dark knowledge")
st.markdown(
    'A trained teacher does not only say *"this is a 4"*: it gives every class a probability, and the '
    "small ones tell which wrong classes look alike. Dividing the teacher's logits by a **temperature T** "
    "before the softmax flattens them into **soft targets** that show this *dark knowledge* to the student. "
    "Move T in the sidebar and watch."
)

try:
    data = load_dataset(cfg.dataset)
except kdata.DatasetError as exc:
    ui.show_dataset_error(exc)
    st.stop()

members = ui.teacher_members(cfg)
if teachers.missing_members(data, members, cfg.teacher_epochs):
    offer_training(cfg)
    st.stop()
try:
    ens = load_teachers(cfg.dataset, cfg.teachers, cfg.teacher_epochs, cfg.combine)
except Exception as exc:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    st.error(
        f"**Could not load the trained teachers from disk** ({reason}). Delete the teacher cache folder "
        f"`{teachers.cache_dir()}` and train them again with the button on this page."
    )
    st.stop()

T = float(cfg.temperature)
result = distilled_result(cfg.dataset)
student_model = result.students["distilled"] if result is not None else None
student_test_logits = result.test_logits.get("distilled") if result is not None else None
cache_key = f"{cfg.dataset}|{ens.name}|{cfg.teacher_epochs}|{cfg.combine}"

st.subheader("One image through the teacher's eyes")
drawable = data.image_shape[0] == 1
draw_label = "Draw a digit" if not data.name.startswith("fashion") else "Draw an item"
sources = list(PICKS) + ([draw_label] if drawable else []) + [UPLOAD]
if st.session_state.get("dark_source") not in sources:
    st.session_state.pop("dark_source", None)
source = st.radio("Choose an image", sources, horizontal=True, key="dark_source", label_visibility="collapsed")
if source in PICKS:
    selected = pick_from_test_set(data, ens, PICKS[source], student_test_logits)
elif source == UPLOAD:
    selected = upload_image(data, ens, student_model)
else:
    selected = draw_digit(data, ens, student_model)
if selected is not None:
    show_selected(selected, data, ens, T, result)

st.subheader("Over the whole test set")
image_curve = dark.entropy_curve(selected.teacher, T_GRID) if selected is not None else None
at_t = dark.entropy_curve(ens.test_logits, [T]) + (
    [] if selected is None else dark.entropy_curve(selected.teacher, [T])
)
left, right = st.columns([2, 3])
left.plotly_chart(
    entropy_figure(mean_entropy_curve(cache_key, ens.test_logits), image_curve, T, at_t, data.num_classes),
    width="stretch",
)
sim = similarity(cache_key, T, ens.test_logits, data.test_y)
right.plotly_chart(similarity_figure(sim, data.classes, T), width="stretch")
right.caption(
    "Each row is the teacher's mean soft target for the test images of that true class; the diagonal "
    "(the true class itself) is left blank so the small probabilities stand out."
)
left.markdown(
    "**Most confusable pairs**  \n"
    + "  \n".join(
        f"{n}. {s}" for n, s in enumerate(dark.describe_pairs(dark.confusable_pairs(sim, data.classes, top=5), T), 1)
    )
)
