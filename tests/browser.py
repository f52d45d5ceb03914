"""Runs the real app (`streamlit run app.py`) on a free localhost port and drives it in Debian's Chromium.

Used by tests/test_browser.py and, as a script, to make the README's screenshots:

    python tests/browser.py assets/screenshots     # needs /usr/bin/chromium and trained default teachers
    python tests/browser.py --methods assets/screenshots    # a DKD and a born-again run (distill-dkd/-self.png)
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
DESKTOP = {"width": 1400, "height": 1000}
NARROW = {"width": 420, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(env: dict | None = None, timeout: float = 90):
    """The app on http://127.0.0.1:<free port>; stopped on exit."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "app.py"),
        "--server.headless",
        "true",
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--browser.gatherUsageStats",
        "false",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"streamlit did not start on {url}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    """Until Streamlit has finished the current script run (its status widget disappears)."""
    page.wait_for_timeout(500)
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=timeout_ms)


def run_default_demo(page, url: str, timeout_ms: int = 600_000) -> None:
    """Home → "Run the default demo" → wait until the Distill page shows the KD gain and the model table."""
    page.goto(url)
    page.get_by_role("button", name="Run the default demo").click()
    page.get_by_text("KD gain", exact=True).first.wait_for(timeout=timeout_ms)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    wait_idle(page)


def open_link(page, url: str, ready_text: str, timeout_ms: int = 60_000) -> None:
    """Open a link in a fresh session and wait until the page shows `ready_text` and has finished its run."""
    page.goto(url)
    page.get_by_text(ready_text, exact=True).first.wait_for(timeout=timeout_ms)
    wait_idle(page)


PAGES = {
    "home": "Home",
    "lessons": "Lessons",
    "teachers": "Teachers",
    "distill": "Distill",
    "dark-knowledge": "Dark knowledge",
    "compare": "Compare",
    "experiments": "Experiments",
    "history": "History",
    "class-board": "Class board",
}


def close_sidebar_if_over_page(page) -> None:
    """On a phone the sidebar opens over the page and stays open after a link in it is followed: close it."""
    if (
        page.viewport_size["width"] < 640
        and page.get_by_test_id("stSidebar").get_attribute("data-collapsed") == "false"
    ):
        page.get_by_role("button", name="Collapse sidebar").click(force=True)
        page.wait_for_timeout(500)


def open_page(page, title: str) -> None:
    """Follow the sidebar link, which keeps the session (a new URL would start a fresh one)."""
    nav = page.get_by_test_id("stSidebarNav")
    if not nav.is_visible():
        page.get_by_test_id("stExpandSidebarButton").click()
    nav.get_by_role("link", name=title, exact=True).click()
    wait_idle(page)
    close_sidebar_if_over_page(page)
    page.wait_for_timeout(2000)  # a page that loads teachers shows its status widget only after a moment
    wait_idle(page)
    page.wait_for_timeout(1500)  # plotly draws after the script run ends


NARROW_PAGES = ("home", "distill", "lessons")


def capture_all(out_dir: Path) -> list[Path]:
    """A screenshot of every page after the default demo (desktop), and of Home, Distill and Lessons when narrow."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    with serve() as url, browser() as b:
        for viewport, suffix, names in ((DESKTOP, "", tuple(PAGES)), (NARROW, "-narrow", NARROW_PAGES)):
            page = b.new_page(viewport=viewport)
            run_default_demo(page, url)
            for name in names:
                if page.get_by_test_id("stSidebarNav").get_by_role("link", name=PAGES[name], exact=True).count():
                    open_page(page, PAGES[name])
                    if name == "distill" and suffix:  # on a phone, the result rather than the controls
                        page.get_by_text("KD gain", exact=True).first.evaluate(
                            "e => e.scrollIntoView({block: 'center'})"
                        )
                        page.wait_for_timeout(500)
                    shots.append(out_dir / f"{name}{suffix}.png")
                    page.screenshot(path=str(shots[-1]))
            page.close()
    return shots


# A run of each method with its own chart (kdcore.methods), made by `python tests/browser.py --methods DIR`:
# the link sets the method, Start runs it, and the shot is centred on what that method adds to the page.
METHOD_SHOTS = {
    "distill-dkd": ("method=dkd&epochs=5", "DKD's two parts."),
    "distill-self": ("method=self&generations=2&epochs=3", "Born-again generations."),
}


def capture_methods(out_dir: Path) -> list[Path]:
    """The Distill page after a DKD and a born-again run on mnist-sample (desktop)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shots = []
    with serve() as url, browser() as b:
        for name, (query, focus) in METHOD_SHOTS.items():
            page = b.new_page(viewport=DESKTOP)
            open_link(page, f"{url}/Distill?{query}", "Distill")
            page.get_by_role("button", name="Start", exact=True).click()
            page.get_by_text("KD gain", exact=True).first.wait_for(timeout=600_000)
            wait_idle(page)
            page.wait_for_timeout(2000)  # plotly draws after the script run ends
            page.get_by_text(focus).first.evaluate("e => e.scrollIntoView({block: 'center'})")
            page.mouse.move(1, DESKTOP["height"] - 1)  # off the charts, whose toolbars show on hover
            page.wait_for_timeout(500)
            shots.append(out_dir / f"{name}.png")
            page.screenshot(path=str(shots[-1]))
            page.close()
    return shots


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--methods":
        for shot in capture_methods(Path(sys.argv[2] if len(sys.argv) > 2 else ROOT / "assets" / "screenshots")):
            print(shot)
        sys.exit()
    for shot in capture_all(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "assets" / "screenshots")):
        print(shot)
