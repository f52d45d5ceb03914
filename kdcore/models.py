"""The model zoo: named teacher and student architectures for 1x28x28 and 3x32x32 images, 10 classes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

IMAGE_SHAPES = {
    "mnist-sample": (1, 28, 28),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
NUM_CLASSES = 10


@dataclass(frozen=True)
class ModelSpec:
    name: str
    role: str  # "teacher" or "student"
    description: str
    builder: Callable[[tuple[int, int, int]], nn.Module]
    # Trains faster on more than one thread (measured: benchmarks/threads.py); else it gets one (kdcore.budget).
    parallel: bool = False


def _mlp(shape, hidden: tuple[int, ...], dropout: float = 0.0) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = shape[0] * shape[1] * shape[2]
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, NUM_CLASSES))
    return nn.Sequential(*layers)


def _lenet(shape, c1: int, c2: int, fc: int, dropout: float = 0.0) -> nn.Module:
    """Two 5x5 conv blocks then one hidden fully connected layer."""
    side = shape[1] // 4
    layers: list[nn.Module] = [
        nn.Conv2d(shape[0], c1, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * side * side, fc),
        nn.ReLU(),
    ]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(fc, NUM_CLASSES))
    return nn.Sequential(*layers)


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _vgg(shape, widths: tuple[int, ...]) -> nn.Module:
    """Blocks of two 3x3 conv+BN layers, each followed by 2x2 pooling, then global average pooling."""
    layers: list[nn.Module] = []
    cin = shape[0]
    for w in widths:
        layers += _conv_bn(cin, w) + _conv_bn(w, w) + [nn.MaxPool2d(2)]
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, NUM_CLASSES)]
    return nn.Sequential(*layers)


class _FrozenScaleBN(nn.BatchNorm2d):
    """Batch norm whose scale stays 1 (only its bias learns), as in airbench: fewer parameters to tune."""

    def __init__(self, channels: int):
        super().__init__(channels, eps=1e-12, momentum=0.4)
        self.weight.requires_grad = False


class _IdentityConv(nn.Conv2d):
    """A 3x3 conv whose first filters start as the identity: a residual path at initialisation."""

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.in_channels <= self.out_channels:
            nn.init.dirac_(self.weight.data[: self.in_channels])


class _Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class AirNet(nn.Sequential):
    """A fast-training CNN after Keller Jordan's airbench CIFAR-10 nets (reimplemented from reading them).

    A frozen 2x2 whitening conv (set from the training images' patch statistics before training),
    then blocks of conv -> max pool -> BN -> GELU -> conv -> BN -> GELU, global max pooling and a scaled
    linear head. Its whitening bias trains for the first WHITEN_BIAS_EPOCHS epochs only.
    """

    WHITEN_BIAS_EPOCHS = 3

    def __init__(self, shape, widths: tuple[int, ...]):
        whiten = nn.Conv2d(shape[0], 2 * shape[0] * 4, 2, padding=0, bias=True)
        whiten.weight.requires_grad = False
        layers: list[nn.Module] = [whiten, nn.GELU()]
        cin = whiten.out_channels
        for w in widths:
            layers += [_IdentityConv(cin, w, 3, padding="same", bias=False), nn.MaxPool2d(2), _FrozenScaleBN(w)]
            layers += [nn.GELU(), _IdentityConv(w, w, 3, padding="same", bias=False), _FrozenScaleBN(w), nn.GELU()]
            cin = w
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(cin, NUM_CLASSES, bias=False), _Scale(1 / 9)]
        super().__init__(*layers)

    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters to the eigenvectors of x's 2x2 patch covariance (x: normalised images)."""
        conv = self[0]
        c, k = x.shape[1], conv.kernel_size[0]
        patches = x.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
        values, vectors = torch.linalg.eigh(patches.T @ patches / len(patches))
        values, vectors = values.flip(0), vectors.T.flip(0)
        filters = (vectors / torch.sqrt(values + eps).view(-1, 1)).reshape(-1, c, k, k).float()
        with torch.no_grad():
            conv.weight.copy_(torch.cat([filters, -filters]))

    def start_epoch(self, epoch: int) -> None:
        self[0].bias.requires_grad = epoch < self.WHITEN_BIAS_EPOCHS


def _convbn_student(shape, widths: tuple[int, ...]) -> nn.Module:
    """3x3 conv -> BN -> ReLU per stage, 2x2 max pooling between stages, global average pooling."""
    layers: list[nn.Module] = []
    cin = shape[0]
    for i, w in enumerate(widths):
        layers += _conv_bn(cin, w)
        if i < len(widths) - 1:
            layers.append(nn.MaxPool2d(2))
        cin = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, NUM_CLASSES)]
    return nn.Sequential(*layers)


