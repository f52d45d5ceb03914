"""Command line front end (`python -m kdcore ...`) over the same functions the app calls."""

from __future__ import annotations

import argparse
import json
import sys

from tqdm import tqdm

from . import data as kdata
from . import experiments, models, studies, teachers
from .losses import check_alpha, check_temperature


class ProgressPrinter:
    """Renders engine events as one tqdm bar per model being trained (on stderr, so --json stays clean)."""

    def __init__(self):
        self.bars: dict[str, tqdm] = {}

    def __call__(self, event: dict) -> None:
        kind, name = event.get("kind"), event.get("model")
        if kind == "teacher" and event["status"] == "cached":
            tqdm.write(f"teacher {event['member']}: loaded from cache", file=sys.stderr)
        elif kind in ("step", "epoch"):
            bar = self.bars.get(name)
            if bar is None:
                bar = self.bars[name] = tqdm(
                    total=event["epochs"],
                    desc=f"{name:>12}",
                    unit="epoch",
                    file=sys.stderr,
                    leave=True,
                    bar_format="{desc} {bar} {n:.1f}/{total} ep [{elapsed}<{remaining}] {postfix}",
                )
            bar.n = event["epoch"]
            post = f"loss {event['loss']:.3f}"
            if kind == "epoch":
                post += f" test acc {event['test_acc']:.2%}"
            bar.set_postfix_str(post, refresh=True)
            if kind == "epoch" and event["epoch"] >= event["epochs"]:
                bar.close()
        elif kind == "measuring":
            self.close()
            tqdm.write("measuring accuracy, size and latency ...", file=sys.stderr)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars.clear()


def _fmt_rows(rows: list[experiments.ModelRow]) -> str:
    header = (
        f"{'model':<24} {'role':<9} {'acc':>7} {'params':>10} {'size':>9} {'ms@b1':>7} {'img/s@256':>10} "
        f"{'agree':>6} {'ECE':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lat = "-" if r.latency_ms_b1 is None else f"{r.latency_ms_b1:.2f}"
        thr = "-" if r.throughput_b256 is None else f"{r.throughput_b256:,.0f}"
        agree = "-" if r.agreement is None else f"{r.agreement:.1%}"
        lines.append(
            f"{r.name:<24} {r.role:<9} {r.accuracy:>7.2%} {r.params:>10,} {r.size_bytes / 1e6:>7.2f}MB "
            f"{lat:>7} {thr:>10} {agree:>6} {r.ece:>6.3f}"
        )
    return "\n".join(lines)


def _positive_float(name, check):
    def parse(text):
        try:
            return check(float(text))
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                str(exc) if "must" in str(exc) else f"{name} must be a number, got {text!r}"
            ) from None

    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction must be in (0, 1], got {text!r}")
    return value


def _exclude_class(text):
    if not text.isdigit() or not 0 <= int(text) < models.NUM_CLASSES:
        raise argparse.ArgumentTypeError(
            f"exclude-class must be a class index from 0 to {models.NUM_CLASSES - 1}, got {text!r}"
        )
    return int(text)


def _epochs(text):
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise argparse.ArgumentTypeError(f"epochs must be a whole number from 1 to 500, got {text!r}")
    return int(text)


