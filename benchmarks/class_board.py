"""Twenty sessions saving runs into one history at once while the class board is computed again and again: are any
runs lost, and how long do the board and the Class board page take?

Each writer is its own process (like a server's job workers) and saves distillations the way a job does
(`RunStore.save_run`, with a real student's weights) and, every fifth run, a T sweep (`save_record`). All writers
start together at a barrier. Meanwhile this process computes `classboard.board()` in a loop. Afterwards it times
`board()`, `board()` with the page's four figures, and the whole Class board page (AppTest) on the full history.

    python benchmarks/class_board.py [--writers 20] [--runs 10] [--page-repeats 10] [--json out.json]

Uses a fresh temporary data folder (its own history); trains nothing. The default run takes well under a minute.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import charts  # noqa: E402
from kdcore import classboard, models, studies  # noqa: E402
from kdcore import store as kstore  # noqa: E402
from kdcore.experiments import ModelRow, RunResult, default_config  # noqa: E402

PAGE = ROOT / "pages" / "7_Class_board.py"
SWEEP_EVERY = 5  # every fifth run of a writer is a T sweep, the rest are distillations
TEMPERATURES = (1.0, 2.0, 4.0, 8.0, 20.0)
ALPHAS = (0.1, 0.5, 0.9)
STUDENTS = ("mlp-tiny", "mlp-small", "mlp-medium")


def _row(name: str, role: str, acc: float) -> ModelRow:
    return ModelRow(name, role, acc, 10_000, 40_000, 0.1, 1e4, 0.9, 0.1, 0.05, [acc] * models.NUM_CLASSES)


def a_distillation(rng: random.Random, student: torch.nn.Module) -> RunResult:
    """A result shaped like distill()'s (rows, 20 epochs of curves, the distilled student) at a random setting."""
    config = default_config(
        "mnist-sample", student=rng.choice(STUDENTS), temperature=rng.choice(TEMPERATURES), alpha=rng.choice(ALPHAS)
    )
    scratch = rng.uniform(0.90, 0.94)
    distilled = scratch + rng.uniform(-0.01, 0.03)
    rows = [_row("ensemble", "ensemble", 0.98), _row("scratch", "scratch", scratch)]
    rows.append(_row("distilled", "distilled", distilled))
    curves = {
        role: [
            {"kind": "epoch", "model": role, "epoch": e, "epochs": 20, "loss": 1 / e, "hard": 0.5 / e, "soft": None}
            | {"test_acc": acc - 0.1 / e, "elapsed": float(e)}
            for e in range(1, 21)
        ]
        for role, acc in (("scratch", scratch), ("distilled", distilled))
    }
    classes = tuple(str(i) for i in range(models.NUM_CLASSES))
    return RunResult(config, rows, curves, False, 3.0, classes, {"distilled": student})


def a_sweep(rng: random.Random) -> studies.SweepResult:
    scratch = rng.uniform(0.90, 0.94)
    accuracy = [[scratch + rng.uniform(-0.01, 0.03)] for _ in (1.0, 4.0, 20.0)]
    return studies.SweepResult(default_config("mnist-sample"), [1.0, 4.0, 20.0], [0.5], accuracy, scratch, 0.98)


def writer(path: str, index: int, runs: int, barrier, results) -> None:
    """One session: save `runs` runs as fast as the history takes them; report the ids saved and any failure."""
    torch.set_num_threads(1)
    rng = random.Random(index)
    student = models.build("mlp-tiny", "mnist-sample", seed=index)
    store = kstore.open_store(path)
    saved, failed = [], []
    barrier.wait()
    for i in range(runs):
        try:
            if i % SWEEP_EVERY == SWEEP_EVERY - 1:
                r = a_sweep(rng)
                saved.append(store.save_record("sweep", "mnist-sample", r.config.to_dict(), r.to_json()))
            else:
                saved.append(store.save_run(a_distillation(rng, student)))
        except Exception:
            failed.append(traceback.format_exc(limit=2))
    store.close()
    results.put((index, saved, failed))


