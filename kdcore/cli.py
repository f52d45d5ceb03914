"""Command line front end (`python -m kdcore ...`) over the same functions the app calls.

Every training command builds the same `JobSpec` a page would submit and runs it through
`jobs.run`: in this process, or on the Dask cluster given by --scheduler / KD_SCHEDULER. Progress
goes to stderr (so --json output stays clean) through one printer that reads the job's `Progress`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from . import budget, experiments, jobs, limits, models, speed, studies, teachers
from . import data as kdata
from . import events as ev
from .experiments import RunConfig

# ---- progress --------------------------------------------------------------------------------------


class ProgressPrinter:
    """One tqdm bar per phase of a job (on stderr), drawn from its Progress; notices and cache hits as lines."""

    def __init__(self):
        self.bar: tqdm | None = None
        self.phase: ev.Phase | None = None
        self.said: set[str] = set()
        self.tracker = ev.ProgressTracker(steps=2)

    def __call__(self, event: ev.Event) -> None:
        """Follow an in-process job's events."""
        self.tracker.apply(event)
        self.render(self.tracker.progress())

    def render(self, p: ev.Progress) -> None:
        for member, line in p.teachers.items():
            if line.status == "cached" and member not in self.said:
                self.said.add(member)
                tqdm.write(f"teacher {member}: loaded from cache", file=sys.stderr)
        if p.assistant is not None and p.assistant[1].status == "cached" and p.assistant[0] not in self.said:
            self.said.add(p.assistant[0])
            tqdm.write(f"teacher {p.assistant[0]}: loaded from cache", file=sys.stderr)
        for notice in p.notices:
            if notice.message not in self.said:
                self.said.add(notice.message)
                tqdm.write(f"warning: {notice.message}", file=sys.stderr)
        if p.phase in (ev.Phase.QUEUED, ev.Phase.FINISHED):
            self.close()
            return
        if p.phase is not self.phase:
            self.close()
            self.phase = p.phase
            self.bar = tqdm(total=100, file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}", desc=p.phase.value)
        students = ", ".join(f"{m} {p.epochs(m)[-1].test_acc:.1%}" for m in p.curves if p.epochs(m))
        self.bar.n = round(100 * p.fraction, 1)
        self.bar.set_postfix_str(p.text + (f" · test acc {students}" if students else ""), refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.phase = None


def _download_progress() -> Callable[[int, int, str], None]:
    bars: dict[str, tqdm] = {}

    def update(done: int, total: int, filename: str) -> None:
        bar = bars.get(filename)
        if bar is None:
            bar = bars[filename] = tqdm(total=total or None, desc=filename, unit="B", unit_scale=True, file=sys.stderr)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    return update


def execute(spec: jobs.JobSpec, scheduler: str | None):
    """Run spec here, or on the Dask cluster when a scheduler is given, printing its progress; returns its result."""
    printer = ProgressPrinter()
    try:
        if not scheduler:
            kdata.load(spec.config.dataset, progress=_download_progress())
            return jobs.run(spec, ev.stamped(printer), threading.Event())
        runner = jobs.JobRunner(jobs.make_backend(scheduler))
        try:
            job = runner.submit(spec)
            try:
                while not job.wait(0.25):
                    printer.render(job.progress())
            except KeyboardInterrupt:
                job.cancel()
                job.wait(30)
                raise
            printer.render(job.progress())
            return job.result()
        finally:
            runner.shutdown(wait=False)
    finally:
        printer.close()


# ---- argument types ----------------------------------------------------------------------------------


def _checked(check: Callable, name: str):
    """An argparse type from one of kdcore.limits' checks: its message, or "must be a number"."""

    def parse(text: str):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {limits.shorten(text)}") from None
        try:
            return check(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _whole(check: Callable, name: str):
    """An argparse type for a whole-number option checked by kdcore.limits (2.5 is refused, not rounded)."""

    def parse(text: str) -> int:
        try:
            value = int(text) if text.strip().lstrip("+-").isdigit() else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {limits.shorten(text)}") from None
        try:
            return check(value, name)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _exclude_class(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < models.NUM_CLASSES:
        raise argparse.ArgumentTypeError(
            f"exclude-class must be a class index from 0 to {models.NUM_CLASSES - 1}, got {text!r}"
        )
    return int(text)


def _class_index(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < models.NUM_CLASSES:
        raise argparse.ArgumentTypeError(
            f"missing must be a class index from 0 to {models.NUM_CLASSES - 1}, got {text!r}"
        )
    return int(text)


def _teachers(text: str) -> tuple[str, ...]:
    try:
        return tuple(m.name for m in teachers.parse_members(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _students(text: str) -> list[str]:
    try:
        return studies.check_students([s.strip() for s in text.split(",") if s.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _number_list(name: str, check: Callable[[float], float], limit: int, example: str):
    def parse(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be numbers separated by commas (e.g. {example}), got {text!r}"
            ) from None
        try:
            return studies.check_values(name, values, check, limit=limit, example=example)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _seed_list(text: str) -> list[int]:
    try:
        seeds = [limits.check_seed(int(v)) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            str(exc) if "seed" in str(exc) else f"seeds must be whole numbers separated by commas, got {text!r}"
        ) from None
    if not 2 <= len(seeds) <= studies.MAX_POINTS or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seeds must list 2 to {studies.MAX_POINTS} different seeds, got {text!r}")
    return seeds


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"bias-value must be a finite number (e.g. 3.5), got {text!r}")
    return value


def _threads(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"threads must be a whole number >= 1, got {text!r}")
    return int(text)


# ---- the parser ----------------------------------------------------------------------------------------


def _preset_default(field: str) -> str:
    """A field's default for the help text: mnist-sample's, then each dataset whose preset differs."""
    base = getattr(experiments.default_config(), field)
    other = [(ds, getattr(experiments.default_config(ds), field)) for ds in kdata.DATASETS]
    return f"{base:g}" + "".join(f"; {ds}: {value:g}" for ds, value in other if value != base)


def _run_options(p: argparse.ArgumentParser, *, student: bool = True, t_alpha: bool = True, data: bool = False):
    """The options every training command shares; an option left out keeps the dataset's preset."""
    d = experiments.default_config()
    low, high = limits.EPOCHS
    p.add_argument("--dataset", choices=kdata.DATASETS, default="mnist-sample", help="dataset (default: mnist-sample)")
    p.add_argument(
        "--teachers",
        type=_teachers,
        default=None,
        help=f"comma-separated members, arch or arch@seed (default per dataset, e.g. {','.join(d.teachers)})",
    )
    if student:
        p.add_argument(
            "--student",
            choices=[m.name for m in models.available("student")],
            default=None,
            help=f"student architecture and size (default per dataset, e.g. {d.student})",
        )
    if t_alpha:
        t_low, t_high = limits.TEMPERATURES
        p.add_argument(
            "--temperature",
            "-T",
            type=_checked(limits.check_temperature, "temperature"),
            default=None,
            help=f"softmax temperature T, {t_low:g} to {t_high:g} (default {_preset_default('temperature')})",
        )
        p.add_argument(
            "--alpha",
            type=_checked(limits.check_alpha, "alpha"),
            default=None,
            help=f"weight of the soft (teacher) loss in [0, 1]; 0 = labels only (default {_preset_default('alpha')})",
        )
    p.add_argument(
        "--epochs", type=_whole(limits.check_epochs, "epochs"), default=None, help=f"student epochs, {low} to {high}"
    )
    p.add_argument(
        "--teacher-epochs",
        type=_whole(limits.check_epochs, "teacher-epochs"),
        default=None,
        help="teacher epochs (default per dataset)",
    )
    s_low, s_high = limits.SEEDS
    p.add_argument(
        "--seed",
        type=_whole(limits.check_seed, "seed"),
        default=None,
        help=f"seed of the students' init and data order, {s_low} to {s_high:,} (default 0)",
    )
    if data:
        p.add_argument(
            "--fraction",
            type=_checked(limits.check_fraction, "fraction"),
            default=None,
            help=f"stratified fraction of the training set (default {_preset_default('fraction')})",
        )
        p.add_argument(
            "--exclude-class",
            type=_exclude_class,
            default=None,
            help="leave this class out of the students' training set (default: none)",
        )
    p.add_argument(
        "--combine",
        choices=teachers.COMBINES,
        default=None,
        help="ensemble averages member probabilities (prob, default) or logits",
    )
    if student:
        p.add_argument(
            "--augment",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="students train on fixed augmented views, each taught by the teacher's logits for that exact "
            f"view (datasets: {', '.join(kdata.VIEWS)}; default: the dataset's preset, on for cifar10)",
        )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def _weight(name: str):
    return _checked(lambda v: limits.check_weight(v, name), name)


def _method_options(p: argparse.ArgumentParser) -> None:
    """How the distilled student learns (kdcore.limits.METHODS) and each method's own settings."""
    d = experiments.default_config()
    p.add_argument(
        "--method",
        choices=limits.METHODS,
        default=None,
        help="kd: Hinton et al. 2015 (default); dkd: decoupled KD; ta: through a teacher assistant; "
        "self: born-again generations of the student itself",
    )
    p.add_argument(
        "--alpha-tc",
        type=_weight("alpha-tc"),
        default=None,
        help=f"dkd: weight of the target-class part TCKD (default {d.alpha_tc:g})",
    )
    p.add_argument(
        "--beta-nc",
        type=_weight("beta-nc"),
        default=None,
        help=f"dkd: weight of the non-target part NCKD (default {d.nckd_weight:g} on {d.dataset}, measured; "
        f"{experiments.BETA_NC_PAPER:g}, the paper's, elsewhere)",
    )
    p.add_argument(
        "--assistant",
        choices=[m.name for m in models.available()],
        default=None,
        metavar="MODEL",
        help="ta: the teacher assistant, a model larger than the student (default: the next size up in its family)",
    )
    low, high = limits.GENERATIONS
    p.add_argument(
        "--generations",
        type=_whole(lambda v, name: limits.check_generations(v), "generations"),
        default=None,
        help=f"self: born-again students after the scratch one, {low} to {high} (default {d.generations})",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kdcore", description="KD Playground engine: datasets, teacher ensembles and distillation."
    )
    runtime = argparse.ArgumentParser(add_help=False)
    runtime.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="CPU threads for this run (default: KD_THREADS, else every core; small models use one each)",
    )
    runtime.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster at this address, e.g. tcp://host:8786 (default: KD_SCHEDULER, else here)",
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("datasets", help="each dataset and whether it is ready, will download, or is unavailable offline")
    sub.add_parser("models", help="the model zoo: teachers and student sizes with parameter counts")

    def job(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, parents=[runtime])

    t = job("teachers", "train or load a teacher ensemble and report each member and the ensemble")
    _run_options(t, student=False, t_alpha=False)
    pr = job("prepare", "train and cache a dataset's default teachers ahead of a class")
    pr.add_argument("--dataset", choices=kdata.DATASETS, default="mnist-sample", help="dataset (default: mnist-sample)")

    s = job("distill", "distill a student from a teacher ensemble next to a scratch student")
    _run_options(s, data=True)
    _method_options(s)

    grid = f"up to {studies.MAX_GRID} comma-separated values"
    sw = job("sweep", "T x alpha grid of distilled students against one scratch student")
    _run_options(sw, t_alpha=False)
    sw.add_argument(
        "--temperatures",
        type=_number_list("temperatures", limits.check_temperature, studies.MAX_GRID, "1,2,4,8"),
        default=None,
        help=f"temperatures, {grid} (default {','.join(f'{t:g}' for t in studies.DEFAULT_TEMPERATURES)})",
    )
    sw.add_argument(
        "--alphas",
        type=_number_list("alphas", limits.check_alpha, studies.MAX_GRID, "0.25,0.5,0.75"),
        default=None,
        help=f"alphas in [0, 1], {grid} (default {','.join(f'{a:g}' for a in studies.DEFAULT_ALPHAS)})",
    )
    fr = job("fraction", "KD against scratch at smaller training fractions")
    _run_options(fr)
    fr.add_argument(
        "--fractions",
        type=_number_list("fractions", limits.check_fraction, studies.MAX_POINTS, "0.01,0.05,0.2,1"),
        default=None,
        help=f"training fractions in (0, 1], up to {studies.MAX_POINTS} (default "
        f"{','.join(f'{f:g}' for f in studies.DEFAULT_FRACTIONS)}); epochs grow as fractions shrink",
    )
    mc = job("missing-class", "students never see one class (Hinton et al. 2015, section 3)")
    _run_options(mc)
    mc.add_argument("--missing", type=_class_index, default=3, help="class index to leave out (default 3)")
    mc.add_argument("--no-bias-fix", action="store_true", help="skip raising the missing class's output bias")
    mc.add_argument(
        "--bias-value",
        type=_finite,
        default=None,
        help="bias increase to use (default: chosen on the training set to match the teacher's share)",
    )
    se = job("seeds", "the same distillation over several seeds: the KD gain's mean and spread")
    _run_options(se, data=True)
    se.add_argument(
        "--seeds",
        type=_seed_list,
        default=None,
        help=f"seeds to repeat with, 2 to {studies.MAX_POINTS} (default {','.join(map(str, studies.DEFAULT_SEEDS))})",
    )
    ca = job("capacity", "KD gain against student size")
    _run_options(ca, student=False)
    ca.add_argument(
        "--students",
        type=_students,
        default=None,
        help="comma-separated students (default: every size of the dataset's default student family)",
    )
    return p


# Each method's own options and the method they belong to.
METHOD_OPTIONS = {
    field: method for method, fields in experiments.METHOD_FIELDS.items() for field in fields if method != "kd"
}


def _config(args) -> RunConfig:
    """The dataset's preset with every option the user gave."""
    names = ("teachers", "student", "temperature", "alpha", "epochs", "teacher_epochs", "seed", "fraction")
    methods = ("method", "alpha_tc", "beta_nc", "assistant", "generations")
    given = {
        n: getattr(args, n)
        for n in (*names, "exclude_class", "combine", "augment", *methods)
        if getattr(args, n, None) is not None
    }
    method = given.get("method", "kd")
    for name, owner in METHOD_OPTIONS.items():
        if name in given and owner != method:
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} is a setting of --method {owner}; add --method {owner} or drop {flag}")
    return experiments.default_config(args.dataset, **given)


# ---- commands ------------------------------------------------------------------------------------------


def _fmt_rows(rows: list[experiments.ModelRow]) -> str:
    header = (
        f"{'model':<26} {'role':<10} {'acc':>7} {'params':>10} {'size':>9} {'ms@b1':>7} {'img/s@256':>10} "
        f"{'agree':>6} {'ECE':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        lat = "-" if r.latency_ms_b1 is None else f"{r.latency_ms_b1:.2f}"
        thr = "-" if r.throughput_b256 is None else f"{r.throughput_b256:,.0f}"
        agree = "-" if r.agreement is None else f"{r.agreement:.1%}"
        lines.append(
            f"{r.name:<26} {r.role:<10} {r.accuracy:>7.2%} {r.params:>10,} {r.size_bytes / 1e6:>7.2f}MB "
            f"{lat:>7} {thr:>10} {agree:>6} {r.ece:>6.3f}"
        )
    return "\n".join(lines)


def _opt(x: float | None, fmt: str = "{:.2%}") -> str:
    return "-" if x is None else fmt.format(x)


def _sweep_text(r: studies.SweepResult) -> str:
    best, corner = r.best, "T \\ alpha"
    lines = [
        f"test accuracy of the distilled {r.config.student} per T (rows) and alpha (columns); "
        f"scratch {_opt(r.scratch_acc)}, * = best",
        f"{corner:>10}" + "".join(f"{a:>10g}" for a in r.alphas),
    ]
    for i, t in enumerate(r.temperatures):
        cells = "".join(
            f"{_opt(acc) + ('*' if best and (best['row'], best['col']) == (i, j) else ' '):>10}"
            for j, acc in enumerate(r.accuracy[i])
        )
        lines.append(f"{t:>10g}{cells}")
    return "\n".join(lines)


def _fraction_text(r: studies.FractionResult) -> str:
    lines = [f"{'fraction':>9} {'images':>7} {'epochs':>6} {'scratch':>8} {'KD':>8} {'gap':>8}"]
    for p in r.points:
        gap = "-" if p.gain is None else f"{p.gain * 100:+.2f}"
        lines.append(
            f"{p.fraction * 100:>8g}% {p.train_size:>7} {p.epochs:>6} {_opt(p.scratch_acc):>8} "
            f"{_opt(p.distilled_acc):>8} {gap:>8}"
        )
    lines.append(f"epochs per fraction: {r.epoch_rule}")
    return "\n".join(lines)


def _missing_text(r: studies.MissingClassResult) -> str:
    lines = [
        f"class {r.class_name} left out of the students' {len(r.train_idx)} training images",
        f"{'model':<22} {'class ' + r.class_name:>12} {'overall':>8}",
    ]
    lines += [f"{row.name:<22} {_opt(row.missing_acc):>12} {_opt(row.accuracy):>8}" for row in r.rows]
    if r.bias_value is not None:
        lines.append(
            f"bias fix: +{r.bias_value:.3f} on class {r.class_name} ({r.bias_rule}); share of training "
            f"images predicted as {r.class_name}: teacher {_opt(r.teacher_share)}, student "
            f"{_opt(r.share_before)} before, {_opt(r.share_after)} after"
        )
    return "\n".join(lines)


def _seeds_text(r: studies.SeedsResult) -> str:
    lines = [f"{'seed':>5} {'scratch':>8} {'KD':>8} {'gain':>8}"]
    for p in r.points:
        gain = "-" if p.gain is None else f"{p.gain * 100:+.2f}"
        lines.append(f"{p.seed:>5} {_opt(p.scratch_acc):>8} {_opt(p.distilled_acc):>8} {gain:>8}")
    return "\n".join(lines)


def _capacity_text(r: studies.CapacityResult) -> str:
    lines = [f"{'student':<12} {'params':>10} {'scratch':>8} {'KD':>8} {'gain':>8}"]
    for p in r.points:
        gain = "-" if p.gain is None else f"{p.gain * 100:+.2f}"
        lines.append(f"{p.student:<12} {p.params:>10,} {_opt(p.scratch_acc):>8} {_opt(p.distilled_acc):>8} {gain:>8}")
    lines.append(f"{'teacher':<12} {r.teacher_params:>10,} {_opt(r.teacher_acc):>8}")
    helpers = sorted({p.assistant for p in r.points if p.assistant})
    if helpers:
        lines.append(f"with assistant (through {', '.join(helpers)}):")
        lines += [
            f"{p.student:<12} {'':>10} {'':>8} {_opt(p.assisted_acc):>8} "
            f"{'-' if p.assisted_gain is None else f'{p.assisted_gain * 100:+.2f}':>8}"
            for p in r.points
            if p.assistant
        ]
    if r.assistant_reading():
        lines.append(r.assistant_reading())
    return "\n".join(lines)


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


def _teachers_text(result: experiments.TeachersResult) -> str:
    return _fmt_rows(result.rows)


def _distill_text(result: experiments.RunResult | None) -> str:
    if result is None:
        return "Stopped before both students finished an epoch; nothing to compare."
    c = result.config
    how = {
        "kd": f"T={c.temperature:g}, alpha={c.alpha:g}",
        "dkd": f"method dkd, T={c.temperature:g}, alpha_tc={c.alpha_tc:g}, beta_nc={c.nckd_weight:g}",
        "ta": f"method ta through {c.assistant_arch}, T={c.temperature:g}, alpha={c.alpha:g}",
        "self": f"method self, {c.generations} generations, T={c.temperature:g}, alpha={c.alpha:g}",
    }[c.method]
    text = _fmt_rows(result.rows) + (
        f"\n\nKD gain (distilled - scratch): {result.kd_gain * 100:+.2f} points"
        f"  [{how}, {c.epochs} epochs, seed {c.seed}]"
    )
    if result.generations:
        text += "\nGenerations (0 = scratch): " + ", ".join(
            f"{k}: {acc:.2%}" for k, acc in enumerate(result.generations)
        )
    if result.partial:
        text += f"\nStopped: both students compared after {result.epochs_done} of {c.epochs} epochs."
    return text


STUDY_OPTIONS = {
    jobs.JobKind.SWEEP: ("temperatures", "alphas"),
    jobs.JobKind.FRACTION: ("fractions",),
    jobs.JobKind.MISSING_CLASS: ("missing", "bias_fix", "bias_value"),
    jobs.JobKind.CAPACITY: ("students",),
    jobs.JobKind.SEEDS: ("seeds",),
}
TEXTS = {
    jobs.JobKind.TEACHERS: _teachers_text,
    jobs.JobKind.DISTILL: _distill_text,
    jobs.JobKind.SWEEP: _sweep_text,
    jobs.JobKind.FRACTION: _fraction_text,
    jobs.JobKind.MISSING_CLASS: _missing_text,
    jobs.JobKind.CAPACITY: _capacity_text,
    jobs.JobKind.SEEDS: _seeds_text,
}


def cmd_job(args) -> int:
    """Every training command: the job the app would run, here or on the cluster."""
    kind = jobs.JobKind.TEACHERS if args.command == "prepare" else jobs.JobKind(args.command)
    config = experiments.default_config(args.dataset) if args.command == "prepare" else _config(args)
    if kind is jobs.JobKind.MISSING_CLASS:
        if args.no_bias_fix and args.bias_value is not None:
            raise ValueError("--bias-value is the amount the bias fix adds; drop --no-bias-fix to use it")
        args.bias_fix = not args.no_bias_fix
    options = {n: getattr(args, n) for n in STUDY_OPTIONS.get(kind, ()) if getattr(args, n, None) is not None}
    spec = jobs.JobSpec(kind, config, options, name=args.command, record=False)
    started = time.perf_counter()
    if not args.scheduler:
        _say_estimate(spec)
    result = execute(spec, args.scheduler)
    if getattr(args, "json", False):
        print(json.dumps(_json(result)))
        return 0
    print(TEXTS[kind](result))
    if hasattr(result, "reading"):
        print(f"\n{result.reading()}")
    if args.command == "prepare":
        print(f"\nCached in {teachers.cache_dir()} ({time.perf_counter() - started:.0f} s)")
    return 0


def _say_estimate(spec: jobs.JobSpec) -> None:
    """How long the run should take here, on stderr, before it starts (from the speed of recent runs)."""
    data = kdata.load(spec.config.dataset, progress=_download_progress())
    members = teachers.parse_members(spec.config.teachers)
    missing = [m.name for m in teachers.missing_members(data, members, spec.config.teacher_epochs)]
    estimate = speed.job_estimate(spec, data, budget.job_threads())
    if missing:
        tqdm.write(f"{len(missing)} teacher(s) to train first: {', '.join(missing)}", file=sys.stderr)
    tqdm.write(estimate.text, file=sys.stderr)


def _json(result) -> dict | None:
    if result is None:
        return None
    if isinstance(result, experiments.TeachersResult):
        return {"dataset": result.config.dataset, "models": [r.to_json() for r in result.rows]}
    return result.to_json()


COMMANDS = {"datasets": cmd_datasets, "models": cmd_models}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        args.scheduler = getattr(args, "scheduler", None) or os.environ.get("KD_SCHEDULER") or None
        # One thread unless a model gains from more (kdcore.budget decides, within this run's budget).
        torch.set_num_threads(1)
        budget.set_job_threads(getattr(args, "threads", None) or budget.share(1))
        return COMMANDS.get(args.command, cmd_job)(args)
    except (kdata.DatasetError, teachers.CacheError, jobs.JobFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        if getattr(exc, "user_facing", False):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        parser.error(str(exc))
    except KeyboardInterrupt:
        print("\nstopped", file=sys.stderr)
        return 130
