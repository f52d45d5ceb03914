"""Do repeated latency measurements agree? Each zoo model timed in several fresh processes.

Usage: python benchmarks/latency.py [--repeats 5] [--json out.json]

kdcore measures a model's latency once per machine (kdcore.teachers.model_latency) with
kdcore.metrics.measure_latency: one intra-op thread, warm-up, the median of 30 single-image passes and
of 5 batches of 256. This script runs that same measurement in --repeats fresh processes per model and
reports the spread: the largest distance of any run from their median, in percent (target: 10 %).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = """
import json, sys, torch
from kdcore import metrics, models
torch.set_num_threads(1)
arch, dataset = sys.argv[1], sys.argv[2]
lat = metrics.measure_latency(models.build(arch, dataset, seed=0), models.image_shape(dataset))
print(json.dumps([lat.ms_batch1, lat.throughput_b256]))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    from kdcore import models

    rows = []
    print("| model | images | ms / image (median) | spread | images / s at 256 (median) | spread |")
    print("|---|---|---:|---:|---:|---:|")
    for spec in models.available():
        for dataset in ("mnist-sample", "cifar10") if spec.role == "teacher" else ("mnist-sample",):
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, spec.name, dataset],
                    cwd=ROOT,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            ms, thr = [r[0] for r in runs], [r[1] for r in runs]
            med_ms, med_thr = statistics.median(ms), statistics.median(thr)
            spread_ms = max(abs(m - med_ms) for m in ms) / med_ms * 100
            spread_thr = max(abs(t - med_thr) for t in thr) / med_thr * 100
            rows.append({"model": spec.name, "dataset": dataset, "ms": ms, "throughput": thr})
            print(
                f"| {spec.name} | {dataset} | {med_ms:.3f} | {spread_ms:.0f} % | {med_thr:,.0f} | {spread_thr:.0f} % |",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
