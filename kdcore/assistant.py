"""The teacher assistant (Mirzadeh et al., AAAI 2020): a mid-sized student between the ensemble and a small one.

Distilling a big ensemble straight into a tiny student can lose to a chain: the ensemble teaches an
assistant, a model larger than the student, and the student learns from the assistant's logits.
An assistant is distilled with the run's own T, alpha, epochs, training images and seed, and cached
beside the teachers (`kdcore.teachers`' cache machinery: atomic writes, a hash per entry, a file lock),
keyed by everything that determines it: the ensemble's members and combination, the assistant's
architecture, its training settings, T, alpha, seed and the exact training images. Re-distilling
through the same assistant, or using it again in the capacity study, never trains it twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from dataclasses import asdict, dataclass

import torch
from filelock import FileLock
from torch import nn

from . import budget, metrics, models, teachers
from . import data as kdata
from . import events as ev
from .limits import shorten
from .train import Trainer, TrainSettings, default_device, predict_logits

CACHE_VERSION = 1
FAMILY_SIZES = ("tiny", "small", "medium", "wide")  # a family's students, then its teacher-sized model


def family_chain(student: str) -> list[str]:
    """The student's family from smallest to largest: "mlp-tiny" -> mlp-tiny, mlp-small, mlp-medium, mlp-wide."""
    family = student.split("-")[0]
    return [f"{family}-{size}" for size in FAMILY_SIZES if f"{family}-{size}" in models.ZOO]


@functools.lru_cache(maxsize=64)
def params(arch: str, dataset: str) -> int:
    return metrics.param_count(models.build(arch, dataset))


def choices(student: str, dataset: str) -> list[str]:
    """Models that can assist this student: every student, and its family's teacher-sized model, with more
    parameters than the student; fewest parameters first."""
    candidates = dict.fromkeys([s.name for s in models.available("student")] + family_chain(student))
    larger = [c for c in candidates if params(c, dataset) > params(student, dataset)]
    return sorted(larger, key=lambda c: params(c, dataset))


def default_assistant(student: str, dataset: str) -> str | None:
    """The next size up in the student's family (the family's teacher-sized model after its medium student)."""
    chain = family_chain(student)
    bigger = chain[chain.index(student) + 1 :] if student in chain else []
    return next((c for c in bigger if c in choices(student, dataset)), None)


def check_assistant(assistant: str | None, student: str, dataset: str) -> str:
    """The assistant to use for this student: the given one if it is larger, else the default; or a ValueError."""
    allowed = choices(student, dataset)
    if assistant is None:
        chosen = default_assistant(student, dataset)
        if chosen is None:
            raise ValueError(
                f"assistant: no model in the zoo is larger than the student {student!r}, so method='ta' has no "
                "assistant to train; pick a smaller student"
            )
        return chosen
    if assistant not in allowed:
        what = (
            "is not a model in the zoo"
            if assistant not in models.ZOO
            else f"is not larger than the student {student!r}"
        )
        raise ValueError(
            f"assistant {shorten(str(assistant))} {what}; choose one of: "
            f"{', '.join(allowed) or 'none (the student is the largest)'}"
        )
    return assistant


@dataclass
class Assistant:
    """A trained teacher assistant with its logits on the train and test sets."""

    arch: str
    name: str  # what its progress events and its table row are called
    key: str
    model: nn.Module
    train_logits: torch.Tensor
    test_logits: torch.Tensor
    cached: bool
    train_seconds: float


def display_name(arch: str) -> str:
    return f"assistant ({arch})"


