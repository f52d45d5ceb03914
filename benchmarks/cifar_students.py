"""Which student settings teach best in a dataset's time budget: a sweep on cached teachers, over seeds.

Usage: python benchmarks/cifar_students.py --data-dir DIR [--dataset cifar10] [--seeds 0,1,2] \
    [--settings bn-small:1:0.9:4,bn-tiny:2:0.9:8] [--fraction F] [--plain] [--json out.json]

Each setting is student:T:alpha:epochs on top of the dataset's preset (teachers, method, optimiser,
training fraction; --fraction replaces the last). For every setting and seed it runs the preset's
distillation (scratch and distilled student, same init, data and data order) with consistent views
(--plain: on the plain images) and reports scratch and distilled test accuracy, the KD gain (mean ± std
over seeds) and the median wall time of a run. The teachers must already be in DIR's cache (e.g. from
benchmarks/consistent_teaching.py --data-dir DIR): nothing here trains them.
"""

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from kdcore import budget, experiments, teachers  # noqa: E402
from kdcore import data as kdata  # noqa: E402


def parse_setting(text: str) -> dict:
    try:
        student, t, alpha, epochs = text.split(":")
        return {"student": student, "temperature": float(t), "alpha": float(alpha), "epochs": int(epochs)}
    except ValueError:
        raise SystemExit(f"--settings: {text!r} is not student:T:alpha:epochs (e.g. bn-small:1:0.9:4)") from None


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True, help="a data folder whose cache holds the preset's teachers")
    parser.add_argument("--dataset", default="cifar10", choices=kdata.DATASETS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default="bn-small:1:0.9:20", help="comma-separated student:T:alpha:epochs")
    parser.add_argument("--fraction", type=float, default=None, help="share of training images (default: preset's)")
    parser.add_argument("--plain", action="store_true", help="students see the plain images, not the views")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ["KD_DATA_DIR"] = args.data_dir
    torch.set_num_threads(1)
    budget.set_job_threads(budget.share(1))
    preset = experiments.default_config(args.dataset, augment=not args.plain)
    if args.fraction is not None:
        preset = replace(preset, fraction=args.fraction)
    members = teachers.parse_members(preset.teachers)
    missing = [m.name for m in teachers.missing_members(kdata.load(args.dataset), members, preset.teacher_epochs)]
    if missing:
        raise SystemExit(f"teachers not cached in {args.data_dir}: {', '.join(missing)}; train them first")
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        f"{args.dataset}, teachers {' + '.join(preset.teachers)}, {'plain images' if args.plain else 'views'}, "
        f"fraction {preset.fraction:g}"
    )
    print("\n| student | T | α | epochs | seed | scratch | distilled | KD gain | wall s | load |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|", flush=True)
    summary = []
    for setting in (parse_setting(s) for s in args.settings.split(",")):
        runs = []
        for seed in seeds:
            before = time.perf_counter()
            r = experiments.distill(replace(preset, seed=seed, **setting), measure=False, probes=False)
            wall = time.perf_counter() - before
            s, d = 100 * r.row("scratch").accuracy, 100 * r.row("distilled").accuracy
            runs.append({"seed": seed, "scratch": s, "distilled": d, "gain": d - s, "wall_s": wall})
            print(
                f"| {setting['student']} | {setting['temperature']:g} | {setting['alpha']:g} | {setting['epochs']} "
                f"| {seed} | {s:.2f} | {d:.2f} | {d - s:+.2f} | {wall:.0f} | {os.getloadavg()[0]:.1f} |",
                flush=True,
            )
        summary.append({**setting, "runs": runs})
    print("\n| student | T | α | epochs | scratch (%) | distilled (%) | KD gain (points) | median wall s |")
    print("|---|---:|---:|---:|---|---|---|---:|")
    for row in summary:
        runs = row["runs"]
        print(
            f"| {row['student']} | {row['temperature']:g} | {row['alpha']:g} | {row['epochs']} "
            f"| {mean_std([r['scratch'] for r in runs])} | {mean_std([r['distilled'] for r in runs])} "
            f"| {mean_std([r['gain'] for r in runs])} | {statistics.median(r['wall_s'] for r in runs):.0f} |"
        )
    if args.json:
        run = {"dataset": args.dataset, "plain": args.plain, "fraction": preset.fraction, "settings": summary}
        args.json.write_text(json.dumps(run, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
