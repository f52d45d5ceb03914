"""History page: saved runs are listed, filtered, compared with overlaid curves and deleted; damage recovers."""

import json
import sqlite3
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from kdcore.experiments import default_config
from kdcore.store import open_store
from tests.synthetic import run_result

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "6_History.py")


def make_result(dataset="mnist-sample", temperature=4.0, alpha=0.5, scratch=0.80, distilled=0.85):
    return run_result(dataset, temperature=temperature, alpha=alpha, scratch=scratch, distilled=distilled, epochs=3)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    yield tmp_path
    st.cache_resource.clear()  # the page's store holds a connection to this test's file


@pytest.fixture
def two_runs(data_dir):
    store = open_store()
    ids = [
        store.save_run(make_result(scratch=0.80, distilled=0.85), owner=ME),
        store.save_run(make_result("cifar10", temperature=8.0, scratch=0.40, distilled=0.41), owner=ME),
    ]
    return store, ids


ME = "session-me"  # the browser session the tests act as; runs it saved are its own


def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=30)
    at.session_state["session_id"] = ME
    at.run()
    assert not at.exception
    return at


def listed(at: AppTest) -> list[int]:
    return at.dataframe[0].value["Run"].tolist()


def select(at: AppTest, run_ids: list[int]) -> AppTest:
    """Tick the table rows of these runs, as a click in the browser would."""
    rows = [listed(at).index(i) for i in run_ids]
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": rows, "columns": []}}
    at.run()
    assert not at.exception
    return at


def traces(at: AppTest) -> list[dict]:
    charts = at.get("plotly_chart")
    return json.loads(charts[0].proto.spec)["data"] if charts else []


def test_an_empty_history_says_where_runs_come_from(data_dir):
    at = open_page()
    assert "Distill" in at.info[0].value
    assert not at.dataframe and not at.error and not at.warning


def test_saved_runs_are_listed_newest_first_and_filters_reduce_them(two_runs):
    store, (mnist, cifar) = two_runs
    sweep = store.save_record(
        "sweep",
        "mnist-sample",
        default_config("mnist-sample").to_dict(),
        {"reading": "T = 4 did best.", "scratch_acc": 0.8},
        owner=ME,
    )
    at = open_page()
    assert listed(at) == [sweep, cifar, mnist]
    table = at.dataframe[0].value.set_index("Run")
    assert table.loc[mnist, "KD gain (points)"] == pytest.approx(5.0)
    assert table.loc[cifar, "Dataset"] == "cifar10" and table.loc[cifar, "T"] == 8.0

    at.selectbox(key="hist_dataset").set_value("cifar10").run()
    assert listed(at) == [cifar]
    at.selectbox(key="hist_dataset").set_value("All").run()
    at.selectbox(key="hist_kind").set_value("sweep").run()
    assert listed(at) == [sweep]
    at.selectbox(key="hist_kind").set_value("All").run()
    at.selectbox(key="hist_sort").set_value("kd_gain").run()
    assert listed(at) == [mnist, cifar, sweep]  # the sweep has no single KD gain, so it comes last
    at.radio(key="hist_order").set_value("Ascending").run()
    assert listed(at) == [cifar, mnist, sweep]


def test_selecting_two_runs_compares_them_and_overlays_their_curves(two_runs):
    _, (mnist, cifar) = two_runs
    at = select(open_page(), [mnist, cifar])
    assert at.subheader[0].value == f"Runs {mnist}, {cifar} side by side"
    settings = at.dataframe[1].value
    assert list(settings.columns) == [f"Run {mnist}", f"Run {cifar}"]
    assert settings.loc["Temperature T"].tolist() == ["4", "8"]

    lines = {t["name"]: t for t in traces(at)}
    assert set(lines) == {f"run {i} · {role}" for i in (mnist, cifar) for role in ("scratch", "distilled")}
    mine = lines[f"run {mnist} · distilled"]
    assert mine["y"] == pytest.approx([100 * (0.85 - 0.1 / e) for e in (1, 2, 3)])
    assert lines[f"run {mnist} · scratch"]["line"]["color"] == mine["line"]["color"]  # one colour per run
    assert lines[f"run {cifar} · distilled"]["line"]["color"] != mine["line"]["color"]
    assert mine["line"]["dash"] == "solid" and lines[f"run {mnist} · scratch"]["line"]["dash"] == "dash"
    assert len(at.get("download_button")) == 2  # each run's distilled student


