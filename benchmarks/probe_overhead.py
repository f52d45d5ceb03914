"""What watching the students learn costs: a default-preset distillation with and without probes.

Usage: python benchmarks/probe_overhead.py [--dataset mnist-sample] [--repeats 5] [--json out.json]

Runs `experiments.distill` (measure=False) `repeats` times with probes and as often without,
alternating which goes first, and reports the median wall and CPU time of each and the extra time in
percent. Whole-run medians move with anything else on the machine (CPU time less than wall time), so
it also times the probe recording itself (every `Probes.record` call, summed per run): that share of a
run hardly depends on the load.
Teachers come from the cache (trained once, before anything is timed). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from kdcore import experiments, probes

LIMIT_PERCENT = 5.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist-sample")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="also write the numbers to this file")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    config = experiments.default_config(args.dataset)
    experiments.load_ensemble(config)  # trains the teachers if missing, before any timing

    recording = [0.0]
    original = probes.Probes.record

    def timed(self, role, test_logits):
        t0 = time.perf_counter()
        original(self, role, test_logits)
        recording[0] += time.perf_counter() - t0

    probes.Probes.record = timed
    times = {True: [], False: []}
    cpu = {True: [], False: []}
    record_share = []
    for i in range(args.repeats):
        for with_probes in (True, False) if i % 2 == 0 else (False, True):
            recording[0] = 0.0
            t0, c0 = time.perf_counter(), time.process_time()
            experiments.distill(config, measure=False, probes=with_probes)
            seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
            times[with_probes].append(seconds)
            cpu[with_probes].append(cpu_seconds)
            if with_probes:
                record_share.append(100 * recording[0] / seconds)
            label = "on " if with_probes else "off"
            print(f"run {i + 1} probes={label}: {seconds:.2f} s, CPU {cpu_seconds:.2f} s", file=sys.stderr)
    probes.Probes.record = original

    def extra(d):
        return 100 * (statistics.median(d[True]) - statistics.median(d[False])) / statistics.median(d[False])

    share = statistics.median(record_share)
    load = os.getloadavg()[0]
    print(f"\n{args.dataset} default preset ({config.student}, {config.epochs} epochs), median of {args.repeats}:")
    print("| probes | median wall s | median CPU s | wall runs (s) |\n|---|---:|---:|---|")
    for flag, label in ((False, "off"), (True, "on")):
        runs = " / ".join(f"{t:.2f}" for t in times[flag])
        print(f"| {label} | {statistics.median(times[flag]):.2f} | {statistics.median(cpu[flag]):.2f} | {runs} |")
    print(f"\nextra time with probes: wall {extra(times):+.1f} %, CPU {extra(cpu):+.1f} % (limit {LIMIT_PERCENT:g} %)")
    print(f"time inside Probes.record: {share:.3f} % of a run (median)")
    print(f"one-minute load average at the end: {load:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "on": times[True],
                    "off": times[False],
                    "cpu_on": cpu[True],
                    "cpu_off": cpu[False],
                    "extra_percent": extra(times),
                    "extra_cpu_percent": extra(cpu),
                    "record_percent": share,
                    "load": load,
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
