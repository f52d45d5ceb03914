"""A dataset's preset teachers and students, measured: how good, how long, and what consistent teaching adds.

Usage: python benchmarks/consistent_teaching.py [--dataset cifar10] [--seeds 0,1,2] [--repeats 3] [--json out.json]

1. Teachers: prepares the dataset's preset ensemble as a job does (`teachers.ensemble`: missing members side
   by side on one thread each) in a fresh data folder (unless --data-dir points at one that has them), with
   the budget of a lone job (all cores), and reports each member's test accuracy and training time, the
   ensemble's accuracy, the wall time until every member was trained and until their logits were scored,
   the CPU time, and the one-off scoring of the training images' augmented views (time and disk).
2. Students: the preset's distillation for every seed, with consistent augmentation (students see fixed
   views, each taught by the teacher's logits for that view) and without (plain images), reporting
   scratch and distilled accuracy and the KD gain, mean ± std over seeds.
3. Warm distillation time: the preset's run with everything cached, median of --repeats runs.
Prints the machine's load average next to each timing: numbers from a busy machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from kdcore import budget, experiments, metrics, speed, teachers  # noqa: E402
from kdcore import data as kdata  # noqa: E402
from kdcore import events as ev  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def measure_teachers(config: experiments.RunConfig, data: kdata.Dataset, views: bool = True) -> dict:
    """The preset's ensemble as a job prepares it (missing members side by side), timed as a whole."""
    trained_at = {}

    def on_event(e) -> None:
        if isinstance(e, ev.TeacherUpdate) and e.status is ev.TeacherStatus.TRAINED:
            trained_at[e.member] = time.perf_counter()

    before, cpu = time.perf_counter(), time.process_time()
    ens = teachers.ensemble(
        data,
        teachers.parse_members(config.teachers),
        epochs=config.teacher_epochs,
        combine=config.combine,
        on_event=on_event,
    )
    wall, cpu = time.perf_counter() - before, time.process_time() - cpu
    training = max(trained_at.values(), default=before) - before
    rows = []
    print("| member | test accuracy | training s (its own epochs) |\n|---|---:|---:|", flush=True)
    for t in ens.members:
        acc = metrics.accuracy(t.test_logits, data.test_y)
        source = "cached" if t.cached else "trained"
        rows.append({"member": t.name, "accuracy": acc, "train_s": t.train_seconds, "source": source})
        print(f"| {t.name} ({source}) | {acc:.2%} | {t.train_seconds:.0f} |", flush=True)
    ensemble_acc = metrics.accuracy(ens.test_logits, data.test_y)
    print(f"| ensemble | {ensemble_acc:.2%} | |", flush=True)
    print(
        f"\nAll members trained {training:.0f} s after the start; ready with their logits after {wall:.0f} s wall, "
        f"{cpu:.0f} CPU s (load {load()})",
        flush=True,
    )
    trained = ens.members
    total = {"training_wall_s": training, "total_wall_s": wall, "cpu_s": cpu}
    scored = {}
    if views and config.dataset in kdata.VIEWS:
        before = time.perf_counter()
        for t in trained:
            teachers.view_logits(t, data)
        mb = sum(p.stat().st_size for p in teachers.cache_dir().glob("*.views.safetensors")) / 2**20
        scored = {"seconds": time.perf_counter() - before, "mb": mb, "views": len(kdata.VIEWS[config.dataset])}
        print(f"\nScoring {scored['views']} views of every training image: {scored['seconds']:.0f} s, {mb:.1f} MB")
    return {"members": rows, "ensemble_accuracy": ensemble_acc, **total, "views": scored}