_SPECS = [
    ModelSpec(
        "cnn-wide",
        "teacher",
        "Wide 2-block CNN (5x5 convs 16/32, 512-unit dense layer, dropout)",
        lambda s: _lenet(s, 16, 32, 512, dropout=0.3),
    ),
    ModelSpec(
        "cnn-deep",
        "teacher",
        "Deep 6-layer CNN (3x3 convs with batch norm, 12/24/48 channels)",
        lambda s: _vgg(s, (12, 24, 48)),
    ),
    ModelSpec(
        "mlp-wide",
        "teacher",
        "Wide MLP (two hidden layers of 1200 units, dropout), as in Hinton et al. 2015",
        lambda s: _mlp(s, (1200, 1200), dropout=0.3),
    ),
    ModelSpec(
        "air-slim",
        "teacher",
        "airbench-style CNN (whitening, 3 blocks of two 3x3 convs, 32/64/128 channels): fast to train well",
        lambda s: AirNet(s, (32, 64, 128)),
        parallel=True,
    ),
    ModelSpec(
        "air-wide",
        "teacher",
        "airbench-style CNN with a wider middle (32/96/96 channels): about 1 point better on CIFAR-10",
        lambda s: AirNet(s, (32, 96, 96)),
        parallel=True,
    ),
    ModelSpec("mlp-tiny", "student", "Tiny MLP (one hidden layer of 16 units)", lambda s: _mlp(s, (16,))),
    ModelSpec("mlp-small", "student", "Small MLP (one hidden layer of 64 units)", lambda s: _mlp(s, (64,))),
    ModelSpec("mlp-medium", "student", "Medium MLP (two hidden layers of 256 units)", lambda s: _mlp(s, (256, 256))),
    ModelSpec("cnn-tiny", "student", "Tiny CNN (4 and 8 channels, 16-unit dense layer)", lambda s: _lenet(s, 4, 8, 16)),
    ModelSpec(
        "cnn-small", "student", "Small CNN (8 and 16 channels, 64-unit dense layer)", lambda s: _lenet(s, 8, 16, 64)
    ),
    ModelSpec(
        "cnn-medium",
        "student",
        "Medium CNN (16 and 32 channels, 128-unit dense layer)",
        lambda s: _lenet(s, 16, 32, 128),
    ),
    ModelSpec(
        "bn-tiny",
        "student",
        "Tiny batch-norm CNN (four 3x3 conv stages, 8 to 64 channels)",
        lambda s: _convbn_student(s, (8, 16, 32, 64)),
    ),
    ModelSpec(
        "bn-small",
        "student",
        "Small batch-norm CNN (four 3x3 conv stages, 16 to 128 channels)",
        lambda s: _convbn_student(s, (16, 32, 64, 128)),
    ),
    ModelSpec(
        "bn-medium",
        "student",
        "Medium batch-norm CNN (four 3x3 conv stages, 32 to 256 channels)",
        lambda s: _convbn_student(s, (32, 64, 128, 256)),
    ),
]
ZOO = {spec.name: spec for spec in _SPECS}
STUDENT_SIZES = ("tiny", "small", "medium")


def available(role: str | None = None) -> list[ModelSpec]:
    """The zoo in display order; role "teacher" or "student" filters."""
    if role not in (None, "teacher", "student"):
        raise ValueError(f"role must be one of None, 'teacher', 'student', got {role!r}")
    return [s for s in _SPECS if role is None or s.role == role]


def check_model_name(name: str) -> str:
    if name not in ZOO:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(ZOO)}")
    return name


def image_shape(dataset: str) -> tuple[int, int, int]:
    if dataset not in IMAGE_SHAPES:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of: {', '.join(IMAGE_SHAPES)}")
    return IMAGE_SHAPES[dataset]


def build(name: str, dataset: str, seed: int | None = None) -> nn.Module:
    """A fresh model for the dataset's image shape; with a seed, the initial weights are reproducible."""
    spec = ZOO[check_model_name(name)]
    shape = image_shape(dataset)
    if seed is None:
        return spec.builder(shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return spec.builder(shape)
