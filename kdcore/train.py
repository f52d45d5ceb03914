"""The one training loop, for teachers and students alike.

Batches are sliced from the in-memory uint8 dataset and normalised (and optionally augmented)
as whole-batch tensor ops. A student given cached teacher logits trains on the distillation
loss; the loop reports progress as plain-dict events and stops cleanly when cancelled.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from . import data as kdata
from . import events as ev
from .losses import DistillationLoss, DKDLoss, distillation_loss

# A training loss above this many times that of a model guessing uniformly (ln K) has blown up; any
# run that is learning stays far below it.
EXPLODED_LOSS_FACTOR = 1000.0


class TrainingDiverged(ValueError):
    """The loss exploded or became NaN; the message says what to change, fitting the cause."""

    user_facing = True


@dataclass(frozen=True)
class TrainSettings:
    """How a model is optimised; everything here is part of a cached teacher's key."""

    epochs: int
    batch_size: int = 128
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = False
    schedule: str = "cosine"  # "cosine" or "constant"

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")


def teacher_settings(dataset: str, epochs: int | None = None) -> TrainSettings:
    """Per-dataset teacher defaults (chosen by measurement; see README)."""
    if dataset == "cifar10":
        s = TrainSettings(epochs=15, optimizer="sgd", lr=0.05, weight_decay=5e-4, augment=True)
    elif dataset == "mnist-sample":
        s = TrainSettings(epochs=6, lr=3e-3, augment=True)
    else:
        s = TrainSettings(epochs=5, lr=3e-3, augment=True)
    return s if epochs is None else TrainSettings(**{**s.__dict__, "epochs": int(epochs)})


def student_settings(dataset: str, epochs: int) -> TrainSettings:
    """Per-dataset student defaults. No augmentation: the teacher's cached logits are for the un-augmented images."""
    if dataset == "cifar10":
        return TrainSettings(epochs=epochs, optimizer="sgd", lr=0.05, weight_decay=5e-4)
    return TrainSettings(epochs=epochs)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.inference_mode()
def predict_logits(
    model: nn.Module, x: torch.Tensor, mean, std, *, batch_size: int = 128, device: torch.device | None = None
) -> torch.Tensor:
    """Logits (on CPU) for a uint8 image tensor, in eval mode; the caller's model is left as it was.

    A convolutional model scoring more than one batch runs as a channels-last copy: on CPU that is
    about twice as fast for these nets (measured in benchmarks/README.md), and copying a model of a few
    megabytes costs milliseconds. Batches of 128 beat 1000 for the same reason: they stay in cache.
    """
    device = device or next(model.parameters()).device
    convolutional = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    if convolutional and len(x) > batch_size:
        fast = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
        out = [
            fast(
                kdata.normalize(x[i : i + batch_size].to(device), mean, std).contiguous(
                    memory_format=torch.channels_last
                )
            )
            .float()
            .cpu()
            for i in range(0, len(x), batch_size)
        ]
        return torch.cat(out)
    was_training = model.training
    model.eval()
    try:
        out = [
            model(kdata.normalize(x[i : i + batch_size].to(device), mean, std)).float().cpu()
            for i in range(0, len(x), batch_size)
        ]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 10)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[ev.Epoch] = field(default_factory=list)  # one per finished epoch
    partial: bool = False  # stopped before the last epoch
    seconds: float = 0.0

    @property
    def test_acc(self) -> float | None:
        return self.history[-1].test_acc if self.history else None