def _teachers(text):
    try:
        return tuple(m.name for m in teachers.parse_members(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    d = experiments.default_config()
    p = argparse.ArgumentParser(
        prog="python -m kdcore",
        description="KD Playground engine: datasets, teacher ensembles and knowledge distillation.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="each dataset and whether it is ready, will download, or is unavailable offline")
    sub.add_parser("models", help="the model zoo: teachers and student sizes with parameter counts")

    def dataset_arg(sp):
        sp.add_argument(
            "--dataset", choices=kdata.DATASETS, default="mnist-sample", help="dataset (default: mnist-sample, offline)"
        )

    t = sub.add_parser("teachers", help="train or load a teacher ensemble and report each member and the ensemble")
    dataset_arg(t)
    t.add_argument(
        "--teachers",
        type=_teachers,
        default=None,
        help=f"comma-separated members, arch or arch@seed (default per dataset, e.g. {','.join(d.teachers)})",
    )
    t.add_argument("--epochs", type=_epochs, default=None, help="teacher epochs (default per dataset)")
    t.add_argument("--seed", type=int, default=0, help="seed of members given without @seed (default 0)")

    s = sub.add_parser("distill", help="distill a student from a teacher ensemble next to a scratch student")
    dataset_arg(s)
    s.add_argument(
        "--teachers",
        type=_teachers,
        default=None,
        help=f"comma-separated members, arch or arch@seed (default per dataset, e.g. {','.join(d.teachers)})",
    )
    s.add_argument(
        "--student",
        choices=[m.name for m in models.available("student")],
        default=None,
        help=f"student architecture and size (default per dataset, e.g. {d.student})",
    )
    s.add_argument(
        "--temperature",
        "-T",
        type=_positive_float("temperature", check_temperature),
        default=d.temperature,
        help=f"softmax temperature T > 0 for the soft targets (default {d.temperature})",
    )
    s.add_argument(
        "--alpha",
        type=_positive_float("alpha", check_alpha),
        default=d.alpha,
        help=f"weight of the soft (teacher) loss in [0, 1]; 0 = labels only (default {d.alpha})",
    )
    s.add_argument("--epochs", type=_epochs, default=None, help="student epochs (default per dataset)")
    s.add_argument("--teacher-epochs", type=_epochs, default=None, help="teacher epochs (default per dataset)")
    s.add_argument("--seed", type=int, default=d.seed, help="seed of the students' init and data order (default 0)")
    s.add_argument(
        "--fraction", type=_fraction, default=1.0, help="stratified fraction of the training set (default 1)"
    )
    s.add_argument(
        "--exclude-class",
        type=_exclude_class,
        default=None,
        help="leave this class out of the students' training set (default: none)",
    )
    s.add_argument(
        "--combine",
        choices=teachers.COMBINES,
        default="prob",
        help="ensemble averages member probabilities (prob, default) or logits",
    )
    s.add_argument("--json", action="store_true", help="print one JSON object instead of the table")

    pr = sub.add_parser("prepare", help="train and cache the default teacher ensemble ahead of a class")
    dataset_arg(pr)
    COMMANDS.update(studies.add_cli(sub))
    return p


def cmd_datasets(args) -> int:
    for st in kdata.status(check_network=True):
        print(f"{st.name:<14} {st.state:<15} {st.message}")
    return 0


def cmd_models(args) -> int:
    for role in ("teacher", "student"):
        print(f"{role}s:")
        for spec in models.available(role):
            params = sum(p.numel() for p in models.build(spec.name, "mnist-sample").parameters())
            print(f"  {spec.name:<12} {params:>10,} params (MNIST)  {spec.description}")
    return 0


def cmd_teachers(args) -> int:
    members = teachers.parse_members(
        args.teachers or experiments.default_config(args.dataset).teachers, default_seed=args.seed
    )
    progress = ProgressPrinter()
    data = kdata.load(args.dataset, progress=_download_progress())
    ens = teachers.ensemble(data, members, epochs=args.epochs, on_event=progress)
    progress.close()
    print(_fmt_rows(experiments.teacher_rows(data, ens)))
    return 0


def cmd_distill(args) -> int:
    base = experiments.default_config(args.dataset)
    config = experiments.default_config(
        args.dataset,
        teachers=args.teachers or base.teachers,
        student=args.student or base.student,
        temperature=args.temperature,
        alpha=args.alpha,
        epochs=args.epochs or base.epochs,
        teacher_epochs=args.teacher_epochs,
        seed=args.seed,
        fraction=args.fraction,
        exclude_class=args.exclude_class,
        combine=args.combine,
    )
    kdata.load(config.dataset, progress=_download_progress())
    progress = ProgressPrinter()
    result = experiments.distill(config, on_event=progress)
    progress.close()
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(_fmt_rows(result.rows))
        print(
            f"\nKD gain (distilled - scratch): {result.kd_gain * 100:+.2f} points"
            f"  [T={config.temperature:g}, alpha={config.alpha:g}, {config.epochs} epochs, seed {config.seed}]"
        )
    return 0


def cmd_prepare(args) -> int:
    config = experiments.default_config(args.dataset)
    data = kdata.load(args.dataset, progress=_download_progress())
    progress = ProgressPrinter()
    ens = teachers.ensemble(
        data, teachers.parse_members(config.teachers), epochs=config.teacher_epochs, on_event=progress
    )
    progress.close()
    print(_fmt_rows(experiments.teacher_rows(data, ens)))
    print(f"\nCached in {teachers.cache_dir()}")
    return 0


def _download_progress():
    bars: dict[str, tqdm] = {}

    def update(done: int, total: int, filename: str) -> None:
        bar = bars.get(filename)
        if bar is None:
            bar = bars[filename] = tqdm(total=total or None, desc=filename, unit="B", unit_scale=True, file=sys.stderr)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    return update


COMMANDS = {
    "datasets": cmd_datasets,
    "models": cmd_models,
    "teachers": cmd_teachers,
    "distill": cmd_distill,
    "prepare": cmd_prepare,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (kdata.DatasetError, teachers.CacheError) as exc:  # before ValueError: not an argument error
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
