"""How good, how faithful and how costly a model is: the numbers the app compares models by.

Quality: accuracy, per-class accuracy, the confusion matrix and expected calibration error (ECE).
Faithfulness to the teacher: top-1 agreement and KL divergence from the teacher's distribution.
Cost: parameter count, size on disk (safetensors) and CPU latency / throughput.

Every "logits" argument is a float tensor of shape N x K and every y an int64 tensor of N class
indices. Wherever a model is expected, a sequence of models (an ensemble) is also accepted and
costs the sum of its members, because every member has to be stored and run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from .losses import check_temperature

# One thread count for every model so their latencies are comparable; capped at 2 so a many-core
# laptop reports numbers close to those of a small 2-core host.
LATENCY_THREADS = 1  # one thread: stable on a busy machine and the same for every model


def _check_logits(logits: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or not logits.is_floating_point():
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"{name} must be a float tensor of shape N x K, got {got}")
    if logits.shape[0] == 0 or logits.shape[1] == 0:
        raise ValueError(f"{name} must have at least one sample and one class, got shape {tuple(logits.shape)}")


def _check_labels(logits: torch.Tensor, y: torch.Tensor, num_classes: int | None = None) -> torch.Tensor:
    """Validate logits, y and (if given) num_classes together; returns the predicted classes."""
    _check_logits(logits)
    k = logits.shape[1]
    if num_classes is not None and (isinstance(num_classes, bool) or num_classes != k):
        raise ValueError(f"num_classes must equal the number of logit columns ({k}), got {num_classes!r}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must be an integer tensor of N class indices, got {got}")
    if y.shape[0] != logits.shape[0]:
        raise ValueError(f"y must have one label per row of logits ({logits.shape[0]}), got {y.shape[0]}")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(
            f"y must hold class indices from 0 to {k - 1}, got values from {int(y.min())} to {int(y.max())}"
        )
    return logits.argmax(dim=1)


def _check_pair(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> None:
    _check_logits(student_logits, "student_logits")
    _check_logits(teacher_logits, "teacher_logits")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"teacher_logits must have the same shape as student_logits "
            f"{tuple(student_logits.shape)}, got {tuple(teacher_logits.shape)}"
        )


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction (0..1) of samples whose highest logit is the true class."""
    pred = _check_labels(logits, y)
    return (pred == y).double().mean().item()


