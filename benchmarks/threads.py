"""Which models train faster on two threads, and what a busy neighbour does to one and two threads.

Usage: python benchmarks/threads.py [--models a,b] [--steps 20] [--repeats 3] [--json out.json]

For each zoo model (students on MNIST-shaped images; teachers on MNIST and, if they are CIFAR teachers,
CIFAR-shaped images) it times training steps (batch 128: forward, backward, Adam) at one and at two
torch intra-op threads, on an idle machine and with a neighbour process spinning on one core, each in a
fresh process with OpenMP's default (spinning) and passive wait policies. It also times the two students
of a distillation trained side by side on one thread each ("lanes", kdcore.train.train_together).
Medians of --repeats. The verdict column is the rule kdcore.budget applies: a model gets two threads
only if two are at least 1.3x faster idle and still no slower than one with the neighbour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GAIN_NEEDED = 1.3


def _time_steps(arch: str, dataset: str, threads: int, steps: int, repeats: int) -> float:
    """Median seconds per training step, in this process."""
    import torch

    from kdcore import models

    torch.set_num_threads(threads)
    model = models.build(arch, dataset, seed=0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    shape = models.image_shape(dataset)
    x = torch.randn(128, *shape)
    y = torch.randint(0, 10, (128,))
    times = []
    for r in range(repeats + 1):
        start = time.perf_counter()
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if r:  # the first round warms up
            times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _time_lanes(arch: str, lanes: int, steps: int, repeats: int) -> float:
    """Median seconds per step of two students trained together on `lanes` threads of one intra-op thread."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from kdcore import models

    torch.set_num_threads(1)
    pairs = []
    for _ in range(2):
        m = models.build(arch, "mnist-sample", seed=0)
        pairs.append((m, torch.optim.Adam(m.parameters(), 1e-3)))
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

    def run(pair):
        m, opt = pair
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    times = []
    with ThreadPoolExecutor(lanes) as pool:
        for r in range(repeats + 1):
            start = time.perf_counter()
            list(pool.map(run, pairs)) if lanes > 1 else [run(p) for p in pairs]
            if r:
                times.append((time.perf_counter() - start) / steps)
    return statistics.median(times)


def _child(args) -> None:
    """One measurement in this (fresh) process; prints a JSON number."""
    if args.lanes:
        print(json.dumps(_time_lanes(args.arch, args.lanes, args.steps, args.repeats)))
    else:
        print(json.dumps(_time_steps(args.arch, args.dataset, args.threads, args.steps, args.repeats)))


def _measure(arch, dataset, threads, lanes, policy, steps, repeats) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy.upper()}
    cmd = [sys.executable, __file__, "--child", "--arch", arch, "--dataset", dataset, "--threads", str(threads)]
    cmd += ["--lanes", str(lanes), "--steps", str(steps), "--repeats", str(repeats)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


class Neighbour:
    """Another process spinning on one core, ended when the block ends."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while 1: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="comma-separated zoo names (default: every model)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--arch", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dataset", default="mnist-sample", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--lanes", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _child(args)
        return 0

    from kdcore import budget, models

    names = args.models.split(",") if args.models else [m.name for m in models.available()]
    cases = []
    for name in names:
        spec = models.ZOO[name]
        datasets = ["mnist-sample"] + (["cifar10"] if spec.role == "teacher" else [])
        cases += [(name, d) for d in datasets]
    print(f"{budget.cores()} cores; median ms per training step of batch 128 (each cell a fresh process)\n")
    head = (
        "| model | images | 1 thread | 2 threads | 2 thr. gain | busy: 1 thread | busy: 2 (spin) | busy: 2 (passive) |"
    )
    print(head + " two threads? |\n|---|---|---:|---:|---:|---:|---:|---:|---|")
    rows = []
    for name, dataset in cases:
        m = {
            "idle_1": _measure(name, dataset, 1, 0, "passive", args.steps, args.repeats),
            "idle_2": _measure(name, dataset, 2, 0, "passive", args.steps, args.repeats),
        }
        with Neighbour():
            m["busy_1"] = _measure(name, dataset, 1, 0, "passive", args.steps, args.repeats)
            m["busy_2_spin"] = _measure(name, dataset, 2, 0, "active", args.steps, args.repeats)
            m["busy_2_passive"] = _measure(name, dataset, 2, 0, "passive", args.steps, args.repeats)
        gain = m["idle_1"] / m["idle_2"]
        parallel = gain >= GAIN_NEEDED and m["busy_2_passive"] <= m["busy_1"]
        rows.append({"model": name, "dataset": dataset, **m, "gain": gain, "parallel": parallel})
        ms = {k: f"{v * 1000:.1f}" for k, v in m.items()}
        print(
            f"| {name} | {dataset} | {ms['idle_1']} | {ms['idle_2']} | {gain:.2f}x | {ms['busy_1']} | "
            f"{ms['busy_2_spin']} | {ms['busy_2_passive']} | {'yes' if parallel else 'no'} |",
            flush=True,
        )
    print("\nTwo students side by side (mlp-medium), ms per step of both:")
    lanes = {"idle_1_lane": _measure("mlp-medium", "mnist-sample", 1, 1, "passive", args.steps, args.repeats)}
    lanes["idle_2_lanes"] = _measure("mlp-medium", "mnist-sample", 1, 2, "passive", args.steps, args.repeats)
    with Neighbour():
        lanes["busy_1_lane"] = _measure("mlp-medium", "mnist-sample", 1, 1, "passive", args.steps, args.repeats)
        lanes["busy_2_lanes"] = _measure("mlp-medium", "mnist-sample", 1, 2, "passive", args.steps, args.repeats)
    for k, v in lanes.items():
        print(f"  {k}: {v * 1000:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"models": rows, "lanes": lanes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
