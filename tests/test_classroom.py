"""A two-session classroom in real Chromium: the small version of benchmarks/classroom.py (which times it)."""

from pathlib import Path

import pytest

from tests.browser import CHROMIUM

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"needs Chromium at {CHROMIUM}")


def test_two_sessions_distilling_at_once_both_get_their_result_while_moving_a_slider(fast_run):
    from benchmarks import classroom

    out = classroom.run(sessions=2, epochs=2)
    summary = out["summary"]
    assert summary["errors"] == [] and summary["results"] == 2
    # Each session moved the Dark knowledge slider while the jobs ran, and every move was drawn.
    assert all(session["moves"] for session in out["sessions"].values())
    assert summary["p95_s"] is not None and summary["jobs_per_minute"] > 0
    # Each move also says when the server had sent all of the new page, read off the tab's websocket.
    assert all(len(s["answered"]) == len(s["moves"]) for s in out["sessions"].values())
    assert 0 < summary["server_p50_s"] <= summary["server_p95_s"]
    # The report says where the machine's CPU went: the server drew the pages, the workers trained, the browsers drew.
    shares = summary["cpu_shares"]
    assert set(shares) == {"web server", "job workers", "browsers"} and all(0 < s < 1 for s in shares.values())
