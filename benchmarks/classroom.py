"""A class at once: K real browser sessions against one server, each distilling and each moving a slider.

Usage: python benchmarks/classroom.py [--sessions 8] [--epochs 20] [--scheduler local|dask] [--json out.json]

Each session (a Chromium browser context with two tabs) opens Distill with its own T (1, 2, 3, ...),
presses Start, and while the jobs run and queue it moves the Dark knowledge page's T slider every
second or so, timing each move from the key press until the page shows the soft targets at the new T.
Reported: how many sessions got their result (K/K), jobs per minute, and p50/p95 of the slider moves, and
of the time until the server had sent all of the page at the new T (read off the tab's websocket; the soft
targets near the page's top can show before the server has finished the rest of it).
With --scheduler dask the server sends jobs to a Dask scheduler with two single-thread workers started
here on 127.0.0.1 (and stopped afterwards); with local (default) to its own worker processes.
Teachers are trained once, untimed, before the sessions start. Needs /usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.browser import CHROMIUM, CHROMIUM_ARGS, DESKTOP, serve  # noqa: E402

SLIDER = '[data-testid="stSidebar"] [data-testid="stSlider"]'
# Which processes on this machine play which part, by their command line.
ROLES = {
    "web server": ("streamlit run",),
    "job workers": ("spawn_main", "kdcore.workers", "dask worker", "dask scheduler"),
    "browsers": ("chromium",),
}
DASK = Path(sys.executable).with_name("dask")


async def _idle(page, timeout_ms: int = 120_000) -> None:
    await page.wait_for_timeout(300)
    await page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)


class ServerAnswers:
    """When the server's whole-page script runs for one tab finished: the time its last message for the page
    reached the tab's websocket, whatever the browser has drawn by then."""

    def __init__(self, page):
        self.finished: list[float] = []
        page.on("websocket", lambda socket: socket.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        if isinstance(payload, bytes):
            msg = ForwardMsg()
            msg.ParseFromString(payload)
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:
                self.finished.append(time.perf_counter())

    async def after(self, started: float, timeout: float = 120.0) -> float:
        """Seconds from `started` to the end of the first whole-page run that finished after it."""
        while (done := next((t for t in self.finished if t >= started), None)) is None:
            if time.perf_counter() - started > timeout:
                raise TimeoutError(f"no script run finished within {timeout:g} s")
            await asyncio.sleep(0.02)
        return done - started


async def _move_slider(page, answers: ServerAnswers, temperature: float) -> tuple[float, float, float]:
    """Press an arrow key on the T slider; seconds until the soft targets at the new T are drawn, seconds until
    the server had sent all of the new page, and the new T."""
    thumb = page.locator(SLIDER).get_by_role("slider", name="Temperature T")
    up = temperature < 20.0
    new = temperature + (0.5 if up else -0.5)
    await thumb.focus()
    started = time.perf_counter()
    await thumb.press("ArrowRight" if up else "ArrowLeft")
    await page.get_by_text(f"Soft targets at T = {new:g} ", exact=False).first.wait_for(timeout=120_000)
    drawn = time.perf_counter() - started
    return drawn, await answers.after(started), new


async def _session(browser, url: str, index: int, epochs: int, out: dict) -> None:
    context = await browser.new_context(viewport=DESKTOP)
    distill, dark = await context.new_page(), await context.new_page()
    answers = ServerAnswers(dark)
    await distill.goto(f"{url}/Distill?T={index + 1}&epochs={epochs}")
    await distill.get_by_role("button", name="Start", exact=True).wait_for(timeout=120_000)
    await _idle(distill)
    await dark.goto(f"{url}/Dark_knowledge?T=4")
    await dark.get_by_text("Soft targets at T = 4 ", exact=False).first.wait_for(timeout=120_000)
    await _idle(dark)
    clicked = time.perf_counter()
    await distill.get_by_role("button", name="Start", exact=True).click()
    result = asyncio.ensure_future(distill.get_by_text("KD gain", exact=True).first.wait_for(timeout=900_000))
    temperature, moves, answered = 4.0, [], []
    while not result.done():
        seconds, server_s, temperature = await _move_slider(dark, answers, temperature)
        moves.append(seconds)
        answered.append(server_s)
        await asyncio.sleep(0.5 + (index % 3) * 0.25)
    try:
        await result
        out[index] = {"done_s": time.perf_counter() - clicked, "clicked": clicked, "moves": moves}
    except Exception as exc:
        out[index] = {"error": str(exc), "moves": moves}
    out[index]["answered"] = answered
    await context.close()


async def _classroom(url: str, sessions: int, epochs: int, screenshot: Path | None) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(_session(browser, url, i, epochs, out) for i in range(sessions)))
            if screenshot is not None:  # the class's runs on the board, as an instructor's projector shows them
                page = await browser.new_page(viewport=DESKTOP)
                await page.goto(f"{url}/Class_board")
                await page.get_by_text("KD gain against temperature T").first.wait_for(timeout=120_000)
                await _idle(page)
                await page.wait_for_timeout(2000)
                await page.screenshot(path=str(screenshot), full_page=True)
        finally:
            await browser.close()
    return out


