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