def test_a_study_shows_its_reading_instead_of_curves(two_runs):
    store, (mnist, _) = two_runs
    sweep = store.save_record(
        "sweep",
        "mnist-sample",
        default_config("mnist-sample").to_dict(),
        {"reading": "The best setting was T = 4.", "scratch_acc": 0.8},
        owner=ME,
    )
    at = select(open_page(), [mnist, sweep])
    assert {t["name"] for t in traces(at)} == {f"run {mnist} · scratch", f"run {mnist} · distilled"}
    assert any(m.value == "The best setting was T = 4." for m in at.markdown)


def test_deleting_selected_runs_removes_their_rows_and_student_files(two_runs):
    store, (mnist, cifar) = two_runs
    student = store.get_run(mnist).student_path
    assert student.is_file()
    at = select(open_page(), [mnist])
    at.button(key="hist_delete").click().run()
    assert not at.exception
    assert listed(at) == [cifar]
    assert not student.exists() and store.get_run(cifar).student_path.is_file()
    assert "Deleted 1 run" in at.success[0].value
    assert not at.get("plotly_chart")  # the deleted run is no longer selected


def test_a_damaged_history_file_is_kept_aside_and_a_fresh_one_used(data_dir):
    (data_dir / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    at = open_page()
    assert "damaged" in at.warning[0].value
    assert "Distill" in at.info[0].value  # the fresh history is empty
    kept = list(data_dir.glob("history.sqlite3.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b"this is not a database")


def test_an_unreadable_history_shows_what_to_do_instead_of_a_traceback(data_dir):
    with sqlite3.connect(data_dir / "history.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 99")  # written by a newer app
    at = open_page()
    assert "newer" in at.error[0].value and "KD_DATA_DIR" in at.error[0].value


def test_a_run_naming_a_file_outside_the_history_deletes_the_run_but_not_the_file(two_runs, tmp_path_factory):
    store, (mnist, cifar) = two_runs
    victim = tmp_path_factory.mktemp("elsewhere") / "thesis.pdf"
    victim.write_text("years of work")
    with sqlite3.connect(store.path) as conn:  # a copied or hand-edited history
        conn.execute("UPDATE runs SET student_path = ? WHERE id = ?", (str(victim), mnist))
    at = select(open_page(), [mnist])
    at.button(key="hist_delete").click().run()
    assert not at.exception
    assert listed(at) == [cifar] and victim.read_text() == "years of work"
    assert str(victim) in at.warning[0].value and "not in" in at.warning[0].value


def test_other_sessions_runs_are_hidden_by_default_and_read_only_in_the_all_runs_view(two_runs, monkeypatch):
    store, (mnist, cifar) = two_runs
    theirs = store.save_run(make_result(scratch=0.7, distilled=0.75), owner="someone-else")
    monkeypatch.delenv("KD_INSTRUCTOR", raising=False)
    at = open_page()
    assert listed(at) == [cifar, mnist]
    at.segmented_control(key="hist_scope").set_value("All runs on this server").run()
    assert listed(at) == [theirs, cifar, mnist]
    assert not any(p.label.startswith("Delete") for p in at.get("popover"))
    assert any("Read-only" in c.value for c in at.caption)


def test_an_instructors_server_may_delete_any_run(two_runs, monkeypatch):
    store, _ = two_runs
    theirs = store.save_run(make_result(scratch=0.7, distilled=0.75), owner="someone-else")
    monkeypatch.setenv("KD_INSTRUCTOR", "1")
    at = open_page()
    at.segmented_control(key="hist_scope").set_value("All runs on this server").run()
    at = select(at, [theirs])
    at.button(key="hist_delete").click().run()
    assert not at.exception and theirs not in [r.id for r in store.list_runs()]