def assistant_key(
    data: kdata.Dataset,
    ens: teachers.Ensemble,
    arch: str,
    settings: TrainSettings,
    *,
    temperature: float,
    alpha: float,
    seed: int,
    train_idx: torch.Tensor,
) -> str:
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "dataset": data.name,
            "data": teachers.dataset_fingerprint(data),
            "teachers": [t.key for t in ens.members],
            "combine": ens.combine,
            "arch": arch,
            "shapes": teachers.architecture_signature(arch, data.name),
            "settings": asdict(settings),
            "temperature": temperature,
            "alpha": alpha,
            "seed": seed,
            "images": hashlib.sha256(train_idx.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16],
        },
        sort_keys=True,
    )
    return f"{data.name}-assistant-{arch}-s{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _fits(tensors: dict[str, torch.Tensor], data: kdata.Dataset) -> bool:
    logits = {k.removeprefix("logits."): v for k, v in tensors.items() if k.startswith("logits.")}
    return teachers._logits_fit(logits, data)


def get_assistant(
    data: kdata.Dataset,
    ens: teachers.Ensemble,
    arch: str,
    settings: TrainSettings,
    *,
    temperature: float,
    alpha: float,
    seed: int,
    train_idx: torch.Tensor,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    device: torch.device | None = None,
) -> Assistant:
    """Load the assistant from the cache, or distil it from the ensemble and cache it (one process trains).

    Reports AssistantUpdate events (cached, training, trained) and, while training, the Trainer's Step and
    Epoch events under `display_name(arch)`. Raises teachers.Cancelled if stopped while training.
    """
    name = display_name(arch)
    key = assistant_key(data, ens, arch, settings, temperature=temperature, alpha=alpha, seed=seed, train_idx=train_idx)
    base = teachers.cache_dir() / key
    teachers._check_files_free(base)
    device = device or default_device()
    with FileLock(str(teachers._lock_path(base))), budget.torch_threads(budget.model_threads(arch)):
        entry = teachers._load_entry(base)
        model = models.build(arch, data.name, seed=seed)
        if entry is not None:
            state = {k.removeprefix("model."): v for k, v in entry[0].items() if k.startswith("model.")}
            try:
                model.load_state_dict(state)
            except RuntimeError:  # weights that do not fit the architecture are as bad as corrupt ones
                entry = None
            if entry is None or not _fits(entry[0], data):
                teachers._remove_entry(base)
                entry = None
        if entry is not None:
            on_event(ev.AssistantUpdate(model=name, status=ev.TeacherStatus.CACHED))
            tensors, seconds = entry[0], float(entry[1].get("train_seconds", 0.0))
            model.to(device).eval()
        else:
            on_event(ev.AssistantUpdate(model=name, status=ev.TeacherStatus.TRAINING))
            model = models.build(arch, data.name, seed=seed)  # a failed load may have changed some weights
            trainer = Trainer(
                model,
                data,
                settings,
                seed=seed,
                name=name,
                train_idx=train_idx,
                teacher_logits=ens.train_logits,
                temperature=temperature,
                alpha=alpha,
                on_event=on_event,
                cancel=cancel,
                device=device,
            )
            torch.manual_seed(seed)  # dropout, in the teacher-sized assistants, draws from the global generator
            while not trainer.finished:
                trainer.run_epoch()
            if trainer.stopped:
                raise teachers.Cancelled(f"Stopped while training the teacher assistant {arch}; nothing was cached.")
            seconds = trainer.result().seconds
            model.eval()
            tensors = {
                **{f"model.{k}": v for k, v in model.state_dict().items()},
                "logits.train": predict_logits(model, data.train_x, data.mean, data.std, device=device),
                "logits.test": predict_logits(model, data.test_x, data.mean, data.std, device=device),
            }
            teachers._save_entry(
                base,
                tensors,
                {
                    "kind": "assistant",
                    "dataset": data.name,
                    "arch": arch,
                    "teachers": [t.key for t in ens.members],
                    "train_seconds": seconds,
                },
            )
            on_event(ev.AssistantUpdate(model=name, status=ev.TeacherStatus.TRAINED, seconds=seconds))
    return Assistant(
        arch,
        name,
        key,
        model,
        tensors["logits.train"].float(),
        tensors["logits.test"].float(),
        entry is not None,
        seconds,
    )