@contextlib.contextmanager
def _dask_cluster(env: dict):
    """A scheduler and two single-thread workers on 127.0.0.1, stopped on exit; yields the address."""
    folder = Path(tempfile.mkdtemp(prefix="kd-dask-"))
    file = folder / "scheduler.json"
    env = {**env, "PYTHONPATH": str(ROOT)}
    quiet = {"cwd": ROOT, "env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(file)]
    procs = [subprocess.Popen([str(DASK), *scheduler, "--no-dashboard"], **quiet)]
    try:
        deadline = time.monotonic() + 60
        while not (file.exists() and file.stat().st_size):
            if time.monotonic() > deadline:
                raise RuntimeError("the Dask scheduler did not start")
            time.sleep(0.2)
        address = json.loads(file.read_text())["address"]
        for _ in range(2):
            worker = ["worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
            procs.append(subprocess.Popen([str(DASK), *worker], **quiet))
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)


class CpuMeter:
    """CPU seconds each role's processes use while the block runs (sampled every second, so processes that
    exit mid-run still count up to their last sample)."""

    def __init__(self):
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        for proc in psutil.process_iter(["cmdline", "cpu_times"]):
            cmd, times = " ".join(proc.info["cmdline"] or []), proc.info["cpu_times"]
            role = next((r for r, marks in ROLES.items() if any(m in cmd for m in marks)), None)
            if role is not None and times is not None:
                self.seen[proc.pid] = (role, times.user + times.system)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def __enter__(self) -> CpuMeter:
        self._sample()
        self.before = {pid: used for pid, (_, used) in self.seen.items()}
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall = time.perf_counter() - self.started

    def seconds(self) -> dict[str, float]:
        """Each role's CPU seconds over the block."""
        used = dict.fromkeys(ROLES, 0.0)
        for pid, (role, total) in self.seen.items():
            used[role] += total - self.before.get(pid, 0.0)
        return used

    def shares(self) -> dict[str, float]:
        """Each role's CPU seconds as a share of every core's time over the block."""
        return {role: seconds / (self.wall * psutil.cpu_count()) for role, seconds in self.seconds().items()}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th quantile of sorted `values`, the nearest observed one; None if there are none."""
    return values[min(len(values) - 1, round(q * (len(values) - 1)))] if values else None


def run(sessions: int = 8, epochs: int = 20, scheduler: str = "local", screenshot: Path | None = None) -> dict:
    """The classroom measured once; returns the per-session results and the summary."""
    env = {"KD_DATA_DIR": os.environ.setdefault("KD_DATA_DIR", tempfile.mkdtemp(prefix="kd-classroom-"))}
    subprocess.run(
        [sys.executable, "-m", "kdcore", "prepare", "--dataset", "mnist-sample"],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    with contextlib.ExitStack() as stack:
        if scheduler == "dask":
            env["KD_SCHEDULER"] = stack.enter_context(_dask_cluster({**os.environ, **env}))
        url = stack.enter_context(serve(env=env))
        with CpuMeter() as meter:
            out = asyncio.run(_classroom(url, sessions, epochs, screenshot))
        wall = meter.wall
    done = [o for o in out.values() if "done_s" in o]
    moves = sorted(m for o in out.values() for m in o["moves"])
    answered = sorted(a for o in out.values() for a in o["answered"])
    first = min((o["clicked"] for o in done), default=0.0)
    span = max((o["clicked"] + o["done_s"] - first for o in done), default=0.0)
    summary = {
        "scheduler": scheduler,
        "sessions": sessions,
        "results": len(done),
        "jobs_per_minute": 60 * len(done) / span if span else 0.0,
        "moves": len(moves),
        "p50_s": percentile(moves, 0.5),
        "p95_s": percentile(moves, 0.95),
        "server_p50_s": percentile(answered, 0.5),
        "server_p95_s": percentile(answered, 0.95),
        "wall_s": wall,
        "cpu_shares": meter.shares(),
        "errors": [o["error"] for o in out.values() if "error" in o],
    }
    return {"summary": summary, "sessions": out}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20, help="student epochs of each session's distillation")
    parser.add_argument("--scheduler", choices=("local", "dask"), default="local")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--screenshot", type=Path, default=None, help="save the Class board afterwards as this PNG")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        parser.error(f"needs Chromium at {CHROMIUM}: apt-get install -y chromium")
    s = run(args.sessions, args.epochs, args.scheduler, args.screenshot)["summary"]
    print(
        "| jobs on | sessions | got a result | jobs / min | slider moves | p50 s | p95 s | server done p50 / p95 s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| {s['scheduler']} | {s['sessions']} | {s['results']}/{s['sessions']} | {s['jobs_per_minute']:.1f} | "
        f"{s['moves']} | {s['p50_s'] or 0:.2f} | {s['p95_s'] or 0:.2f} | "
        f"{s['server_p50_s'] or 0:.2f} / {s['server_p95_s'] or 0:.2f} |"
    )
    print(
        "\nShare of the machine's CPU time while the sessions ran: "
        + ", ".join(f"{role} {share:.0%}" for role, share in s["cpu_shares"].items())
    )
    for error in s["errors"]:
        print(f"error: {error}")
    if args.json:
        args.json.write_text(json.dumps(s, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
