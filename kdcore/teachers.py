"""Teacher ensembles and their on-disk caches (trained weights and logits).

A member is named "arch" or "arch@seed" (e.g. "cnn-wide@2"), so the same architecture can appear
twice with different seeds. Each trained member is cached under a key that hashes everything that
determines it; its logits on the train and test sets are cached beside it, so re-distilling with
another T or alpha never runs a teacher again. Writes are atomic and guarded by a file lock; an
entry that fails validation is deleted and rebuilt, never loaded. Members missing from the cache train
side by side, one thread each, when the job's budget has two threads.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import platform
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load_file, save_file
from torch import nn

from . import budget, limits, metrics, models, speed
from . import data as kdata
from . import events as ev
from .train import Trainer, TrainSettings, default_device, predict_logits, teacher_settings
from .train import train_side_by_side as train_lanes

CACHE_VERSION = 1
WHITENING_IMAGES = 5000  # training images whose patch statistics set a whitening layer
COMBINES = ("prob", "logit")


class Cancelled(Exception):
    """Work was stopped by the user before anything could be returned."""


class CacheError(ValueError):
    """The teacher cache cannot be used where it lives; the message names the path and what to do."""

    user_facing = True


@dataclass(frozen=True)
class Member:
    arch: str
    seed: int = 0

    @property
    def name(self) -> str:
        return self.arch if self.seed == 0 else f"{self.arch}@{self.seed}"


def parse_members(spec: str | Sequence[str], default_seed: int = 0) -> tuple[Member, ...]:
    """ "cnn-wide,cnn-wide@1,mlp-wide" -> Members; 1 to MAX_TEACHERS teachers from the zoo."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    teachers = [m.name for m in models.available("teacher")]
    if not 1 <= len(items) <= limits.MAX_TEACHERS:
        raise ValueError(
            f"teachers must list 1 to {limits.MAX_TEACHERS} members from {', '.join(teachers)}, got {len(items)}"
        )
    out = []
    for item in items:
        arch, _, seed = item.partition("@")
        if arch not in teachers:
            raise ValueError(
                f"unknown teacher {limits.shorten(arch)}; choose from: {', '.join(teachers)} (add @N for another seed)"
            )
        if seed and not seed.isdigit():
            raise ValueError(f"teacher seed in {limits.shorten(item)} must be a whole number, e.g. {arch}@1")
        out.append(Member(arch, limits.check_seed(int(seed), "teacher seed") if seed else default_seed))
    dup = next((m for i, m in enumerate(out) if m in out[:i]), None)
    if dup is not None:
        used = {m.seed for m in out if m.arch == dup.arch}
        free = next(s for s in range(1, len(out) + 2) if s not in used)
        raise ValueError(
            f"teachers {limits.shorten(','.join(items), 80)} lists the same member twice; give duplicates different "
            f"seeds (e.g. {dup.arch}@{free})"
        )
    return tuple(out)


_FIX_HINT = "set KD_DATA_DIR to another folder."
# Cache folders already cleaned in this process (KD_DATA_DIR may point elsewhere later).
_swept: set[Path] = set()


def _cache_path() -> Path:
    return kdata.data_dir() / "cache" / "teachers"


def cache_dir() -> Path:
    """The cache folder, created if missing; its first use in a process removes what killed runs left."""
    path = _cache_path()
    for folder in (path.parent, path):
        if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
            raise CacheError(
                f"The teacher cache needs a folder at {folder}, but a file is there. "
                f"Move or delete that file, or {_FIX_HINT}"
            )
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CacheError(
            f"Cannot create the teacher cache folder {path} ({exc.strerror or exc}); {_FIX_HINT}"
        ) from None
    if path not in _swept:
        _swept.add(path)
        kdata.remove_stale_temp_files(path)
    return path


@functools.lru_cache(maxsize=16)
def dataset_fingerprint(data: kdata.Dataset) -> str:
    """Identifies the exact images a teacher was trained on (a user may replace dataset files)."""
    h = hashlib.sha256()
    for t in (data.train_y, data.test_y, data.train_x[:512], data.test_x[:512]):
        h.update(t.contiguous().numpy().tobytes())
    h.update(str((len(data.train_x), len(data.test_x))).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=64)