def per_class_accuracy(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy within each true class; None for a class with no samples (e.g. one left out of the data)."""
    cm = confusion_matrix(logits, y, num_classes)
    totals = cm.sum(dim=1)
    return [None if int(n) == 0 else cm[c, c].item() / int(n) for c, n in enumerate(totals)]


def confusion_matrix(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """int64 num_classes x num_classes counts: rows are true classes, columns predicted classes."""
    pred = _check_labels(logits, y, num_classes)
    flat = y.long() * num_classes + pred
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def expected_calibration_error(logits: torch.Tensor, y: torch.Tensor, n_bins: int = 15) -> float:
    """ECE: sum over equal-width confidence bins of (bin share of samples) x |bin accuracy - bin confidence|.

    Confidence is the highest softmax probability; bin b covers (b / n_bins, (b + 1) / n_bins], as in
    Guo et al. (2017), "On Calibration of Modern Neural Networks".
    """
    pred = _check_labels(logits, y)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    # float64 so bin sums over large test sets do not lose the small calibration gaps being measured.
    conf = F.softmax(logits.double(), dim=1).max(dim=1).values
    correct = (pred == y).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64)[1:-1]
    bins = torch.bucketize(conf, edges)
    count = torch.bincount(bins, minlength=n_bins).double()
    gap = (
        torch.bincount(bins, weights=correct, minlength=n_bins) - torch.bincount(bins, weights=conf, minlength=n_bins)
    ).abs()
    # |sum(correct) - sum(conf)| per bin equals count * |accuracy - confidence|, with no 0/0 for empty bins.
    return (gap.sum() / count.sum()).item()


def agreement(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Fraction (0..1) of samples where student and teacher predict the same class."""
    _check_pair(student_logits, teacher_logits)
    return (student_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).double().mean().item()


def kl_to_teacher(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean over samples of KL(softmax(teacher / T) || softmax(student / T)), in nats.

    Unlike the soft term of the distillation loss this is not multiplied by T^2: it reports how far
    apart the two distributions are, not a gradient-balanced training signal.
    """
    _check_pair(student_logits, teacher_logits)
    t = check_temperature(temperature)
    return F.kl_div(
        F.log_softmax(student_logits.double() / t, dim=1),
        F.log_softmax(teacher_logits.double() / t, dim=1),
        reduction="batchmean",
        log_target=True,
    ).item()


def _members(models: nn.Module | Sequence[nn.Module]) -> list[nn.Module]:
    # A ModuleList has no forward of its own, so it can only mean "these members".
    if isinstance(models, nn.Module) and not isinstance(models, nn.ModuleList):
        return [models]
    if not isinstance(models, (Sequence, nn.ModuleList)):
        raise ValueError(f"models must be an nn.Module or a sequence of them, got {type(models).__name__}")
    members = list(models)
    if not members:
        raise ValueError("models must contain at least one model, got an empty sequence")
    for m in members:
        if not isinstance(m, nn.Module):
            raise ValueError(f"models must contain only nn.Module instances, got a {type(m).__name__}")
    return members


def param_count(models: nn.Module | Sequence[nn.Module]) -> int:
    """Number of parameters, summed over the members of an ensemble."""
    return sum(p.numel() for m in _members(models) for p in m.parameters())


def _serialisable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    # safetensors refuses tensors that share memory (tied weights); they are stored once on disk,
    # so keep only the first name of each. Empty tensors have no real storage to share.
    seen: set[tuple] = set()
    state = {}
    for name, tensor in model.state_dict().items():
        key = (
            tensor.untyped_storage().data_ptr(),
            tensor.storage_offset(),
            tuple(tensor.shape),
            tensor.stride(),
            tensor.dtype,
        )
        if tensor.numel() > 0:
            if key in seen:
                continue
            seen.add(key)
        state[name] = tensor.detach().cpu().contiguous()
    return state


def size_bytes(models: nn.Module | Sequence[nn.Module]) -> int:
    """Bytes of the state_dict serialised with safetensors (weights plus a small header), summed over members."""
    return sum(len(safetensors.torch.save(_serialisable_state(m))) for m in _members(models))


@dataclass(frozen=True)
class Latency:
    ms_batch1: float  # median ms per single-image forward pass
    throughput_b256: float  # images / second at batch 256 (median over repeats)
    threads: int  # torch intra-op threads used for the measurement


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _median_seconds(
    members: list[nn.Module], x: torch.Tensor, warmup: int, repeats: int, device: torch.device
) -> float:
    def sync() -> None:
        # CUDA kernels run asynchronously; without a sync the timer would only measure the launch.
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        for m in members:
            m(x)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for m in members:
            m(x)
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure_latency(
    models: nn.Module | Sequence[nn.Module],
    input_shape: tuple[int, int, int],
    *,
    threads: int | None = None,
    warmup: int = 5,
    repeats: int = 30,
    repeats_b256: int = 5,
    device: str | torch.device = "cpu",
) -> Latency:
    """Median latency at batch 1 and throughput at batch 256 of a model, or of an ensemble run as one model.

    The models must already be on `device`. They are timed in eval mode under inference_mode with
    `threads` intra-op threads (default LATENCY_THREADS); the global thread count and every module's
    training flag are restored afterwards.
    """
    members = _members(models)
    if (
        not isinstance(input_shape, (tuple, list))
        or len(input_shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in input_shape)
    ):
        raise ValueError(f"input_shape must be three positive ints (channels, height, width), got {input_shape!r}")
    threads = LATENCY_THREADS if threads is None else _check_count(threads, "threads", 1)
    _check_count(warmup, "warmup", 0)
    _check_count(repeats, "repeats", 1)
    _check_count(repeats_b256, "repeats_b256", 1)
    device = torch.device(device)
    for m in members:
        for p in list(m.parameters()) + list(m.buffers()):
            if p.device.type != device.type or (device.index is not None and p.device.index != device.index):
                raise ValueError(f"device must be where the models are ({p.device}), got {device}")

    # A private generator so measuring never shifts the global RNG stream that training relies on.
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn((1, *input_shape), generator=gen).to(device)
    x256 = torch.randn((256, *input_shape), generator=gen).to(device)
    # Per-module flags, because a model may deliberately keep some parts (e.g. frozen BN) in eval mode.
    flags = [[(mod, mod.training) for mod in m.modules()] for m in members]
    previous_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        for m in members:
            m.eval()
        with torch.inference_mode():
            s1 = _median_seconds(members, x1, warmup, repeats, device)
            s256 = _median_seconds(members, x256, warmup, repeats_b256, device)
    finally:
        torch.set_num_threads(previous_threads)
        for member_flags in flags:
            for mod, training in member_flags:
                mod.training = training
    return Latency(ms_batch1=s1 * 1000.0, throughput_b256=256 / s256, threads=threads)
