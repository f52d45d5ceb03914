"""The default preset's warm distillation on an idle machine and beside a busy neighbour.

Usage: python benchmarks/under_load.py [--repeats 3] [--skip-app] [--json out.json]

Three ways a user meets the same warm run (teachers, their logits and latencies, and the decoded
sample already in the data folder):
  cli     `python -m kdcore distill --dataset mnist-sample` as a whole new process (imports included);
  worker  the same job submitted to an already running local worker process (what the app does);
  app     the real app in Chromium: the click on Distill's Start to the KD gain on the page, on a warm
          server (needs /usr/bin/chromium; --skip-app leaves it out).
Each is timed idle and with a neighbour process spinning on one core (`python -c 'while 1: pass'`,
ended afterwards), --repeats times; the table shows medians and the busy/idle ratio of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.classroom import ROLES, CpuMeter  # noqa: E402
from benchmarks.threads import Neighbour  # noqa: E402
from kdcore import budget, experiments, jobs  # noqa: E402
from kdcore.workers import ProcessBackend  # noqa: E402
from tests.browser import CHROMIUM, DESKTOP, browser, serve, wait_idle  # noqa: E402

TARGETS = {"cli_idle_s": 5.0, "cli_ratio": 1.5, "app_idle_s": 5.0}


def time_cli() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "kdcore", "distill", "--dataset", "mnist-sample"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def time_worker(runner: jobs.JobRunner) -> float:
    spec = jobs.JobSpec(jobs.JobKind.DISTILL, experiments.default_config("mnist-sample"), record=False)
    started = time.perf_counter()
    runner.submit(spec).result(timeout=600)
    return time.perf_counter() - started


def time_app(page, url: str, cpu: list[dict] | None = None) -> float:
    """From the click on Start on a warm server's freshly opened Distill page until the KD gain shows.

    Each run opens the page anew (untimed), so the previous run's KD gain is not on it when Start is pressed.
    `cpu` gets the CPU seconds the web server, the job workers and the browser used meanwhile.
    """
    page.goto(url + "/Distill")
    page.get_by_role("button", name="Start", exact=True).wait_for(timeout=120_000)
    wait_idle(page)
    with CpuMeter() as meter:
        page.get_by_role("button", name="Start", exact=True).click()
        started = time.perf_counter()
        page.get_by_text("KD gain", exact=True).first.wait_for(timeout=300_000)
        elapsed = time.perf_counter() - started
    if cpu is not None:
        cpu.append(meter.seconds())
    wait_idle(page)
    return elapsed


def measure(name: str, fn, repeats: int) -> dict:
    idle = [fn() for _ in range(repeats)]
    with Neighbour():
        busy = [fn() for _ in range(repeats)]
    row = {"idle": idle, "busy": busy, "idle_s": statistics.median(idle), "busy_s": statistics.median(busy)}
    row["ratio"] = row["busy_s"] / row["idle_s"]
    print(
        f"| {name} | {row['idle_s']:.1f} | {row['busy_s']:.1f} | {row['ratio']:.2f}x | "
        f"{', '.join(f'{s:.1f}' for s in idle)} | {', '.join(f'{s:.1f}' for s in busy)} |",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-app", action="store_true", help="leave out the browser measurement")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("KD_DATA_DIR", tempfile.mkdtemp(prefix="kd-under-load-"))
    print(f"{budget.cores()} cores, data dir {os.environ['KD_DATA_DIR']}; warming the caches (not timed)…", flush=True)
    time_cli()  # trains and caches the default teachers, their logits and latencies, and the decoded sample
    results = {}
    print("\n| run | idle s | busy s | busy / idle | idle runs (s) | busy runs (s) |\n|---|---:|---:|---:|---|---|")
    results["cli"] = measure("whole CLI process", time_cli, args.repeats)
    runner = jobs.JobRunner(ProcessBackend(2))
    try:
        time_worker(runner)  # the worker's first job pays nothing the others do not, but warms its caches
        results["worker"] = measure("job in a running worker", lambda: time_worker(runner), args.repeats)
    finally:
        runner.shutdown()
    if not args.skip_app and Path(CHROMIUM).exists():
        with serve() as url, browser() as b:
            page = b.new_page(viewport=DESKTOP)
            time_app(page, url)  # the server's first run loads its pages and the teachers' rows
            cpu: list[dict] = []
            results["app"] = measure("app: click Start to KD gain", lambda: time_app(page, url, cpu), args.repeats)
            # The idle runs: what each part of the app cost while one user waited for a result.
            results["app"]["cpu_s"] = {role: statistics.median(c[role] for c in cpu[: args.repeats]) for role in ROLES}
            print(
                "CPU seconds per idle app run (median): "
                + ", ".join(f"{role} {s:.1f}" for role, s in results["app"]["cpu_s"].items()),
                flush=True,
            )
    checks = {
        "cli_idle_s": results["cli"]["idle_s"] <= TARGETS["cli_idle_s"],
        "cli_ratio": results["cli"]["ratio"] <= TARGETS["cli_ratio"],
    }
    if "app" in results:
        checks["app_idle_s"] = results["app"]["idle_s"] <= TARGETS["app_idle_s"]
    print("\nTargets: " + ", ".join(f"{k} <= {TARGETS[k]:g}: {'met' if ok else 'NOT met'}" for k, ok in checks.items()))
    if args.json:
        args.json.write_text(json.dumps({"cores": budget.cores(), "results": results, "targets": checks}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