def architecture_signature(arch: str, dataset: str) -> str:
    """Parameter names and shapes, so a change to the zoo's definition never loads stale weights."""
    shapes = {k: list(v.shape) for k, v in models.build(arch, dataset).state_dict().items()}
    return hashlib.sha256(json.dumps(shapes, sort_keys=True).encode()).hexdigest()[:16]


# Settings added after teachers were first cached, with their defaults: a field at its default is left out
# of the key, so teachers cached before it existed (trained exactly that way) keep their keys.
_LATER_FIELDS = {"alternate_flip": False}


def teacher_key(data: kdata.Dataset, member: Member, settings: TrainSettings) -> str:
    blob = json.dumps(
        {
            "v": CACHE_VERSION,
            "dataset": data.name,
            "data": dataset_fingerprint(data),
            "arch": member.arch,
            "shapes": architecture_signature(member.arch, data.name),
            "seed": member.seed,
            "settings": {k: v for k, v in asdict(settings).items() if k not in _LATER_FIELDS or v != _LATER_FIELDS[k]},
        },
        sort_keys=True,
    )
    return f"{data.name}-{member.arch}-s{member.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:16]}"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _entry_paths(base: Path) -> tuple[Path, Path]:
    return base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")


def _save_entry(base: Path, tensors: dict[str, torch.Tensor], info: dict) -> None:
    """Weights first, manifest last: a manifest only exists for a complete, hashed tensor file."""
    st, mf = _entry_paths(base)
    kdata.atomic_write(st, lambda p: save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(p)))
    manifest = {**info, "sha256": _sha256(st), "shapes": {k: list(v.shape) for k, v in tensors.items()}}
    kdata.atomic_write(mf, lambda p: p.write_text(json.dumps(manifest, indent=1)))


