"""Teachers side by side or one at a time: which prepares an ensemble sooner on this machine.

Usage: python benchmarks/teacher_lanes.py [--arch air-slim] [--dataset cifar10] [--images 4096] [--repeats 3]

Times one epoch of the dataset's teacher training (its real settings: for CIFAR-10 batches of 1024, bfloat16,
channels-last) on random images of the dataset's shape, two ways: one member on two torch threads (how a
lone missing member trains), and two members at once on one thread each (kdcore.train.train_side_by_side,
how an ensemble's missing members train). Reports training images per second of each and their ratio,
medians of --repeats, on the idle machine and with a neighbour process spinning on one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from kdcore import budget, models, teachers  # noqa: E402
from kdcore import data as kdata  # noqa: E402
from kdcore.train import Trainer, teacher_settings, train_side_by_side  # noqa: E402


def random_dataset(name: str, images: int) -> kdata.Dataset:
    shape = models.image_shape(name)
    g = torch.Generator().manual_seed(0)
    return kdata.Dataset(
        name=name,
        train_x=torch.randint(0, 256, (images, *shape), generator=g, dtype=torch.uint8),
        train_y=torch.randint(0, 10, (images,), generator=g),
        test_x=torch.randint(0, 256, (64, *shape), generator=g, dtype=torch.uint8),
        test_y=torch.randint(0, 10, (64,), generator=g),
        classes=tuple(str(i) for i in range(10)),
        mean=(0.5,) * shape[0],
        std=(0.25,) * shape[0],
    )


def trainer(arch: str, data: kdata.Dataset, seed: int) -> Trainer:
    member = teachers.Member(arch, seed)
    return teachers.new_trainer(data, member, teacher_settings(data.name, 1), device=torch.device("cpu"))


def images_per_second(arch: str, data: kdata.Dataset, side_by_side: bool) -> float:
    if side_by_side:
        pair = [trainer(arch, data, 1), trainer(arch, data, 2)]
        start = time.perf_counter()
        train_side_by_side(pair, lanes=2)
        return 2 * len(data.train_y) / (time.perf_counter() - start)
    one = trainer(arch, data, 1)
    with budget.torch_threads(2):
        start = time.perf_counter()
        one.run_epoch()
        return len(data.train_y) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="air-slim")
    parser.add_argument("--dataset", default="cifar10", choices=kdata.DATASETS)
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch timed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.images < 1:
        parser.error("--repeats and --images must be >= 1")
    data = random_dataset(args.dataset, args.images)
    images_per_second(args.arch, data, True)  # warm-up: first oneDNN kernels, allocator
    print(f"{args.arch} on {args.dataset}-shaped images, {args.images:,} per epoch; {budget.cores()} cores")
    print("| machine | one member, 2 threads (img/s) | two members side by side (img/s) | ratio |")
    print("|---|---:|---:|---:|")
    for busy in (False, True):
        neighbour = subprocess.Popen([sys.executable, "-c", "while 1: pass"]) if busy else None
        try:
            one, two = [], []
            for _ in range(args.repeats):
                one.append(images_per_second(args.arch, data, False))
                two.append(images_per_second(args.arch, data, True))
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        a, b = statistics.median(one), statistics.median(two)
        print(f"| {'one core busy' if busy else 'idle'} | {a:.0f} | {b:.0f} | {b / a:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
