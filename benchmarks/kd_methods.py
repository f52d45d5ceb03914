"""KD gain of every distillation method against the scratch student, mean ± std over seeds.

Usage: python benchmarks/kd_methods.py [--dataset mnist-sample] [--students mlp-medium,mlp-tiny] [--seeds 0,1,2]
       [--methods kd,dkd,ta,self] [--beta-nc 8] [--epochs N] [--json out.json]

Each (student, seed) runs `experiments.distill` once per method on the dataset's preset (teachers,
T, alpha, epochs), changing only the student and the method; every method's scratch student is the
same model (same initial weights, batches and epochs), so each gain is against one baseline. Teachers
and teacher assistants come from the cache in KD_DATA_DIR (trained once if missing). --beta-nc takes
several values (e.g. 1,2,4,8) to compare DKD's NCKD weight; each gets its own row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from kdcore import experiments, limits


def _label(method: str, beta_nc: float, several_betas: bool) -> str:
    return f"dkd β_nc={beta_nc:g}" if method == "dkd" and several_betas else method


def _stat(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-sample")
    p.add_argument("--students", default="mlp-medium,mlp-tiny")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--methods", default=",".join(limits.METHODS))
    p.add_argument("--beta-nc", default=None, help="DKD's NCKD weight(s), comma-separated (default: the preset's)")
    p.add_argument("--epochs", type=int, default=None, help="student epochs (default: the preset's)")
    p.add_argument("--json", default=None, help="also write every run's numbers to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    students = [s for s in args.students.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    for m in methods:
        limits.check_method(m)
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    preset = experiments.default_config(args.dataset, **overrides)
    betas = [float(b) for b in args.beta_nc.split(",")] if args.beta_nc else [preset.nckd_weight]
    variants = [(m, b) for m in methods for b in (betas if m == "dkd" else [preset.nckd_weight])]
    runs = []
    for student in students:
        for seed in seeds:
            for method, beta in variants:
                config = experiments.default_config(
                    args.dataset, student=student, seed=seed, method=method, beta_nc=beta, **overrides
                )
                r = experiments.distill(config, measure=False, probes=False)
                run = {
                    "student": student,
                    "seed": seed,
                    "method": method,
                    "beta_nc": beta if method == "dkd" else None,
                    "assistant": config.assistant_arch if method == "ta" else None,
                    "scratch": r.row("scratch").accuracy,
                    "distilled": r.row("distilled").accuracy,
                    "kd_gain": r.kd_gain,
                    "generations": r.generations,
                    "seconds": r.seconds,
                }
                runs.append(run)
                print(
                    f"{student} seed {seed} {_label(method, beta, len(betas) > 1)}: scratch {run['scratch']:.2%} "
                    f"distilled {run['distilled']:.2%} gain {run['kd_gain'] * 100:+.2f} points ({r.seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
    for student in students:
        for seed in seeds:
            baselines = {r["scratch"] for r in runs if (r["student"], r["seed"]) == (student, seed)}
            if len(baselines) > 1:
                print(f"warning: {student} seed {seed}: scratch students differ across methods", file=sys.stderr)
    base = preset
    print(
        f"\n{args.dataset}: teachers {'+'.join(base.teachers)}, T = {base.temperature:g}, α = {base.alpha:g}, "
        f"{base.epochs} epochs; seeds {args.seeds}. KD gain = distilled − scratch test accuracy, points, "
        "mean ± std over seeds.\n"
    )
    header = ["student", "scratch acc (%)"] + [_label(m, b, len(betas) > 1) for m, b in variants]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for student in students:
        mine = [r for r in runs if r["student"] == student]
        scratch = _stat([r["scratch"] * 100 for r in mine if r["method"] == variants[0][0]])
        cells = [student, f"{scratch[0]:.2f} ± {scratch[1]:.2f}"]
        for method, beta in variants:
            gains = [r["kd_gain"] * 100 for r in mine if r["method"] == method and r["beta_nc"] in (beta, None)]
            m, s = _stat(gains)
            cells.append(f"{m:+.2f} ± {s:.2f}")
        print("| " + " | ".join(cells) + " |")
    assistants = sorted({(r["student"], r["assistant"]) for r in runs if r["assistant"]})
    if assistants:
        print("\nta: " + ", ".join(f"{s} learns from the assistant {a}" for s, a in assistants))
    if "self" in methods:
        print(f"self: {base.generations} born-again generations after the scratch student (generation 0)")
    if "dkd" in methods:
        print(f"dkd: α_tc = {base.alpha_tc:g}, β_nc = {', '.join(f'{b:g}' for b in betas)}, cross-entropy weight 1")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": base.to_dict(), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
