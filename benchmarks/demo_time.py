"""Times the Home page's "Run the default demo" in the real app, in Chromium, as a user waits for it.

Each run starts `streamlit run app.py`, opens Home, clicks the button and stops the clock when the Distill
page shows the KD gain and the model table. *First run* uses an empty data dir, so the teachers are trained
too (what a new user sees once); *later runs* reuse one data dir whose teachers are already cached (every
run after that). Medians of --repeats runs; needs /usr/bin/chromium (Debian's `chromium` package).

    python benchmarks/demo_time.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.browser import CHROMIUM, DESKTOP, browser, run_default_demo, serve


def time_demo(data_dir: str) -> float:
    """Seconds from the click on Home to the finished Distill page, with a fresh server on data_dir."""
    with serve(env={"KD_DATA_DIR": data_dir}) as url, browser() as b:
        page = b.new_page(viewport=DESKTOP)
        started = time.perf_counter()
        run_default_demo(page, url)
        return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each kind; the table shows the median")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    if not Path(CHROMIUM).exists():
        parser.error(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    first = [time_demo(tempfile.mkdtemp(prefix="kd-demo-")) for _ in range(args.repeats)]
    cached_dir = tempfile.mkdtemp(prefix="kd-demo-")
    time_demo(cached_dir)  # trains this dir's teachers; not timed
    later = [time_demo(cached_dir) for _ in range(args.repeats)]
    print(f"Default demo on {os.cpu_count()} CPUs, median of {args.repeats} runs (click to finished table):\n")
    print("| run | median s | runs (s) |\n|---|---:|---|")
    for name, runs in (("first run (trains the teachers)", first), ("later runs (teachers cached)", later)):
        print(f"| {name} | {statistics.median(runs):.0f} | {', '.join(f'{s:.0f}' for s in runs)} |")
    if args.json:
        args.json.write_text(json.dumps({"cpus": os.cpu_count(), "first": first, "later": later}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
