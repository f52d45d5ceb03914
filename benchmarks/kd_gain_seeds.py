"""Does the default preset's distilled student beat the scratch student? Mean ± std over seeds.

Usage: python benchmarks/kd_gain_seeds.py [--dataset mnist-sample] [--seeds 0,1,2] [--json out.json]
Teachers come from the cache (trained once if missing); each seed trains a scratch and a distilled student.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kdcore import experiments


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-sample")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for seed in seeds:
        result = experiments.distill(experiments.default_config(args.dataset, seed=seed), measure=False)
        runs.append(
            {
                "seed": seed,
                "scratch": result.row("scratch").accuracy,
                "distilled": result.row("distilled").accuracy,
                "kd_gain": result.kd_gain,
            }
        )
        print(
            f"seed {seed}: scratch {runs[-1]['scratch']:.2%}  distilled {runs[-1]['distilled']:.2%}  "
            f"gain {runs[-1]['kd_gain'] * 100:+.2f} points",
            flush=True,
        )
    config = experiments.default_config(args.dataset)

    def stat(key):
        values = [r[key] * 100 for r in runs]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    print(
        f"\nPreset: {args.dataset}, teachers {'+'.join(config.teachers)}, student {config.student}, "
        f"T={config.temperature:g}, alpha={config.alpha:g}, {config.epochs} epochs; seeds {args.seeds}\n"
    )
    print("| model | test accuracy (mean ± std, %) |\n|---|---|")
    for key, label in (
        ("scratch", "scratch student"),
        ("distilled", "distilled student"),
        ("kd_gain", "KD gain (points)"),
    ):
        m, s = stat(key)
        print(f"| {label} | {m:.2f} ± {s:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": config.to_dict(), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
