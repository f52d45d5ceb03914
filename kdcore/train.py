"""The one training loop, for teachers and students alike.

Batches are sliced from the in-memory uint8 dataset and normalised (and optionally augmented)
as whole-batch tensor ops. A student given cached teacher logits trains on the distillation
loss; the loop reports progress as typed events (kdcore.events) and stops cleanly when cancelled.
Models that train at once do so on "lanes", one thread each: in lockstep (two students compared epoch
for epoch) or side by side until each is done (an ensemble's members).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
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
    optimizer: str = "adam"  # "adam" or "sgd" (Nesterov, with `momentum`)
    lr: float = 1e-3
    weight_decay: float = 0.0
    augment: bool = False
    schedule: str = "cosine"  # see SCHEDULES
    momentum: float = 0.9
    label_smoothing: float = 0.0
    bias_lr_scale: float = 1.0  # learning rate of 1-d parameters (biases, norms) relative to the rest
    ema: bool = False  # airbench's lookahead: the weights move towards a slow average late in training
    bf16: bool = False  # bfloat16 autocast where the hardware does it natively
    channels_last: bool = False
    # airbench's alternating flip (with augment, on photos): each image is mirrored in every other epoch,
    # starting mirrored or not at random, instead of by a coin toss each epoch that may repeat itself.
    alternate_flip: bool = False

    def __post_init__(self):
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs!r}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, got {self.schedule!r}")


def _triangle(progress: float) -> float:
    """airbench's schedule: from 0.2 up to 1 over the first 23 % of training, then straight down to 0.07."""
    peak = 0.23
    return 0.2 + 0.8 * progress / peak if progress < peak else 1 - 0.93 * (progress - peak) / (1 - peak)


def _one_cycle(progress: float) -> float:
    """Up from 0.1 to 1 over the first 20 % of training, then straight down to 0.001."""
    peak = 0.2
    return 0.1 + 0.9 * progress / peak if progress < peak else 1 - 0.999 * (progress - peak) / (1 - peak)


# Learning-rate factor by the share of training done; "cosine" is torch's CosineAnnealingLR.
SCHEDULES = {"cosine": None, "constant": lambda progress: 1.0, "triangle": _triangle, "onecycle": _one_cycle}


