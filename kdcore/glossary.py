"""The app's one glossary: each term a first-time learner meets, in one plain sentence.

Pages use `tooltip(...)` for a widget's help text and `as_markdown()` for the Home page; `define`
accepts the usual spellings ("KL", "kl divergence", "Cross-entropy (CE)") case-insensitively.
T and α are worded after kdcore.losses, the project's one definition of the distillation loss.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    term: str
    sentence: str
    aliases: tuple[str, ...] = ()


# In learning order: from what a network outputs, through the loss, to the models and how they are measured.
ENTRIES: tuple[Entry, ...] = (
    Entry(
        "Logits",
        "The raw scores a network gives each class before softmax; the class with the highest logit is its answer.",
        ("logit",),
    ),
    Entry(
        "Softmax",
        "Turns logits into probabilities that are positive and add up to 1, giving the biggest share to the "
        "biggest logit.",
    ),
    Entry(
        "Temperature T",
        "The number the logits are divided by before softmax in the soft loss, softmax(logits / T): T = 1 gives "
        "the usual probabilities, a larger T flattens them so the less likely classes show.",
        ("T", "temperature"),
    ),
    Entry(
        "α (alpha)",
        "The weight of the teacher in training: total loss = (1 − α) × hard loss + α × soft loss, so α = 0 "
        "learns from the labels only and α = 1 from the teacher only.",
        ("α", "alpha"),
    ),
    Entry(
        "Soft targets",
        "The teacher's probabilities softened by the temperature, softmax(teacher logits / T), which the "
        "distilled student learns to match.",
        ("soft target", "soft labels"),
    ),
    Entry(
        "Dark knowledge",
        "What the teacher's small probabilities for the wrong classes reveal, such as which other digit a 7 "
        "looks most like; soft targets pass it on to the student.",
    ),
    Entry(
        "Hard loss (cross-entropy, CE)",
        "Cross-entropy with the true labels: minus the log of the probability the model gives the right class, "
        "so 0 when it is certain and right.",
        ("hard loss", "hard term", "cross-entropy", "CE", "cross-entropy (CE)", "cross-entropy loss"),
    ),
    Entry(
        "Soft loss",
        "T² × the KL divergence from the teacher's soft targets to the student's softmax(logits / T); the T² "
        "keeps its pull comparable to the hard loss's as T changes.",
        ("soft term", "distillation term"),
    ),
    Entry(
        "KL divergence",
        "Kullback-Leibler divergence: how far one set of probabilities is from another, 0 when they are the "
        "same; here from the teacher's to the student's.",
        ("KL", "Kullback-Leibler divergence", "KL to teacher"),
    ),
    Entry(
        "MLP",
        "Multi-layer perceptron: a network of fully connected layers that sees the image as one flat list of "
        "pixel values.",
        ("multi-layer perceptron", "multilayer perceptron"),
    ),
    Entry(
        "CNN",
        "Convolutional neural network: a network that slides small learned filters over the image, so it finds "
        "the same stroke or edge wherever it appears.",
        ("convolutional neural network", "convnet"),
    ),
    Entry(
        "Ensemble",
        "Several teachers made into one by averaging their predicted probabilities; usually more accurate than "
        "any one of them, but it costs all of them to store and run.",
        ("teacher ensemble",),
    ),
    Entry(
        "Teacher",
        "The large, accurate model (here an ensemble) whose soft targets the student learns from.",
    ),
    Entry(
        "Student",
        "The small, fast model being trained: the one you would ship.",
    ),
    Entry(
        "Scratch student",
        "A student trained on the labels alone (α = 0): the baseline that distillation has to beat, with the "
        "same starting weights and data as the distilled student.",
        ("scratch", "from scratch"),
    ),
    Entry(
        "Distilled student",
        "A student trained on the teacher's soft targets as well as the labels, starting from the same "
        "weights and data as the scratch student.",
        ("distilled",),
    ),
    Entry(
        "KD gain",
        "The distilled student's test accuracy minus the scratch student's, in percentage points; above 0 means "
        "learning from the teacher helped.",
        ("gain", "knowledge-distillation gain", "distillation gain"),
    ),
    # The distillation methods, named as the sidebar's Method box names them (kdcore.methods.LABELS).
    Entry(
        "Hinton KD (2015)",
        "Knowledge distillation as Hinton et al., 2015 define it: the student learns from the labels and from the "
        "teacher's soft targets at temperature T, weighted by α.",
        ("kd", "Hinton KD", "knowledge distillation", "classical KD"),
    ),
    Entry(
        "Decoupled KD (DKD)",
        "Zhao et al., 2022 split the soft loss into a target-class part (TCKD, weight α_tc) and a non-target part "
        "(NCKD, weight β_nc), so the dark knowledge is not turned down when the teacher is sure.",
        ("dkd", "decoupled KD", "decoupled knowledge distillation"),
    ),
    Entry(
        "TCKD and NCKD",
        "DKD's two parts of the soft loss: TCKD compares how sure teacher and student are of the true class, NCKD "
        "how each spreads the rest over the wrong classes.",
        ("TCKD", "NCKD", "α_tc", "β_nc", "alpha_tc", "beta_nc"),
    ),
    Entry(
        "Teacher assistant",
        "A model between the teacher and the student in size (Mirzadeh et al., 2020): the ensemble teaches it, "
        "then it teaches the student, bridging a large gap in capacity.",
        ("ta", "assistant", "teacher assistant (TA)"),
    ),
    Entry(
        "Self-distillation (born-again)",
        "The student's teacher is an earlier copy of itself (Furlanello et al., 2018): each generation learns from "
        "the one before, and generation 0 from the labels alone.",
        ("self", "self-distillation", "born-again", "born-again networks", "generation"),
    ),
    Entry(
        "Consistent augmentation",
        "Students train on fixed altered copies of each image (shifted, flipped), each with the teacher's answer "
        "for that exact copy (Beyer et al., 2022), so student and teacher always see the same picture.",
        ("consistent teaching", "augmentation", "augmented views"),
    ),
    Entry(
        "Percentage points",
        "The difference between two percentages: going from 95.0 % to 96.6 % is a gain of 1.6 points.",
        ("points", "point", "percentage point"),
    ),
    Entry(
        "Entropy (bits)",
        "How spread out a set of probabilities is: 0 bits when one class has all of it, log2 K bits when all K "
        "classes are equally likely (3.32 bits for 10 classes).",
        ("entropy", "entropy in bits", "bits"),
    ),
    Entry(
        "Agreement",
        "The share of test images on which the student picks the same class as the teacher, whether right or wrong.",
        ("top-1 agreement",),
    ),
    Entry(
        "ECE (calibration)",
        "Expected calibration error: how far a model's confidence is from its accuracy, averaged over confidence "
        "bins; 0 means its 90 % answers are right 90 % of the time.",
        ("ECE", "calibration", "expected calibration error", "calibration error"),
    ),
    Entry(
        "Latency",
        "The time a model takes to classify one image on this machine's CPU, in milliseconds (the median of "
        "repeated runs); lower is faster.",
        ("batch-1 latency",),
    ),
    Entry(
        "Throughput",
        "How many images a model classifies per second when they come in batches of 256; higher is faster.",
    ),
    Entry(
        "Parameters",
        "The learned numbers (weights and biases) inside a model; more parameters mean a bigger file and "
        "usually slower answers.",
        ("parameter", "params", "parameter count"),
    ),
    Entry(
        "Epoch",
        "One full pass over the training images.",
        ("epochs",),
    ),
    Entry(
        "Data fraction",
        "The share of the training images the students learn from, taken evenly from every class; the teachers "
        "always train on all of them.",
        ("fraction", "training fraction"),
    ),
    Entry(
        "Confidence interval (test-set noise)",
        "The range a model's true accuracy (or gain) very likely lies in, since the test set is only a sample of "
        "images; a difference whose range includes 0 is within test-set noise.",
        ("confidence interval", "CI", "95 % range", "range", "test-set noise", "noise", "within noise"),
    ),
    Entry(
        "Seed",
        "The number that fixes a run's random choices (starting weights, order of the images); running again "
        "with other seeds shows how much a result moves by chance alone.",
        ("seeds", "random seed"),
    ),
)


def _normalise(text: str) -> str:
    # "Cross-entropy (CE)", "cross entropy ce" and "CROSS_ENTROPY CE" all become "cross entropy ce".
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def _index() -> dict[str, Entry]:
    index: dict[str, Entry] = {}
    for entry in ENTRIES:
        for name in (entry.term, *entry.aliases):
            key = _normalise(name)
            if index.get(key, entry) is not entry:
                raise RuntimeError(f"glossary spelling {name!r} names both {index[key].term!r} and {entry.term!r}")
            index[key] = entry
    return index


_INDEX = _index()


def lookup(term: str) -> Entry:
    """The glossary entry for `term`, in any of its usual spellings, case-insensitively."""
    if not isinstance(term, str):
        raise ValueError(f"term must be a string such as 'logits', got {type(term).__name__}")
    entry = _INDEX.get(_normalise(term))
    if entry is None:
        close = difflib.get_close_matches(_normalise(term), list(_INDEX), n=1)
        hint = f" Did you mean {_INDEX[close[0]].term!r}?" if close else ""
        known = ", ".join(e.term for e in ENTRIES)
        raise ValueError(f"term {term!r} is not in the glossary.{hint} Known terms: {known}.")
    return entry


def define(term: str) -> str:
    """The one-sentence definition of `term`."""
    return lookup(term).sentence


def tooltip(*terms: str) -> str:
    """Help text for a widget: each term's definition, once, as "**Term**: sentence" paragraphs."""
    if not terms:
        raise ValueError("tooltip needs at least one term, e.g. tooltip('logits', 'softmax')")
    entries = list(dict.fromkeys(lookup(t) for t in terms))
    return "\n\n".join(f"**{e.term}**: {e.sentence}" for e in entries)


def as_markdown() -> str:
    """Every entry as a Markdown bullet list, in learning order, without a heading (the page adds its own)."""
    return "\n".join(f"- **{e.term}**: {e.sentence}" for e in ENTRIES)
