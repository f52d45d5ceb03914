"""Class board page, driven through AppTest: runs saved in the history (as jobs save them) become dots on four
charts with a mean per setting, old runs fall outside the window, and an instructor's Clear (once confirmed)
empties the board. Each test has its own data folder, so only its own runs are on the board."""

import json
import sys
import time
import types
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the page imports `charts` from the repository root
    sys.path.insert(0, str(ROOT))

import charts  # noqa: E402
from kdcore import store as store_module  # noqa: E402
from tests.test_classboard import a_capacity_study, a_fraction_study, a_sweep, save_distill, save_study  # noqa: E402

PAGE = str(ROOT / "pages" / "7_Class_board.py")


@pytest.fixture
def history(tmp_path, monkeypatch):
    """The history the page reads: history.sqlite3 in this test's own KD_DATA_DIR."""
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    return store_module.open_store()


def board(minutes: int | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    if minutes is not None:
        at.select_slider(key="board_minutes").set_value(minutes).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts_by_title(at: AppTest) -> dict[str, dict]:
    figures = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {f["layout"]["title"]["text"]: f for f in figures}


def dots_and_means(fig: dict) -> tuple[list, list]:
    dots, means = fig["data"]
    return (
        list(zip(dots["x"], [round(y, 6) for y in dots["y"]])),
        list(zip(means["x"], [round(y, 6) for y in means["y"]], means["customdata"])),
    )


def test_the_board_draws_each_run_as_a_dot_with_the_mean_per_setting(history):
    save_distill(history, 0.01, temperature=2)
    save_distill(history, 0.02, temperature=4, student="mlp-tiny")
    save_distill(history, 0.03, temperature=4, alpha=0.7, fraction=0.5)
    save_study(history, "sweep", a_sweep([4.0, 8.0], [0.5], [[0.93], [0.91]]))
    save_study(history, "fraction", a_fraction_study([(0.05, 0.04), (1.0, 0.01)]))
    save_study(history, "capacity", a_capacity_study([("mlp-tiny", -0.01), ("mlp-medium", 0.02)]))
    at = board()
    figs = charts_by_title(at)
    assert list(figs) == list(charts.BOARD_TITLES.values())
    assert any("**6 runs** finished in the last 1 h" in m.value for m in at.markdown)

    dots, means = dots_and_means(figs["KD gain against temperature T"])
    assert dots == [(2.0, 1.0), (4.0, 2.0), (4.0, 3.0), (4.0, 3.0), (8.0, 1.0)]
    assert means == [(2.0, 1.0, 1), (4.0, 2.666667, 3), (8.0, 1.0, 1)]  # the count is in each mean's hover

    dots, means = dots_and_means(figs["KD gain against weight α of the teacher"])
    assert sorted(dots) == [(0.5, 1.0), (0.5, 1.0), (0.5, 2.0), (0.5, 3.0), (0.7, 3.0)]
    assert means == [(0.5, 1.75, 4), (0.7, 3.0, 1)]

    student = figs["KD gain against student size"]
    dots, means = dots_and_means(student)
    assert sorted(dots) == [
        ("mlp-medium", 1.0),
        ("mlp-medium", 2.0),
        ("mlp-medium", 3.0),
        ("mlp-tiny", -1.0),
        ("mlp-tiny", 2.0),
    ]
    assert [m[0] for m in means] == ["mlp-tiny", "mlp-medium"]  # smallest first, as the axis is drawn
    assert student["layout"]["xaxis"]["categoryarray"] == ["mlp-tiny", "mlp-medium"]

    dots, means = dots_and_means(figs["KD gain against fraction of training data"])
    assert sorted(dots) == [(0.05, 4.0), (0.5, 3.0), (1.0, 1.0), (1.0, 1.0), (1.0, 2.0)]
    assert figs["KD gain against fraction of training data"]["layout"]["xaxis"]["type"] == "log"


def test_an_empty_board_says_so_and_draws_empty_charts(history):
    at = board()
    assert any("No runs yet" in i.value for i in at.info)
    assert all(not f["data"][0]["x"] for f in charts_by_title(at).values())


def test_runs_older_than_the_window_are_left_off_until_it_widens(history, monkeypatch):
    now = time.time()
    with monkeypatch.context() as m:  # saved 90 minutes ago
        m.setattr(store_module, "time", types.SimpleNamespace(time=lambda: now - 90 * 60, strftime=time.strftime))
        save_distill(history, 0.05, temperature=6)
    save_distill(history, 0.01, temperature=2)
    at = board()
    assert [x for x, _ in dots_and_means(charts_by_title(at)["KD gain against temperature T"])[0]] == [2.0]
    at.select_slider(key="board_minutes").set_value(120).run()
    assert [x for x, _ in dots_and_means(charts_by_title(at)["KD gain against temperature T"])[0]] == [6.0, 2.0]
    assert any("**2 runs** finished in the last 2 h" in m.value for m in at.markdown)


def test_clear_asks_first_then_empties_the_board_and_keeps_the_history(history):
    save_distill(history, 0.01, temperature=2)
    save_distill(history, 0.02, temperature=4)
    at = board()
    at.button(key="board_clear").click().run()
    assert any("Hide every run so far" in w.value for w in at.warning)
    at.button(key="board_clear_no").click().run()  # cancelled: nothing changes
    assert len(dots_and_means(charts_by_title(at)["KD gain against temperature T"])[0]) == 2
    at.button(key="board_clear").click().run()
    at.button(key="board_clear_yes").click().run()
    assert not at.exception
    assert all(not f["data"][0]["x"] for f in charts_by_title(at).values())
    assert any("**0 runs** finished since the board was cleared" in m.value for m in at.markdown)
    assert history.count() == 2  # the History page still has both
    save_distill(history, 0.03, temperature=8)  # a run after the clear shows up
    at.run()
    assert dots_and_means(charts_by_title(at)["KD gain against temperature T"])[0] == [(8.0, 3.0)]