def board_and_figures(store: kstore.RunStore) -> tuple[classboard.Board, float, float]:
    """The board, the seconds board() took, and the seconds it took with the page's four figures."""
    started = time.perf_counter()
    b = classboard.board(store)
    computed = time.perf_counter() - started
    for axis in classboard.AXES:
        charts.board_chart(b.series[axis])
    return b, computed, time.perf_counter() - started


def page_seconds(repeats: int) -> list[float]:
    """The whole Class board page run through AppTest (reading the history, board(), figures, layout)."""
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(repeats):
        at = AppTest.from_file(str(PAGE), default_timeout=60)
        started = time.perf_counter()
        at.run()
        times.append(time.perf_counter() - started)
        if at.exception:
            raise RuntimeError(f"the Class board page failed: {at.exception[0].value}")
    return times


def summary(seconds: list[float]) -> dict:
    ms = sorted(1000 * s for s in seconds)
    p95 = statistics.quantiles(ms, n=20, method="inclusive")[18] if len(ms) > 1 else ms[0]
    return {"n": len(ms), "median_ms": statistics.median(ms), "p95_ms": p95, "max_ms": ms[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writers", type=int, default=20, help="sessions saving runs at once (processes)")
    parser.add_argument("--runs", type=int, default=10, help="runs each writer saves")
    parser.add_argument("--page-repeats", type=int, default=10, help="timed runs of the whole page afterwards")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    for name in ("writers", "runs", "page_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    torch.set_num_threads(1)
    os.environ["KD_DATA_DIR"] = data_dir = tempfile.mkdtemp(prefix="kd-board-bench-")
    store = kstore.open_store()
    path = str(store.path)

    # fork: the writers inherit the imported modules instead of importing torch twenty times.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    barrier, results = ctx.Barrier(args.writers + 1), ctx.Queue()
    procs = [ctx.Process(target=writer, args=(path, i, args.runs, barrier, results)) for i in range(args.writers)]
    for p in procs:
        p.start()
    barrier.wait()
    started = time.perf_counter()
    during = []  # board() alone, so the loop samples it often while the writers are busy
    reports = []
    while len(reports) < args.writers:
        t = time.perf_counter()
        classboard.board(store)
        during.append(time.perf_counter() - t)
        while not results.empty():
            reports.append(results.get())
        if not any(p.is_alive() for p in procs) and results.empty() and len(reports) < args.writers:
            break  # a writer died without reporting; its runs count as lost below
    writing = time.perf_counter() - started
    for p in procs:
        p.join()

    saved = sorted(run_id for _, ids, _ in reports for run_id in ids)
    failures = [f for _, _, fails in reports for f in fails]
    expected = args.writers * args.runs
    after = [board_and_figures(store) for _ in range(args.page_repeats)]
    on_board = after[-1][0].runs
    page = page_seconds(args.page_repeats)
    lost = expected - store.count()

    rows = [
        ("board() while the writers save", summary(during)),
        (f"board() with all {expected} runs", summary([a[1] for a in after])),
        (f"board() + 4 figures with all {expected} runs", summary([a[2] for a in after])),
        (f"Class board page (AppTest run) with all {expected} runs", summary(page)),
    ]
    print(
        f"{args.writers} writers × {args.runs} runs into one history in {writing:.1f} s, "
        f"on {os.cpu_count()} CPUs:\n"
        f"runs expected {expected}, saved ids {len(set(saved))}, in the history {store.count()}, "
        f"on the board {on_board}, save errors {len(failures)}: "
        + ("no run lost" if lost == 0 and not failures and on_board == expected else f"{lost} runs LOST")
        + "\n"
    )
    print("| measure | n | median ms | p95 ms | max ms |\n|---|---:|---:|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s['n']} | {s['median_ms']:.1f} | {s['p95_ms']:.1f} | {s['max_ms']:.1f} |")
    for f in failures[:3]:
        print(f"\nA save failed:\n{f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "writers": args.writers,
                    "runs_per_writer": args.runs,
                    "cpus": os.cpu_count(),
                    "expected": expected,
                    "in_history": store.count(),
                    "on_board": on_board,
                    "save_errors": failures,
                    "writing_seconds": writing,
                    "timings": dict(rows),
                },
                indent=1,
            )
        )
    store.close()
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0 if lost == 0 and not failures and on_board == expected else 1


if __name__ == "__main__":
    sys.exit(main())