def measure_students(config: experiments.RunConfig, seeds: list[int]) -> dict:
    out = {}
    print("\n| students | seed | scratch | distilled | KD gain (points) | wall s | load |")
    print("|---|---:|---:|---:|---:|---:|---|", flush=True)
    for augment in (True, False):
        runs = []
        for seed in seeds:
            before = time.perf_counter()
            r = experiments.distill(replace(config, seed=seed, augment=augment), measure=False, probes=False)
            wall = time.perf_counter() - before
            s, d = r.row("scratch").accuracy, r.row("distilled").accuracy
            runs.append({"seed": seed, "scratch": s, "distilled": d, "gain": d - s, "wall_s": wall})
            name = "consistent views" if augment else "plain images"
            print(f"| {name} | {seed} | {s:.2%} | {d:.2%} | {100 * (d - s):+.2f} | {wall:.0f} | {load()} |", flush=True)
        out["augment" if augment else "plain"] = runs
    print("\n| students | scratch (%) | distilled (%) | KD gain (points) |\n|---|---|---|---|")
    for key, name in (("augment", "consistent views"), ("plain", "plain images")):

        def stat(field, runs=out[key]):
            values = [100 * r[field] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.2f} ± {std:.2f}"

        print(f"| {name} | {stat('scratch')} | {stat('distilled')} | {stat('gain')} |")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="cifar10", choices=kdata.DATASETS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--repeats", type=int, default=3, help="warm distillations timed")
    parser.add_argument("--data-dir", default=None, help="a data folder (default: a fresh one, so teachers train)")
    parser.add_argument(
        "--dataset-dir",
        default=None,
        help="a folder holding the dataset's files (e.g. one with cifar-10-batches-py/), used without copying",
    )
    parser.add_argument("--skip-students", action="store_true")
    parser.add_argument("--skip-views", action="store_true", help="do not score the training images' views")
    parser.add_argument(
        "--write-reference",
        action="store_true",
        help="store this run's speeds in assets/reference_speed.json, the estimates shown before a first run",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    folder = args.data_dir or tempfile.mkdtemp(prefix="kd-bench-")
    Path(folder).mkdir(parents=True, exist_ok=True)
    os.environ["KD_DATA_DIR"] = folder
    torch.set_num_threads(1)
    budget.set_job_threads(budget.share(1))
    config = experiments.default_config(args.dataset)
    if args.dataset_dir:  # the dataset's files, linked into the fresh folder so only the caches are new
        link = Path(folder) / args.dataset
        if not link.exists():
            link.symlink_to(Path(args.dataset_dir).resolve(), target_is_directory=True)
    data = kdata.load(args.dataset)
    print(
        f"{args.dataset}: {len(data.train_y):,} train / {len(data.test_y):,} test images; {budget.cores()} cores; "
        f"data folder {folder}; torch {torch.__version__}\n",
        flush=True,
    )
    results = {
        "dataset": args.dataset,
        "config": config.to_dict(),
        "teachers": measure_teachers(config, data, not args.skip_views),
    }
    if not args.skip_students:
        results["students"] = measure_students(config, [int(s) for s in args.seeds.split(",")])
        warm = []
        for _ in range(args.repeats):
            before = time.perf_counter()
            experiments.distill(config, measure=False, probes=False)
            warm.append(time.perf_counter() - before)
        results["warm_s"] = warm
        print(
            f"\nWarm distillation (preset, teachers and views cached): median {statistics.median(warm):.0f} s "
            f"({', '.join(f'{w:.0f}' for w in warm)}), load {load()}"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.write_reference:
        write_reference()
    return 0


def write_reference() -> None:
    """This data folder's speed notes (see kdcore.speed), as the reference machine's, merged into REFERENCE."""
    try:
        stored = json.loads(speed.REFERENCE.read_text())
    except (OSError, ValueError):
        stored = {}
    rates = stored.get("seconds_per_image", {})
    for key, values in json.loads((Path(os.environ["KD_DATA_DIR"]) / "cache" / "speed.json").read_text()).items():
        _host, rest = key.split("|", 1)
        rates[rest] = statistics.median(values)
    stored.update(
        {
            "machine": f"{budget.cores()} cores, {platform.machine()}, torch {torch.__version__}",
            "command": "python benchmarks/consistent_teaching.py --write-reference",
            "seconds_per_image": dict(sorted(rates.items())),
        }
    )
    speed.REFERENCE.write_text(json.dumps(stored, indent=1) + "\n")
    print(f"wrote {speed.REFERENCE}")


if __name__ == "__main__":
    sys.exit(main())