def _eager(cls: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """`cls` without the wrappers that tell TorchDynamo where to break a compiled graph: the same update, to
    the last bit, but its first use no longer imports PyTorch's compiler stack, which took 1.0 s of a 6 s warm
    `python -m kdcore distill`. Nothing here compiles an optimizer step."""
    return type(
        cls.__name__,
        (cls,),
        {
            "add_param_group": inspect.unwrap(torch.optim.Optimizer.add_param_group),
            "zero_grad": inspect.unwrap(torch.optim.Optimizer.zero_grad),
            "step": torch.no_grad()(inspect.unwrap(cls.step)),
        },
    )


ADAM, SGD = _eager(torch.optim.Adam), _eager(torch.optim.SGD)


def bf16_ready(device: torch.device) -> bool:
    """Whether bfloat16 runs natively here (CUDA with bf16, or a CPU with AVX-512 BF16); elsewhere it is slow."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return device.type == "cpu" and probe is not None and probe()


def teacher_settings(dataset: str, epochs: int | None = None) -> TrainSettings:
    """Per-dataset teacher defaults (chosen by measurement; see README).

    CIFAR-10 follows airbench's recipe (measured by benchmarks/consistent_teaching.py): batches of 1024,
    Nesterov SGD with momentum 0.85, label smoothing 0.2, a triangular schedule, 64x the learning rate
    for biases, the lookahead average, and bfloat16 with channels-last where the hardware has them.
    """
    if dataset == "cifar10":
        # airbench's lr 11.5 and weight decay 0.0153 are per 1024 images of a summed loss; these are the
        # same steps for a loss averaged over the batch.
        s = TrainSettings(
            epochs=10,
            batch_size=1024,
            optimizer="sgd",
            lr=1.5,
            momentum=0.85,
            weight_decay=1.34e-3,
            augment=True,
            schedule="triangle",
            label_smoothing=0.2,
            bias_lr_scale=64.0,
            ema=True,
            bf16=True,
            channels_last=True,
            alternate_flip=True,
        )
    elif dataset == "mnist-sample":
        s = TrainSettings(epochs=6, lr=3e-3, augment=True)
    else:
        s = TrainSettings(epochs=5, lr=3e-3, augment=True)
    return s if epochs is None else TrainSettings(**{**s.__dict__, "epochs": int(epochs)})


def student_settings(dataset: str, epochs: int) -> TrainSettings:
    """Per-dataset student defaults. Students never augment at random: with consistent teaching they see
    fixed views whose teacher logits are cached (Trainer's `views`), else the plain images."""
    if dataset == "cifar10":
        return TrainSettings(
            epochs=epochs,
            batch_size=256,
            optimizer="sgd",
            lr=0.2,
            weight_decay=5e-4,
            schedule="onecycle",
            bf16=True,  # 1.6x faster per step for bn-small on an AVX-512 BF16 CPU; the README's numbers use it
            channels_last=True,
        )
    return TrainSettings(epochs=epochs)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    x: torch.Tensor,
    mean,
    std,
    *,
    batch_size: int = 128,
    device: torch.device | None = None,
    mirror: bool = False,
    shift: str | None = None,
    bf16: bool = False,
) -> torch.Tensor:
    """Logits (on CPU) for a uint8 image tensor, in eval mode; the caller's model is left as it was.

    `mirror` averages each image's logits with its mirror image's (test-time augmentation, for photos);
    `shift` (a dataset name, for its border rule) also averages in the image moved one pixel diagonally each
    way, each half as much as the unmoved one (airbench's test-time views), mirrored too with `mirror`;
    `bf16` runs in bfloat16 where the hardware does it natively. A convolutional model scoring more than
    one batch runs as a channels-last copy: on CPU that is about twice as fast for these nets (measured in
    benchmarks/README.md), and copying a model of a few megabytes costs milliseconds. Batches of 128 beat
    1000 for the same reason: they stay in cache.
    """
    device = device or next(model.parameters()).device
    convolutional = x.dim() == 4 and any(isinstance(m, nn.Conv2d) for m in model.modules())
    fast = convolutional and len(x) > batch_size
    net = copy.deepcopy(model).eval().to(memory_format=torch.channels_last) if fast else model
    was_training = model.training
    net.eval()

    def run(batch: torch.Tensor) -> torch.Tensor:
        if fast:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and bf16_ready(device)):
            return net(batch).float()

    def views(batch: torch.Tensor) -> torch.Tensor:
        logits = run(batch)
        return (logits + run(batch.flip(-1))) / 2 if mirror else logits

    try:
        out = []
        for i in range(0, len(x), batch_size):
            raw = x[i : i + batch_size].to(device)
            logits = views(kdata.normalize(raw, mean, std))
            if shift is not None:
                moved = [views(kdata.normalize(kdata.translate(raw, d, d, shift), mean, std)) for d in (-1, 1)]
                logits = logits / 2 + (moved[0] + moved[1]) / 4
            out.append(logits.cpu())
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
        view_logits: torch.Tensor | None = None,
        score_each_epoch: bool = True,
    ):
        if teacher_logits is None and alpha > 0:
            raise ValueError("alpha > 0 needs teacher_logits")
        # loss_fn(student logits, teacher logits, labels) replaces the Hinton loss at this T and alpha. The
        # fields of its result after (total, hard, soft) reach the curves as each event's `parts`.
        self.loss_fn = loss_fn or functools.partial(distillation_loss, temperature=temperature, alpha=alpha)
        self.device = device or default_device()
        self.model = model.to(self.device)
        if settings.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.bf16 = settings.bf16 and bf16_ready(self.device)
        self.data, self.settings, self.name = data, settings, name
        self.temperature, self.alpha = temperature, alpha
        self.on_event = on_event or ev.ignore
        self.cancel = cancel or threading.Event()
        self.progress_every_s = progress_every_s
        # A teacher's accuracy is read only once it is trained: scoring the test set after every epoch would
        # cost a CIFAR-10 member about 7 % of its training for numbers nobody sees.
        self.score_each_epoch = score_each_epoch
        self.idx = (torch.arange(len(data.train_y)) if train_idx is None else train_idx).cpu()
        # Data order and augmentation come from this generator alone, so the scratch and the
        # distilled student see identical batches whatever else runs between their steps.
        self.gen = torch.Generator().manual_seed(seed)
        self.x = data.train_x.to(self.device)
        self.y = data.train_y.to(self.device)
        self.teacher = None if teacher_logits is None else teacher_logits.to(self.device)
        # Consistent teaching: each image shows one of the dataset's fixed views, taught by the teacher's
        # logits for that very view ([images, views, classes]).
        self.views = None if view_logits is None else view_logits.to(self.device)
        # Drawn only with alternate_flip, so other runs keep their data order and augmentation.
        self.flip_first = (
            torch.rand(len(data.train_y), generator=self.gen) < 0.5
            if settings.alternate_flip and settings.augment and data.name in kdata.FLIP_INVARIANT
            else None
        )
        self.mean = torch.tensor(data.mean, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(data.std, device=self.device).view(1, -1, 1, 1)
        self.opt = self._optimizer()
        self.total_steps = settings.epochs * math.ceil(len(self.idx) / settings.batch_size)
        factor = SCHEDULES[settings.schedule]
        if factor is None:
            self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, self.total_steps)
        else:
            total = self.total_steps
            self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: factor(min(1.0, step / total)))
        self.steps = 0
        self.ema: list[torch.Tensor] | None = None
        self.epoch = 0
        self.history: list[ev.Epoch] = []
        # The newest epoch's test-set logits, kept so callers can read them without running the model again.
        self.test_logits: torch.Tensor | None = None
        self.stopped = False
        self.started = time.perf_counter()

    def _optimizer(self) -> torch.optim.Optimizer:
        s = self.settings
        params = list(self.model.parameters())
        if s.bias_lr_scale == 1.0:
            groups = [{"params": params}]
        else:  # same decay per step for both groups: the weight decay shrinks as the learning rate grows
            flat = [p for p in params if p.ndim == 1]
            rest = [p for p in params if p.ndim != 1]
            scale = s.bias_lr_scale
            groups = [{"params": rest}, {"params": flat, "lr": s.lr * scale, "weight_decay": s.weight_decay / scale}]
        if s.optimizer == "sgd":
            return SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay)
        return ADAM(groups, lr=s.lr, weight_decay=s.weight_decay)

    @property
    def finished(self) -> bool:
        return self.stopped or self.epoch >= self.settings.epochs

    def run_epoch(self) -> ev.Epoch | None:
        """Train one epoch; returns its Epoch event, or None when cancelled mid-epoch."""
        s = self.settings
        self.model.train()
        if hasattr(self.model, "start_epoch"):  # e.g. AirNet trains its whitening bias early only
            self.model.start_epoch(self.epoch)
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
            teacher = None if self.teacher is None else self.teacher[bi_dev]
            if self.views is not None:
                view = torch.randint(self.views.shape[1], (len(bi),), generator=self.gen).to(self.device)
                x, teacher = kdata.views(x, view, self.data.name), self.views[bi_dev, view].float()
            elif s.augment:
                flip = None if self.flip_first is None else self.flip_first[bi] ^ bool(self.epoch % 2)
                x = kdata.augment(x, self.data.name, self.gen, flip=flip)
            x = kdata.normalize(x, self.mean, self.std)
            if s.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                logits = self.model(x).float()
            if teacher is None:
                hard = nn.functional.cross_entropy(logits, self.y[bi_dev], label_smoothing=s.label_smoothing)
                parts = (hard, hard, torch.zeros((), device=self.device))
            else:
                parts = self.loss_fn(logits, teacher, self.y[bi_dev])
            self.opt.zero_grad(set_to_none=True)
            parts[0].backward()
            self.opt.step()
            self.sched.step()
            self.steps += 1
            if s.ema:
                self._lookahead()
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
        if self.ema is not None:
            self._load_average()
        test_logits = None
        if self.score_each_epoch or self.epoch >= s.epochs:
            test_logits = predict_logits(
                self.model, self.data.test_x, self.data.mean, self.data.std, device=self.device, bf16=self.bf16
            )
        event = ev.Epoch(
            model=self.name,
            epoch=self.epoch,
            epochs=s.epochs,
            loss=avg[0],
            hard=avg[1],
            soft=avg[2] if self.teacher is not None else None,
            test_acc=None if test_logits is None else (test_logits.argmax(1) == self.data.test_y).float().mean().item(),
            parts=dict(zip(names, avg[3:])) or None,
        )
        if test_logits is not None:
            self.test_logits = test_logits
        self.history.append(event)
        self.on_event(event)
        return event

    # airbench's lookahead: from epoch EMA_START on, every EMA_EVERY steps, an average that follows the
    # weights more slowly as training ends, copied back into them.
    EMA_START, EMA_EVERY = 3, 5

    def _lookahead(self) -> None:
        start = min(self.EMA_START, max(0, self.settings.epochs - 2))
        if self.epoch < start or self.steps % self.EMA_EVERY:
            return
        state = [t for t in self.model.state_dict().values() if t.dtype.is_floating_point]
        if self.ema is None:
            self.ema = [t.detach().clone() for t in state]
            return
        rho = 0.95**self.EMA_EVERY * (self.steps / self.total_steps) ** 3
        with torch.no_grad():
            for average, weight in zip(self.ema, state):
                average.lerp_(weight, 1 - rho)
                weight.copy_(average)

    def _load_average(self) -> None:
        state = [t for t in self.model.state_dict().values() if t.dtype.is_floating_point]
        with torch.no_grad():
            for average, weight in zip(self.ema, state):
                weight.copy_(average)

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