class Trainer:
    """Trains one model epoch by epoch so two trainers can run interleaved (scratch and distilled)."""

    def __init__(
        self,
        model: nn.Module,
        data: kdata.Dataset,
        settings: TrainSettings,
        *,
        seed: int,
        name: str = "model",
        train_idx: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
        temperature: float = 1.0,
        alpha: float = 0.0,
        on_event: ev.EventFn | None = None,
        cancel: threading.Event | None = None,
        device: torch.device | None = None,
        progress_every_s: float = 1.0,
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], DistillationLoss | DKDLoss] | None = None,
    ):
        if teacher_logits is None and alpha > 0:
            raise ValueError("alpha > 0 needs teacher_logits")
        # loss_fn(student logits, teacher logits, labels) replaces the Hinton loss at this T and alpha. The
        # fields of its result after (total, hard, soft) reach the curves as each event's `parts`.
        self.loss_fn = loss_fn or functools.partial(distillation_loss, temperature=temperature, alpha=alpha)
        self.device = device or default_device()
        self.model = model.to(self.device)
        self.data, self.settings, self.name = data, settings, name
        self.temperature, self.alpha = temperature, alpha
        self.on_event = on_event or ev.ignore
        self.cancel = cancel or threading.Event()
        self.progress_every_s = progress_every_s
        self.idx = (torch.arange(len(data.train_y)) if train_idx is None else train_idx).cpu()
        # Data order and augmentation come from this generator alone, so the scratch and the
        # distilled student see identical batches whatever else runs between their steps.
        self.gen = torch.Generator().manual_seed(seed)
        self.x = data.train_x.to(self.device)
        self.y = data.train_y.to(self.device)
        self.teacher = None if teacher_logits is None else teacher_logits.to(self.device)
        self.mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)
        self.opt = self._optimizer()
        steps_per_epoch = math.ceil(len(self.idx) / settings.batch_size)
        self.sched = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, settings.epochs * steps_per_epoch)
            if settings.schedule == "cosine"
            else None
        )
        self.epoch = 0
        self.history: list[ev.Epoch] = []
        # The newest epoch's test-set logits, kept so callers can read them without running the model again.
        self.test_logits: torch.Tensor | None = None
        self.stopped = False
        self.started = time.perf_counter()

    def _optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        if s.optimizer == "sgd":
            return torch.optim.SGD(
                self.model.parameters(), lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay
            )
        return torch.optim.Adam(self.model.parameters(), lr=s.lr, weight_decay=s.weight_decay)

    @property
    def finished(self) -> bool:
        return self.stopped or self.epoch >= self.settings.epochs

    def run_epoch(self) -> ev.Epoch | None:
        """Train one epoch; returns its Epoch event, or None when cancelled mid-epoch."""
        s = self.settings
        self.model.train()
        order = self.idx[torch.randperm(len(self.idx), generator=self.gen)]
        sums: torch.Tensor | None = None
        names: tuple[str, ...] = ()  # a loss's parts after (total, hard, soft), e.g. DKD's tckd and nckd
        seen, last_report = 0, time.perf_counter()
        n_batches = math.ceil(len(order) / s.batch_size)
        for b in range(n_batches):
            if self.cancel.is_set():
                self.stopped = True
                return None
            bi = order[b * s.batch_size : (b + 1) * s.batch_size]
            bi_dev = bi.to(self.device)
            x = self.x[bi_dev]
            if s.augment:  # on uint8, so the padding is black like the images' background
                x = kdata.augment(x, self.data.name, self.gen)
            x = kdata.normalize(x, self.mean, self.std)
            logits = self.model(x)
            if self.teacher is None:
                hard = nn.functional.cross_entropy(logits, self.y[bi_dev])
                parts = (hard, hard, torch.zeros((), device=self.device))
            else:
                parts = self.loss_fn(logits, self.teacher[bi_dev], self.y[bi_dev])
            self.opt.zero_grad(set_to_none=True)
            parts[0].backward()
            self.opt.step()
            if self.sched is not None:
                self.sched.step()
            if sums is None:
                sums = torch.zeros(len(parts), device=self.device)
                names = tuple(getattr(parts, "_fields", ())[3:])
            sums += torch.stack([p.detach() for p in parts]) * len(bi)
            seen += len(bi)
            now = time.perf_counter()
            if now - last_report >= self.progress_every_s:
                last_report = now
                avg = (sums / seen).tolist()
                self._check_loss(avg[0])
                self.on_event(
                    ev.Step(
                        model=self.name,
                        epoch=self.epoch + (b + 1) / n_batches,
                        epochs=s.epochs,
                        loss=avg[0],
                        hard=avg[1],
                        soft=avg[2] if self.teacher is not None else None,
                        parts=dict(zip(names, avg[3:])) or None,
                    )
                )
        avg = (sums / seen).tolist()
        self._check_loss(avg[0])
        self.epoch += 1
        test_logits = predict_logits(self.model, self.data.test_x, self.data.mean, self.data.std, device=self.device)
        event = ev.Epoch(
            model=self.name,
            epoch=self.epoch,
            epochs=s.epochs,
            loss=avg[0],
            hard=avg[1],
            soft=avg[2] if self.teacher is not None else None,
            test_acc=(test_logits.argmax(1) == self.data.test_y).float().mean().item(),
            parts=dict(zip(names, avg[3:])) or None,
        )
        self.test_logits = test_logits
        self.history.append(event)
        self.on_event(event)
        return event

    def _check_loss(self, loss: float) -> None:
        limit = EXPLODED_LOSS_FACTOR * math.log(self.data.num_classes)
        if math.isfinite(loss) and loss <= limit:
            return
        what = f"The training loss of {self.name} reached {loss:.3g} in epoch {self.epoch + 1} and training was stopped"
        raise TrainingDiverged(f"{what}: {divergence_advice(self.alpha, self.temperature, self.settings.lr)}")

    def result(self) -> TrainResult:
        self.model.eval()
        return TrainResult(
            self.model,
            list(self.history),
            partial=self.epoch < self.settings.epochs,
            seconds=time.perf_counter() - self.started,
        )


