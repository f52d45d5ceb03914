"""Dark knowledge page: the teacher ensemble's soft targets for one image and over the test set, as T moves; the
soft target's two decoupled-KD parts; and the session's last run's students watched epoch by epoch."""

from __future__ import annotations

import streamlit as st
import torch

import charts
import ui
import watching
from kdcore import dark, experiments, glossary, teachers
from kdcore import data as kdata

st.set_page_config(page_title="Dark knowledge · KD Playground", page_icon="🔦", layout="wide")

BIG_PX = 224
SPLIT_SAMPLE = 2000  # test images behind the DKD split's curve: enough for a smooth mean, cheap at every T


@st.cache_resource(show_spinner="Loading the dataset…", max_entries=4)
def load_dataset(name: str) -> kdata.Dataset:
    return kdata.load(name)


@st.cache_resource(show_spinner="Loading the trained teachers from disk…", max_entries=4)
def load_teachers(dataset: str, members: tuple[str, ...], teacher_epochs: int | None, combine: str):
    cfg = experiments.default_config(dataset, teachers=members, teacher_epochs=teacher_epochs, combine=combine)
    return experiments.load_ensemble(cfg, data=load_dataset(dataset))[1]


@st.cache_data(show_spinner=False, max_entries=16)
def mean_entropy_curve(key: str, _logits: torch.Tensor) -> list[float]:
    return dark.entropy_curve(_logits, dark.T_GRID)


@st.cache_data(show_spinner=False, max_entries=128)
def similarity(key: str, temperature: float, _logits: torch.Tensor, _y: torch.Tensor) -> torch.Tensor:
    return dark.class_similarity(_logits, _y, temperature)


@st.cache_data(show_spinner=False, max_entries=16)
def split_curve(key: str, _logits: torch.Tensor, _y: torch.Tensor) -> dict:
    return dark.dkd_curve(_logits, _y, dark.T_GRID)


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


def show_split(sel: ui.Selected | None, data, ens, temperature: float, cache_key: str) -> None:
    """The chosen image's soft term split into TCKD and NCKD at T, and the test set's means over the T range."""
    left, right = st.columns([1, 1])
    if sel is not None:
        target = sel.label if sel.label is not None else int(sel.teacher.argmax())
        parts = dark.dkd_parts(sel.teacher, target, temperature)
        tckd, nckd, weight = float(parts.tckd), float(parts.nckd), float(parts.weight)
        ui.chart(charts.dkd_split_image(tckd, nckd, weight, temperature), left)
        whose = "true class" if sel.label is not None else "top class (the true class is unknown)"
        left.caption(
            f"At T = {temperature:g} the teacher gives this image's {whose}, **{data.classes[target]}**, "
            f"p_t = {1 - weight:.1%}. TCKD ({tckd:.2f}) is how sure it is of that, NCKD ({nckd:.2f}) how it "
            f"spreads the rest over the other classes, the dark knowledge. Classical KD multiplies NCKD by "
            f"1 − p_t = **{weight:.2f}**, so the surer the teacher, the less of its dark knowledge reaches the "
            "student; decoupled KD (DKD) weights the two parts apart."
        )
    else:
        left.info("Choose, draw or upload an image above to see its two parts.")
    sample = dark.sample_indices(len(data.test_y), SPLIT_SAMPLE)
    logits, y = ens.test_logits[sample], data.test_y[sample]
    curve = split_curve(f"{cache_key}|{SPLIT_SAMPLE}", logits, y)
    at_t = {k: v[0] for k, v in dark.dkd_curve(logits, y, [temperature]).items()}
    ui.chart(charts.dkd_split_vs_temperature(dark.T_GRID, curve, temperature, at_t), right)
    right.caption(
        f"Means over {len(sample):,} test images. A hotter T makes the teacher less sure of the true class, so "
        "1 − p_t grows and classical KD's share of the dark knowledge (solid pink) climbs towards the whole of it "
        "(dotted). Both parts are measured against a student that knows nothing yet: they are what there is to "
        "learn."
    )