def train_side_by_side(
    trainers: Sequence[Trainer], *, lanes: int, on_finished: Callable[[Trainer, float], None] | None = None
) -> list[float]:
    """Train every trainer to its end on `lanes` threads of one intra-op thread each; returns each one's
    busy seconds (the time its own epochs took).

    Unlike train_together, these models are not compared epoch for epoch, they only have to finish: a free
    lane takes an epoch of the model with the most epochs left that no lane is running, so three teachers
    on two lanes finish within an epoch of each other instead of the third training alone on one core.
    on_finished(trainer, busy seconds) runs, in its lane, as each model completes its last epoch. A Stop
    or an error ends every lane after its current epoch; the error is raised here.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .budget import torch_threads

    lock, running, ended = threading.Lock(), set(), threading.Event()
    busy = [0.0] * len(trainers)
    lanes = max(1, lanes)

    def lane() -> None:
        while True:
            with lock:
                free = [i for i, t in enumerate(trainers) if i not in running and not t.finished]
                if ended.is_set() or not free:
                    return
                i = max(free, key=lambda k: trainers[k].settings.epochs - trainers[k].epoch)
                running.add(i)
            start = time.perf_counter()
            try:
                trainers[i].run_epoch()
            except BaseException:
                ended.set()
                raise
            finally:
                with lock:
                    running.discard(i)
                    busy[i] += time.perf_counter() - start
            if trainers[i].stopped:
                ended.set()
            elif trainers[i].finished and on_finished is not None:
                on_finished(trainers[i], busy[i])

    with torch_threads(1), ThreadPoolExecutor(lanes, thread_name_prefix="kd-lane") as pool:
        for future in [pool.submit(lane) for _ in range(min(lanes, len(trainers)))]:
            future.result()
    return busy


def train(model: nn.Module, data: kdata.Dataset, settings: TrainSettings, *, seed: int, **kwargs) -> TrainResult:
    """Train to the end (or until cancelled); kwargs as for Trainer."""
    trainer = Trainer(model, data, settings, seed=seed, **kwargs)
    # Dropout draws from the global generator; seeding it makes a lone training run reproducible.
    torch.manual_seed(seed)
    while not trainer.finished:
        trainer.run_epoch()
    return trainer.result()