def _load_entry(base: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The tensors and manifest, or None (and the entry removed) if missing, partial or corrupt."""
    st, mf = _entry_paths(base)
    if not mf.exists():
        return None
    try:
        manifest = json.loads(mf.read_text())
        if manifest.get("sha256") != _sha256(st):
            raise ValueError("hash mismatch")
        tensors = load_file(str(st))
        if {k: list(v.shape) for k, v in tensors.items()} != manifest["shapes"]:
            raise ValueError("shape mismatch")
        return tensors, manifest
    except Exception:
        # Any failure to validate means rebuild; loading a half-written file is never an option.
        _remove_entry(base)
        return None


def _remove_entry(base: Path) -> None:
    for path in _entry_paths(base):
        path.unlink(missing_ok=True)


def _lock_path(base: Path) -> Path:
    return base.with_name(base.name + ".lock")


def _check_files_free(base: Path) -> None:
    """Fail with the path to clear if a folder sits where the cache keeps one of base's files."""
    paths = (*_entry_paths(base), *_entry_paths(base.with_name(base.name + ".logits")), _lock_path(base))
    for path in paths:
        if path.is_dir():
            raise CacheError(
                f"The teacher cache needs a file at {path}, but a folder is there. "
                f"Move or delete that folder, or {_FIX_HINT}"
            )


# How a photo teacher's test logits are scored: the image and its mirror, unmoved and moved a pixel each way.
PHOTO_TEST_VIEWS = "mirror+shift"


def _logits_fit(tensors: dict[str, torch.Tensor], data: kdata.Dataset) -> bool:
    """Whether cached logits hold one finite float row per train and test image and one column per class."""
    rows = {"train": len(data.train_x), "test": len(data.test_x)}
    return tensors.keys() == rows.keys() and all(
        t.shape == (rows[k], data.num_classes) and t.is_floating_point() and bool(torch.isfinite(t).all())
        for k, t in tensors.items()
    )


@dataclass
class Teacher:
    """One trained ensemble member with its cached logits."""

    member: Member
    key: str
    model: nn.Module
    train_logits: torch.Tensor
    test_logits: torch.Tensor
    cached: bool
    train_seconds: float
    settings: TrainSettings

    @property
    def name(self) -> str:
        return self.member.name


@dataclass
class Ensemble:
    """One teacher made of its members: logits are log of mean probabilities ("prob") or mean logits ("logit")."""

    dataset: str
    members: list[Teacher]
    combine: str
    train_logits: torch.Tensor
    test_logits: torch.Tensor

    @property
    def models(self) -> list[nn.Module]:
        return [m.model for m in self.members]

    @property
    def name(self) -> str:
        return "ensemble(" + "+".join(m.name for m in self.members) + ")"


def combine_logits(logits: Sequence[torch.Tensor], combine: str = "prob") -> torch.Tensor:
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    stacked = torch.stack(list(logits))
    if combine == "logit":
        return stacked.mean(0)
    # log of the mean probability: softmax of this equals the averaged member probabilities.
    return torch.logsumexp(torch.log_softmax(stacked, -1), 0) - torch.log(torch.tensor(float(len(logits))))


def missing_members(data: kdata.Dataset, members: Sequence[Member], epochs: int | None = None) -> list[Member]:
    """The members that loading would have to train, because their weights are not in the cache.

    Reads file names only, so pages can ask on every rerun; a damaged entry counts as present here and
    is rebuilt when it is loaded.
    """
    settings = teacher_settings(data.name, epochs)
    # Never creates or checks the folder, so pages can ask on every rerun; loading reports a cache it cannot use.
    return [m for m in members if not (_cache_path() / f"{teacher_key(data, m, settings)}.json").is_file()]


def _finish_training(
    data: kdata.Dataset,
    member: Member,
    settings: TrainSettings,
    model: nn.Module,
    seconds: float,
    threads: int,
    on_event: ev.EventFn,
) -> None:
    """Cache a member that has just trained for `seconds` on `threads` threads, and say so."""
    speed.note(data.name, member.arch, "teacher", threads, len(data.train_y) * settings.epochs, seconds)
    info = {
        "kind": "teacher",
        "dataset": data.name,
        "arch": member.arch,
        "seed": member.seed,
        "settings": asdict(settings),
        "train_seconds": seconds,
    }
    _save_entry(cache_dir() / teacher_key(data, member, settings), model.state_dict(), info)
    on_event(ev.TeacherUpdate(member=member.name, status=ev.TeacherStatus.TRAINED, seconds=seconds))


def new_trainer(
    data: kdata.Dataset,
    member: Member,
    settings: TrainSettings,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    device: torch.device | None = None,
) -> Trainer:
    """A member's untrained model (its whitening layer, if any, set from the data) and its Trainer."""
    model = models.build(member.arch, data.name, seed=member.seed)
    if hasattr(model, "init_from_data"):  # e.g. AirNet's whitening layer, from the first images
        model.init_from_data(kdata.normalize(data.train_x[:WHITENING_IMAGES], data.mean, data.std))
    return Trainer(
        model,
        data,
        settings,
        seed=member.seed,
        name=member.name,
        on_event=on_event,
        cancel=cancel,
        device=device,
        score_each_epoch=False,
    )


def train_side_by_side(
    data: kdata.Dataset,
    members: Sequence[Member],
    settings: TrainSettings,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    device: torch.device | None = None,
) -> dict[Member, float]:
    """Train and cache the members missing from the cache side by side, one per lane, when this job's
    budget has two lanes and two or more are missing; returns the busy seconds of each member it trained.

    Two CIFAR-10 members on one thread each train 1.1x more images per second than one member on both
    threads on the idle machine, and 1.2 to 1.3x beside a busy neighbour (benchmarks/teacher_lanes.py); and
    three members on two threads finish together instead of the third running alone. A member another
    process is training is left to get_teacher, which waits for it.
    """
    device = device or default_device()
    lanes = budget.lanes() if device.type == "cpu" else 1
    missing = missing_members(data, members, settings.epochs) if lanes > 1 else []
    if len(missing) < 2:
        return {}
    with contextlib.ExitStack() as held:
        claimed = []
        for member in missing:
            base = cache_dir() / teacher_key(data, member, settings)
            _check_files_free(base)
            lock = FileLock(str(_lock_path(base)), timeout=0)
            with contextlib.suppress(Timeout):
                held.enter_context(lock)
                if _load_entry(base) is None:
                    claimed.append(member)
        if len(claimed) < 2:
            return {}
        trainers = [new_trainer(data, m, settings, on_event=on_event, cancel=cancel, device=device) for m in claimed]
        member_of = dict(zip(trainers, claimed))
        for member in claimed:
            on_event(ev.TeacherUpdate(member=member.name, status=ev.TeacherStatus.TRAINING))

        def finished(trainer: Trainer, seconds: float) -> None:
            _finish_training(data, member_of[trainer], settings, trainer.model, seconds, 1, on_event)

        busy = train_lanes(trainers, lanes=lanes, on_finished=finished)
        if any(t.stopped for t in trainers):
            raise Cancelled("Stopped while training the teachers; those that finished stay cached.")
    return dict(zip(claimed, busy))


def missing_views(data: kdata.Dataset, members: Sequence[Member], epochs: int | None = None) -> list[Member]:
    """The members whose logits for the dataset's fixed views are not cached (file names only, like
    missing_members); none on a dataset without views."""
    if data.name not in kdata.VIEWS:
        return []
    settings = teacher_settings(data.name, epochs)
    return [m for m in members if not (_cache_path() / f"{teacher_key(data, m, settings)}.views.json").is_file()]


def get_teacher(
    data: kdata.Dataset,
    member: Member,
    settings: TrainSettings,
    *,
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    device: torch.device | None = None,
) -> Teacher:
    """Load the member from the cache, or train it and cache it (one process trains, others wait)."""
    key = teacher_key(data, member, settings)
    base = cache_dir() / key
    _check_files_free(base)
    threads = budget.model_threads(member.arch)
    with FileLock(str(_lock_path(base))), budget.torch_threads(threads):
        weights = _load_entry(base)
        model = models.build(member.arch, data.name, seed=member.seed)
        if weights is not None:
            try:
                model.load_state_dict(weights[0])
            except RuntimeError:  # weights that do not fit the architecture are as bad as corrupt ones
                _remove_entry(base)
                weights = None
        cached = weights is not None
        if cached:
            seconds = weights[1].get("train_seconds", 0.0)
            on_event(ev.TeacherUpdate(member=member.name, status=ev.TeacherStatus.CACHED))
        else:
            on_event(ev.TeacherUpdate(member=member.name, status=ev.TeacherStatus.TRAINING))
            # A fresh model: a load_state_dict that failed above may have copied part of the weights.
            trainer = new_trainer(data, member, settings, on_event=on_event, cancel=cancel, device=device)
            model = trainer.model
            torch.manual_seed(member.seed)
            while not trainer.finished:
                trainer.run_epoch()
            if trainer.stopped:
                raise Cancelled(f"Stopped while training teacher {member.name}; nothing was cached.")
            seconds = trainer.result().seconds
            _finish_training(data, member, settings, model, seconds, threads, on_event)
        model.to(device or default_device()).eval()
        logits_base = cache_dir() / f"{key}.logits"
        entry = _load_entry(logits_base)
        photo = data.name in kdata.FLIP_INVARIANT
        test_views = PHOTO_TEST_VIEWS if photo else "plain"
        # Hashed and complete, but for other data, or test logits scored another way (entries from before the
        # moved views say nothing: theirs were the mirror alone).
        if entry is not None and (
            not _logits_fit(entry[0], data) or entry[1].get("test_views", "mirror" if photo else "plain") != test_views
        ):
            _remove_entry(logits_base)
            entry = None
        if entry is None:
            # A photo's teacher answers for the image, its mirror and their one-pixel moves together
            # (test-time augmentation); the students' training logits are for the plain images.
            bf16, shift = settings.bf16, data.name if photo else None
            entry = (
                {
                    "train": predict_logits(model, data.train_x, data.mean, data.std, bf16=bf16),
                    "test": predict_logits(
                        model, data.test_x, data.mean, data.std, mirror=photo, shift=shift, bf16=bf16
                    ),
                },
                {},
            )
            _save_entry(logits_base, entry[0], {"kind": "logits", "teacher": key, "test_views": test_views})
    return Teacher(member, key, model, entry[0]["train"], entry[0]["test"], cached, seconds, settings)


def view_logits(teacher: Teacher, data: kdata.Dataset, on_event: ev.EventFn = ev.ignore) -> torch.Tensor:
    """The member's logits for every fixed view (kdata.VIEWS) of every training image: [images, views, K].

    Computed once and cached beside its weights (float16: 8 MB per CIFAR-10 teacher for 8 views), so every
    student taught with consistent augmentation reuses them.
    """
    table = kdata.VIEWS[data.name]
    base = cache_dir() / f"{teacher.key}.views"
    _check_files_free(base)
    shape = [len(data.train_y), len(table), data.num_classes]
    threads = budget.model_threads(teacher.member.arch)
    with FileLock(str(_lock_path(base))), budget.torch_threads(threads):
        entry = _load_entry(base)
        if entry is not None and list(entry[0].get("train", torch.empty(0)).shape) != shape:
            _remove_entry(base)
            entry = None
        if entry is None:
            on_event(ev.TeacherUpdate(member=teacher.name, status=ev.TeacherStatus.VIEWS))
            out = torch.empty(shape, dtype=torch.float16)
            started = time.perf_counter()
            for v in range(len(table)):
                seen = kdata.views(data.train_x, torch.full((len(data.train_y),), v), data.name)
                out[:, v] = predict_logits(teacher.model, seen, data.mean, data.std, bf16=teacher.settings.bf16).half()
            images = len(data.train_y) * len(table)
            speed.note(data.name, teacher.member.arch, "views", threads, images, time.perf_counter() - started)
            entry = ({"train": out}, {})
            _save_entry(base, entry[0], {"kind": "views", "teacher": teacher.key, "views": [list(t) for t in table]})
    return entry[0]["train"].float()


def ensemble(
    data: kdata.Dataset,
    members: Sequence[Member],
    *,
    epochs: int | None = None,
    combine: str = "prob",
    on_event: ev.EventFn = ev.ignore,
    cancel: threading.Event | None = None,
    device: torch.device | None = None,
) -> Ensemble:
    """Train or load every member, then combine their cached logits into the ensemble teacher's."""
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    settings = teacher_settings(data.name, epochs)
    for i, member in enumerate(members):
        on_event(ev.TeacherStart(member=member.name, index=i, count=len(members), epochs=settings.epochs))
    fresh = train_side_by_side(data, members, settings, on_event=on_event, cancel=cancel, device=device)
    trained = []
    for member in members:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Stopped before all teachers were ready; finished teachers stay cached.")
        # A member trained side by side just now has said so; loading it must not report it as cached.
        quiet = member in fresh
        teacher = get_teacher(
            data, member, settings, on_event=ev.ignore if quiet else on_event, cancel=cancel, device=device
        )
        if quiet:
            teacher.cached, teacher.train_seconds = False, fresh[member]
        trained.append(teacher)
    return Ensemble(
        data.name,
        trained,
        combine,
        combine_logits([t.train_logits for t in trained], combine),
        combine_logits([t.test_logits for t in trained], combine),
    )


def model_latency(arch: str, dataset: str, model: nn.Module) -> metrics.Latency:
    """The latency of the zoo architecture `arch` on `dataset`'s images, measured once on this machine.

    Time per image depends on the architecture, not on its trained weights, so every teacher and student
    of that architecture shares one measurement, kept in the cache folder: a new process reads it instead
    of spending seconds timing again, and repeated runs report the same speed instead of timing noise. A
    record from another machine, thread setting or PyTorch is measured again.
    """
    path = cache_dir() / f"latency-{dataset}-{arch}.json"
    where = {"host": platform.node(), "threads": metrics.LATENCY_THREADS, "torch": torch.__version__}
    try:
        record = json.loads(path.read_text())
        if {k: record.get(k) for k in where} == where:
            return metrics.Latency(float(record["ms_batch1"]), float(record["throughput_b256"]), int(record["threads"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass  # missing or unreadable: measure it again
    device = next(model.parameters()).device
    latency = metrics.measure_latency(model, models.image_shape(dataset), device=device)
    if device.type == "cpu":
        payload = {**where, "ms_batch1": latency.ms_batch1, "throughput_b256": latency.throughput_b256}
        with contextlib.suppress(OSError):  # a read-only cache costs a re-measurement, not the run
            kdata.atomic_write(path, lambda p: p.write_text(json.dumps(payload)))
    return latency


def ensemble_views(ens: Ensemble, data: kdata.Dataset, on_event: ev.EventFn = ev.ignore) -> torch.Tensor:
    """The ensemble teacher's logits for every fixed view of every training image: [images, views, K]."""
    return combine_logits([view_logits(t, data, on_event) for t in ens.members], ens.combine)