def show_selected(sel: ui.Selected, data, ens, temperature: float, result) -> None:
    classes, label = data.classes, sel.label
    view = dark.teacher_view(sel.teacher, temperature)
    log = st.toggle(
        "Log scale for probabilities",
        key="dark_log",
        help="Shows the tiny probabilities that a linear axis squashes to zero.",
    )
    cols = st.columns([1.1, 2, 2])
    lines = [] if label is None else [f"True class: **{classes[label]}**"]
    lines.append(f"Teacher ensemble: **{classes[view['pred']]}** ({view['confidence']:.1%})")
    for name, cls, p in dark.member_predictions(sel.members, [m.name for m in ens.members], classes):
        lines.append(f"· {name}: {cls} ({p:.1%})")
    cols[0].image(dark.enlarge(sel.image, BIG_PX), caption=sel.source)
    cols[0].markdown("  \n".join(lines))
    color, t = ui.COLORS["ensemble"], f"{temperature:g}"
    title = f"Teacher at T = 1 (entropy {view['entropy_1']:.2f} bits)"
    ui.chart(charts.probabilities(view["p1"], classes, title, color, "teacher ensemble, T = 1", label, log), cols[1])
    title = f"Soft targets at T = {t} (entropy {view['entropy_T']:.2f} bits)"
    ui.chart(charts.probabilities(view["pT"], classes, title, color, f"teacher ensemble, T = {t}", label, log), cols[2])
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
        fig = charts.probabilities(
            student["pT"],
            classes,
            f"Distilled student at T = {t}",
            ui.COLORS["distilled"],
            f"distilled student, T = {t}",
            label,
            log,
        )
        ui.chart(fig, right)


cfg = ui.controls(show=("dataset", "teachers", "temperature"))
st.title("Dark knowledge")
ui.settings_hint(cfg, ("temperature", "teachers"))
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
    ui.offer_teacher_training(cfg)
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

st.subheader(
    "One image through the teacher's eyes", help=glossary.tooltip("logits", "softmax", "soft targets", "entropy")
)
drawable = data.image_shape[0] == 1
draw_label = "Draw a digit" if not data.name.startswith("fashion") else "Draw an item"
sources = list(ui.PICK_LABELS) + ([draw_label] if drawable else []) + [ui.UPLOAD]
if st.session_state.get("dark_source") not in sources:
    st.session_state.pop("dark_source", None)
source = st.radio(
    "Choose an image",
    sources,
    horizontal=True,
    key="dark_source",
    label_visibility="collapsed",
    on_change=ui.unpin_probe_image,
)
if source in ui.PICK_LABELS:
    selected = ui.pick_from_test_set(data, ens, ui.PICK_LABELS[source], student_test_logits)
elif source == ui.UPLOAD:
    selected = ui.upload_image(data, ens, student_model)
else:
    selected = ui.draw_image(data, ens, student_model)
if selected is not None:
    show_selected(selected, data, ens, T, result)

st.subheader("Over the whole test set", help=glossary.tooltip("entropy", "dark knowledge"))
image_curve = dark.entropy_curve(selected.teacher, dark.T_GRID) if selected is not None else None
at_t = dark.entropy_curve(ens.test_logits, [T]) + (
    [] if selected is None else dark.entropy_curve(selected.teacher, [T])
)
left, right = st.columns([2, 3])
all_curve = mean_entropy_curve(cache_key, ens.test_logits)
ui.chart(charts.entropy_vs_temperature(dark.T_GRID, all_curve, image_curve, T, at_t, data.num_classes), left)
sim = similarity(cache_key, T, ens.test_logits, data.test_y)
ui.chart(charts.class_similarity(sim, data.classes, T), right)
right.caption(
    "Each row is the teacher's mean soft target for the test images of that true class; the diagonal "
    "(the true class itself) is left blank so the small probabilities stand out."
)
pairs = dark.describe_pairs(dark.confusable_pairs(sim, data.classes, top=5), T)
left.markdown(
    "**Most confusable pairs**  \n" + "  \n".join(f"{n}. {s}" for n, s in enumerate(pairs, 1)),
    help=glossary.tooltip("soft targets", "dark knowledge"),
)

st.subheader("The soft target's two parts", help=glossary.tooltip("KL divergence", "soft targets", "dark knowledge"))
st.markdown(
    "Decoupled KD (Zhao et al., 2022) splits classical KD's soft term into **TCKD**, how sure the teacher is of "
    "the true class, and **NCKD**, how it spreads the rest over the other classes: the dark knowledge. Classical "
    "KD adds them as TCKD + (1 − p_t) × NCKD, where p_t is the teacher's probability of the true class."
)
show_split(selected, data, ens, T, cache_key)

st.subheader("Watching the students learn", help=glossary.tooltip("agreement", "KL divergence", "epoch"))
watched = watching.watched_result(cfg.dataset)
if watched is None:
    st.caption(
        f"Run a distillation on {cfg.dataset} on the **Distill** page first: this part then scrubs through its "
        "training, epoch by epoch, and shows how the distilled and the scratch student come to answer like the "
        "teacher."
    )
else:
    watching.show_watch(watched, data)