def divergence_advice(alpha: float, temperature: float, lr: float) -> str:
    """What to change after a loss blew up, by its likely cause."""
    if alpha > 0:
        return (
            f"the soft loss (α = {alpha:g}, T = {temperature:g}) pushed the student too hard. Try a smaller α, "
            "or T from 1 to 20, and start again"
        )
    return f"the learning rate ({lr:g}) is too high for this model. Lower it (e.g. ten times) and start again"


def train_together(
    trainers: Sequence[Trainer], *, lanes: int = 1, on_epoch: Callable[[list[ev.Epoch]], None] | None = None
) -> int:
    """Train the trainers' models epoch by epoch in lockstep; returns the epochs every one of them finished.

    With lanes = 2 two models train at once, each on its own thread with one intra-op thread: no thread
    waits for another inside an operation, so a busy neighbour slows them down instead of stalling them.
    After a Stop every model is put back to the end of the last epoch they all finished, so models
    stopped together are always compared after the same training. on_epoch receives each finished
    epoch's events.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .budget import torch_threads

    def snapshot() -> list[dict]:
        return [copy.deepcopy(t.model.state_dict()) for t in trainers]

    common, saved, stopped = 0, snapshot(), False
    pool = ThreadPoolExecutor(lanes, thread_name_prefix="kd-lane") if lanes > 1 and len(trainers) > 1 else None
    try:
        with torch_threads(1) if pool is not None else contextlib.nullcontext():
            while not any(t.finished for t in trainers):
                if pool is not None:
                    epochs = list(pool.map(Trainer.run_epoch, trainers))
                else:
                    epochs = [t.run_epoch() for t in trainers]
                if any(e is None for e in epochs):
                    stopped = True
                    break
                common, saved = common + 1, snapshot()
                if on_epoch is not None:
                    on_epoch(epochs)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if stopped:  # a stopped epoch changed weights (a finished one, or part of one) after the snapshot
        for trainer, state in zip(trainers, saved):
            trainer.model.load_state_dict(state)
            trainer.epoch, trainer.history = common, trainer.history[:common]
    return common


def train(model: nn.Module, data: kdata.Dataset, settings: TrainSettings, *, seed: int, **kwargs) -> TrainResult:
    """Train to the end (or until cancelled); kwargs as for Trainer."""
    trainer = Trainer(model, data, settings, seed=seed, **kwargs)
    # Dropout draws from the global generator; seeding it makes a lone training run reproducible.
    torch.manual_seed(seed)
    while not trainer.finished:
        trainer.run_epoch()
    return trainer.result()
