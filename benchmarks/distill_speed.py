"""Times kdcore's distillation of one student against a tutorial-style PyTorch KD loop doing the same work.

Both sides distil the same student architecture, from the same initial weights, from the same trained
teacher ensemble, for the same epochs, with the same T, alpha, optimiser, cosine schedule and batch size.
They differ only in how the work is done:

- kdcore: the ensemble's logits are computed once (cold cache: the cached logits are deleted before
  every timed run, so this pass is included), then the student trains on batches sliced from the
  in-memory uint8 tensors and normalised as one tensor op; test accuracy is computed after every epoch.
  The "warm" column repeats the run with the logits already cached, as when a user moves T or alpha.
- reference: written the way the PyTorch knowledge-distillation tutorial does it: a torch Dataset
  yielding PIL images, `transforms.Compose([ToTensor(), Normalize(mean, std)])` per sample, a
  `DataLoader(shuffle=True)` (num_workers 0 unless --workers), every teacher run on every batch under
  no_grad, the KD loss written inline, and test accuracy from a DataLoader at the end.

Teachers are trained (or loaded from the cache) before any timing. Runs alternate between the two sides
and the table reports the median of --repeats runs.

    python benchmarks/distill_speed.py [--datasets mnist-sample,fashion-mnist] [--repeats 3] [--epochs N]
                                       [--threads 2] [--workers 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdcore import data as kdata
from kdcore import experiments, models, teachers
from kdcore.train import Trainer, default_device, student_settings


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def delete_cached_logits(ens: teachers.Ensemble) -> None:
    """Forces the next ensemble load to recompute every member's train and test logits."""
    for member in ens.members:
        files = [p for p in teachers.cache_dir().glob(f"{member.key}.logits*") if p.suffix != ".lock"]
        if not files:
            # Timing a "cold" run that silently reused the logits would overstate kdcore's speed.
            raise RuntimeError(
                f"no cached logits for teacher {member.name} in {teachers.cache_dir()} "
                f"(expected {member.key}.logits.*); has kdcore's cache layout changed?"
            )
        for path in files:
            path.unlink(missing_ok=True)


def run_kdcore(config: experiments.RunConfig, data: kdata.Dataset, device: torch.device) -> tuple[float, float]:
    """(seconds, test accuracy) for loading the ensemble, distilling the student and scoring it."""
    started = time.perf_counter()
    _, ens = experiments.load_ensemble(config, data=data)
    settings = student_settings(config.dataset, config.epochs)
    model = models.build(config.student, config.dataset, seed=config.seed)
    trainer = Trainer(
        model,
        data,
        settings,
        seed=config.seed,
        name="distilled",
        teacher_logits=ens.train_logits,
        temperature=config.temperature,
        alpha=config.alpha,
        device=device,
    )
    torch.manual_seed(config.seed)
    while not trainer.finished:
        trainer.run_epoch()
    return time.perf_counter() - started, trainer.history[-1].test_acc


class ImageDataset(Dataset):
    """Like torchvision's MNIST: one PIL image per item, transformed on access."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform):
        self.images = images.numpy()
        self.labels = labels.numpy()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        img = self.images[i]
        img = Image.fromarray(img[0], mode="L") if img.shape[0] == 1 else Image.fromarray(np.moveaxis(img, 0, -1))
        return self.transform(img), int(self.labels[i])


def run_reference(
    config: experiments.RunConfig,
    data: kdata.Dataset,
    teacher_models: list[torch.nn.Module],
    device: torch.device,
    workers: int = 0,
) -> tuple[float, float]:
    """(seconds, test accuracy) for the tutorial-style loop: teachers on every batch, per-sample transforms."""
    started = time.perf_counter()
    settings = student_settings(config.dataset, config.epochs)
    T, alpha = config.temperature, config.alpha
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(data.mean, data.std)])
    idx = experiments.train_indices(config, data.train_y)  # the preset's share of the training set, as kdcore trains on
    train_loader = DataLoader(
        ImageDataset(data.train_x[idx], data.train_y[idx], transform),
        batch_size=settings.batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    test_loader = DataLoader(
        ImageDataset(data.test_x, data.test_y, transform),
        batch_size=settings.batch_size,
        shuffle=False,
        num_workers=workers,
    )
    student = models.build(config.student, config.dataset, seed=config.seed).to(device)
    if settings.optimizer == "sgd":
        optimizer = torch.optim.SGD(
            student.parameters(), lr=settings.lr, momentum=0.9, nesterov=True, weight_decay=settings.weight_decay
        )
    else:
        optimizer = torch.optim.Adam(student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, settings.epochs * len(train_loader))
    for teacher in teacher_models:
        teacher.eval()
    torch.manual_seed(config.seed)
    for _ in range(settings.epochs):
        student.train()
        for inputs, labels in train_loader:
            inputs, labels = inputs.to(device), labels.to(device)
            with torch.no_grad():
                # The ensemble's logits: log of the members' mean probability, as kdcore's "prob" combine.
                member_log_probs = torch.stack([F.log_softmax(t(inputs), dim=-1) for t in teacher_models])
                teacher_logits = torch.logsumexp(member_log_probs, 0) - math.log(len(teacher_models))
            student_logits = student(inputs)
            soft_loss = (
                F.kl_div(
                    F.log_softmax(student_logits / T, dim=-1),
                    F.softmax(teacher_logits / T, dim=-1),
                    reduction="batchmean",
                )
                * T
                * T
            )
            hard_loss = F.cross_entropy(student_logits, labels)
            loss = (1 - alpha) * hard_loss + alpha * soft_loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    student.eval()
    correct = 0
    with torch.no_grad():
        for inputs, labels in test_loader:
            correct += (student(inputs.to(device)).argmax(1) == labels.to(device)).sum().item()
    return time.perf_counter() - started, correct / len(data.test_y)


def bench_dataset(name: str, epochs: int, repeats: int, device: torch.device, workers: int) -> dict:
    """Medians and raw runs for one dataset, or {"dataset", "skipped": reason} if it cannot be loaded offline."""
    try:
        data = kdata.load(name, download=False)
    except kdata.DatasetError as exc:
        return {"dataset": name, "skipped": str(exc)}
    config = experiments.default_config(name, epochs=epochs)
    train_size = len(experiments.train_indices(config, data.train_y))
    _log(
        f"[{name}] {train_size:,} train / {len(data.test_y):,} test images; student {config.student}, "
        f"teachers {'+'.join(config.teachers)}, T={config.temperature}, alpha={config.alpha}, {epochs} epochs"
    )
    _log(f"[{name}] preparing teachers (not timed) in {teachers.cache_dir()} ...")
    prep_started = time.perf_counter()
    _, ens = experiments.load_ensemble(config, data=data)
    _log(
        f"[{name}] teachers ready in {time.perf_counter() - prep_started:.0f} s "
        f"({', '.join(f'{t.name}: ' + ('cached' if t.cached else 'trained') for t in ens.members)})"
    )
    runs = {"kdcore_cold": [], "kdcore_warm": [], "reference": []}
    loads = []
    for r in range(repeats):
        # Alternating which side goes first spreads any drift in machine speed over both.
        order = ["kdcore", "reference"] if r % 2 == 0 else ["reference", "kdcore"]
        for side in order:
            if side == "kdcore":
                delete_cached_logits(ens)
                runs["kdcore_cold"].append(run_kdcore(config, data, device))
                runs["kdcore_warm"].append(run_kdcore(config, data, device))
            else:
                runs["reference"].append(run_reference(config, data, ens.models, device, workers))
        loads.append(os.getloadavg()[0])
        _log(
            f"[{name}] repeat {r + 1}/{repeats}: "
            + ", ".join(f"{k} {v[-1][0]:.1f} s acc {v[-1][1]:.2%}" for k, v in runs.items())
        )
    med = {k: (statistics.median(s for s, _ in v), statistics.median(a for _, a in v)) for k, v in runs.items()}
    return {
        "dataset": name,
        "train_images": train_size,
        "test_images": len(data.test_y),
        "epochs": epochs,
        "student": config.student,
        "teachers": list(config.teachers),
        "temperature": config.temperature,
        "alpha": config.alpha,
        "batch_size": student_settings(name, epochs).batch_size,
        "reference_workers": workers,
        "repeats": repeats,
        "kdcore_cold_s": med["kdcore_cold"][0],
        "kdcore_warm_s": med["kdcore_warm"][0],
        "reference_s": med["reference"][0],
        "ratio_cold": med["reference"][0] / med["kdcore_cold"][0],
        "ratio_warm": med["reference"][0] / med["kdcore_warm"][0],
        "kdcore_acc": med["kdcore_cold"][1],
        "reference_acc": med["reference"][1],
        # + 0.0 turns a rounded -0.0 into 0.0, so equal accuracies print as +0.00.
        "diff_points": round(100 * (med["kdcore_cold"][1] - med["reference"][1]), 2) + 0.0,
        "runs": {k: [{"seconds": s, "accuracy": a} for s, a in v] for k, v in runs.items()},
        "load_average": loads,
    }


def markdown_table(results: list[dict]) -> str:
    lines = [
        "| dataset | epochs | kdcore s (cold) | kdcore s (warm) | reference s | ratio (cold) | ratio (warm) "
        "| kdcore acc | reference acc | diff (pt) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "skipped" in r:
            lines.append(f"| {r['dataset']} | skipped: {r['skipped'].split('. ')[0]} |||||||||")
            continue
        lines.append(
            f"| {r['dataset']} ({r['train_images']:,} train) | {r['epochs']} | {r['kdcore_cold_s']:.1f} "
            f"| {r['kdcore_warm_s']:.1f} | {r['reference_s']:.1f} | {r['ratio_cold']:.1f}x "
            f"| {r['ratio_warm']:.1f}x | {r['kdcore_acc']:.2%} | {r['reference_acc']:.2%} "
            f"| {r['diff_points']:+.2f} |"
        )
    lines.append("")
    lines += [
        f"- {r['dataset']}: student {r['student']} distilled from {' + '.join(r['teachers'])}, "
        f"T = {r['temperature']:g}, alpha = {r['alpha']:g}, batch size {r['batch_size']}"
        for r in results
        if "skipped" not in r
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--datasets", default="mnist-sample,fashion-mnist", help=f"comma-separated, from: {', '.join(kdata.DATASETS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side; the table shows the median")
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="student epochs for every dataset (default: the app's default for each)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both sides")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="DataLoader worker processes for the reference (the tutorial's loaders use 2)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    unknown = [d for d in datasets if d not in kdata.DATASETS]
    if unknown or not datasets:
        parser.error(f"--datasets got {args.datasets!r}; choose from: {', '.join(kdata.DATASETS)}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.epochs is not None and args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")

    torch.set_num_threads(args.threads)
    device = default_device()
    _log(
        f"torch {torch.__version__} on {device}, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}; data dir {kdata.data_dir()}"
    )
    results = [
        bench_dataset(d, args.epochs or experiments.default_config(d).epochs, args.repeats, device, args.workers)
        for d in datasets
    ]
    for r in results:
        if "skipped" in r:
            print(f"skipped {r['dataset']}: {r['skipped']}")
    peak_load = max((x for r in results for x in r.get("load_average", [])), default=0.0)
    if peak_load > args.threads + 1:
        # This benchmark itself keeps about --threads cores busy; more means other processes competed
        # for the cores and slowed the two sides unevenly.
        print(
            f"warning: the machine was busy (1-minute load average up to {peak_load:.1f} on {os.cpu_count()} CPUs "
            f"while timing); rerun on an idle machine for numbers to publish."
        )
    print(
        f"Median of {args.repeats} runs, torch {torch.__version__}, {args.threads} threads on {device}; "
        f"teachers cached in {teachers.cache_dir()}. ratio = reference time / kdcore time; "
        "cold includes computing the teacher logits, warm reuses them.\n"
    )
    print(markdown_table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "command": " ".join(sys.argv),
                    "threads": args.threads,
                    "device": str(device),
                    "torch": torch.__version__,
                    "results": results,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
