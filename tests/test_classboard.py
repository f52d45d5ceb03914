"""The class board: the runs of the last N minutes as KD gain against T, α, student size and fraction.

Runs are saved through the real RunStore with the metrics a job stores (a study's to_json(), a distillation's
rows and kd_gain), and the clock the store stamps them with is set by the test.
"""

import json
import time
import types

import pytest

from kdcore import classboard, studies
from kdcore import store as store_module
from kdcore.experiments import default_config
from kdcore.store import RunStore

T0 = 1_700_000_000.0


@pytest.fixture
def clock(monkeypatch):
    """The time the store stamps on each saved run; tests move it."""
    now = [T0]
    monkeypatch.setattr(store_module, "time", types.SimpleNamespace(time=lambda: now[0], strftime=time.strftime))
    return now


@pytest.fixture
def history(tmp_path, clock):
    return RunStore(tmp_path / "history.sqlite3")


def save_distill(store, gain, partial=False, **config):
    cfg = default_config("mnist-sample", **config)
    scratch = 0.90
    rows = [
        {"role": "scratch", "accuracy": scratch},
        {"role": "distilled", "accuracy": scratch + gain},
    ]
    metrics = {"rows": rows, "kd_gain": gain, "seconds": 3.0, "classes": [str(d) for d in range(10)]}
    return store.save_record("distill", cfg.dataset, cfg.to_dict(), metrics, None, partial)


def save_study(store, kind, result):
    return store.save_record(
        kind, result.config.dataset, result.config.to_dict(), result.to_json(), None, result.partial
    )


def a_sweep(temperatures, alphas, accuracy, scratch=0.90):
    return studies.SweepResult(default_config("mnist-sample"), temperatures, alphas, accuracy, scratch, 0.98)


def a_fraction_study(gains):
    points = [studies.FractionPoint(f, 100, 10, 10, scratch_acc=0.80, distilled_acc=0.80 + g) for f, g in gains]
    return studies.FractionResult(default_config("mnist-sample"), points, 0.98)


def a_capacity_study(gains):
    points = [studies.CapacityPoint(s, 1000, scratch_acc=0.85, distilled_acc=0.85 + g) for s, g in gains]
    return studies.CapacityResult(default_config("mnist-sample"), points, 10**6, 0.98)


def means(series):
    return {m.x: (round(m.gain, 6), m.count) for m in series.means}


def test_an_empty_history_gives_an_empty_board(history):
    b = classboard.board(history, now=T0)
    assert b.empty and all(not s.dots and not s.means for s in b.series.values())
    assert list(b.series) == ["temperature", "alpha", "student", "fraction"]


def test_a_class_running_different_temperatures_draws_the_t_sweep(history, clock):
    for i, (t, gain) in enumerate([(1, 0.002), (4, 0.016), (4, 0.012), (8, 0.010), (20, 0.004)]):
        clock[0] = T0 + i
        save_distill(history, gain, temperature=t)
    b = classboard.board(history, now=T0 + 60)
    t = b.series["temperature"]
    assert [d.x for d in t.dots] == [1.0, 4.0, 4.0, 8.0, 20.0]
    assert means(t) == {1.0: (0.002, 1), 4.0: (0.014, 2), 8.0: (0.01, 1), 20.0: (0.004, 1)}
    assert t.order == (1.0, 4.0, 8.0, 20.0)
    # Each distillation is also one dot at its own α, student and fraction.
    assert means(b.series["alpha"]) == {0.5: (0.0088, 5)}
    assert means(b.series["student"]) == {"mlp-medium": (0.0088, 5)}
    assert means(b.series["fraction"]) == {1.0: (0.0088, 5)}
    assert b.runs == 5


def test_only_runs_of_the_last_n_minutes_are_shown(history, clock):
    for minute, gain in [(0, 0.01), (30, 0.02), (70, 0.03)]:
        clock[0] = T0 + minute * 60
        save_distill(history, gain)
    now = T0 + 80 * 60
    assert [d.gain for d in classboard.board(history, now=now).series["alpha"].dots] == [0.02, 0.03]
    assert [d.gain for d in classboard.board(history, minutes=15, now=now).series["alpha"].dots] == [0.03]
    assert [d.gain for d in classboard.board(history, minutes=120, now=now).series["alpha"].dots] == [
        0.01,
        0.02,
        0.03,
    ]


def test_clearing_hides_earlier_runs_and_deletes_nothing(history, clock):
    save_distill(history, 0.01, temperature=2)
    clock[0] = T0 + 10
    at = classboard.clear(history, before=T0 + 5)
    save_distill(history, 0.02, temperature=6)
    assert at == T0 + 5 and classboard.cleared_at(history) == T0 + 5
    b = classboard.board(history, now=T0 + 60)
    assert [d.x for d in b.series["temperature"].dots] == [6.0]
    assert b.cleared_at == T0 + 5 and b.since == T0 + 5
    assert history.count() == 2  # the history keeps both runs
    # Clearing is remembered by every session and after a restart: it is a file beside the history.
    again = RunStore(history.path)
    assert [d.x for d in classboard.board(again, now=T0 + 60).series["temperature"].dots] == [6.0]
    assert json.loads(classboard.cleared_path(history).read_text()) == {"cleared_at": T0 + 5}
    assert not list(history.path.parent.glob("*.tmp"))


def test_clear_defaults_to_now(history, clock, monkeypatch):
    monkeypatch.setattr(classboard.time, "time", lambda: T0 + 100)
    save_distill(history, 0.01)
    assert classboard.clear(history) == T0 + 100
    assert classboard.board(history, now=T0 + 200).empty


@pytest.mark.parametrize("content", ["{not json", '{"cleared_at": "yesterday"}', "[]", '{"cleared_at": NaN}'])
def test_an_unreadable_cleared_file_shows_every_recent_run(history, content):
    save_distill(history, 0.01)
    classboard.cleared_path(history).write_text(content)
    assert classboard.cleared_at(history) is None
    assert classboard.board(history, now=T0 + 60).runs == 1


def test_bad_arguments_are_named(history):
    with pytest.raises(ValueError, match="minutes"):
        classboard.board(history, minutes=0)
    with pytest.raises(ValueError, match="minutes"):
        classboard.board(history, minutes=10 * 24 * 60)
    with pytest.raises(ValueError, match="before"):
        classboard.clear(history, before=float("nan"))


def test_a_sweep_adds_its_cells_and_alpha_zero_says_nothing_about_t(history):
    result = a_sweep([1.0, 4.0], [0.0, 0.5], [[0.90, 0.92], [0.90, 0.95]])
    save_study(history, "sweep", result)
    b = classboard.board(history, now=T0 + 60)
    assert means(b.series["temperature"]) == {1.0: (0.02, 1), 4.0: (0.05, 1)}
    assert means(b.series["alpha"]) == {0.0: (0.0, 2), 0.5: (0.035, 2)}
    assert not b.series["student"].dots and not b.series["fraction"].dots


def test_a_stopped_sweep_adds_only_its_finished_cells(history):
    result = a_sweep([1.0, 4.0], [0.5], [[0.93], [None]])
    result.partial = True
    save_study(history, "sweep", result)
    assert means(classboard.board(history, now=T0 + 60).series["temperature"]) == {1.0: (0.03, 1)}


def test_fraction_and_capacity_studies_add_their_points_in_axis_order(history):
    save_study(history, "fraction", a_fraction_study([(0.05, 0.05), (1.0, 0.01)]))
    save_study(history, "capacity", a_capacity_study([("mlp-medium", 0.02), ("mlp-tiny", -0.01)]))
    save_distill(history, 0.03, student="cnn-small", fraction=0.05)
    save_distill(history, 0.01, student="mlp-small")
    b = classboard.board(history, now=T0 + 60)
    assert means(b.series["fraction"]) == {0.05: (0.04, 2), 1.0: (0.01, 2)}
    assert b.series["student"].order == ("mlp-tiny", "mlp-small", "mlp-medium", "cnn-small")
    assert means(b.series["student"])["mlp-medium"] == (0.02, 1)


def test_runs_that_measure_something_else_are_left_out(history):
    save_distill(history, 0.02, partial=True)  # stopped: its students did not finish training
    save_distill(history, 0.02, exclude_class=3)  # a missing-class experiment, not the same gain
    save_distill(history, 0.0, alpha=0.0)  # α = 0: the scratch student itself, T cannot matter
    cfg = default_config("mnist-sample")
    history.save_record("missing-class", "mnist-sample", cfg.to_dict(), {"rows": [], "kd_gain": None})
    history.save_record("distill", "mnist-sample", cfg.to_dict(), {"kd_gain": "lots"})  # malformed
    history.save_record("sweep", "mnist-sample", cfg.to_dict(), {"temperatures": 4, "gain": [[0.1]]})
    history.save_record("capacity", "mnist-sample", cfg.to_dict(), {"points": [{"student": "resnet", "gain": 0.1}]})
    b = classboard.board(history, now=T0 + 60)
    assert b.runs == 1
    assert not b.series["temperature"].dots
    assert means(b.series["alpha"]) == {0.0: (0.0, 1)}


def test_a_dataset_filter_keeps_one_dataset(history):
    save_distill(history, 0.01)
    cfg = default_config("mnist", epochs=5)
    history.save_record("distill", "mnist", cfg.to_dict(), {"kd_gain": 0.05})
    assert classboard.board(history, now=T0 + 60).runs == 2
    only = classboard.board(history, now=T0 + 60, dataset="mnist")
    assert only.runs == 1 and [d.gain for d in only.series["alpha"].dots] == [0.05]


def test_five_hundred_runs_give_the_right_series_from_one_query(history, clock, monkeypatch):
    temperatures, students = (1.0, 2.0, 4.0, 8.0, 20.0), ("mlp-tiny", "mlp-small", "mlp-medium")
    expected_t: dict[float, list[float]] = {}
    expected_s: dict[str, list[float]] = {}
    expected_f: dict[float, list[float]] = {}
    for i in range(500):
        clock[0] = T0 + i
        kind = ("distill", "distill", "sweep", "fraction", "capacity")[i % 5]
        if kind == "distill":
            t, s, gain = temperatures[(i // 5) % 5], students[i % 3], (i % 7) / 1000
            save_distill(history, gain, temperature=t, student=s)
            expected_t.setdefault(t, []).append(gain)
            expected_s.setdefault(s, []).append(gain)
            expected_f.setdefault(1.0, []).append(gain)
        elif kind == "sweep":
            accs = [[0.90 + (i % 11) / 1000 + j / 100] for j in range(2)]
            save_study(history, "sweep", a_sweep([2.0, 8.0], [0.5], accs))
            for t, row in zip((2.0, 8.0), accs):
                expected_t.setdefault(t, []).append(row[0] - 0.90)
        elif kind == "fraction":
            gains = [(0.05, (i % 13) / 1000), (1.0, 0.001)]
            save_study(history, "fraction", a_fraction_study(gains))
            for f, g in gains:
                expected_f.setdefault(f, []).append(g)
        else:
            gains = [("mlp-tiny", -(i % 3) / 1000), ("mlp-medium", (i % 5) / 1000)]
            save_study(history, "capacity", a_capacity_study(gains))
            for s, g in gains:
                expected_s.setdefault(s, []).append(g)
    calls = []
    monkeypatch.setattr(history, "get_run", lambda *a: calls.append(a))
    real = history.records_since
    monkeypatch.setattr(history, "records_since", lambda *a: calls.append(a) or real(*a))
    b = classboard.board(history, minutes=60, now=T0 + 600)
    assert len(calls) == 1  # one query, no per-run reads
    assert b.runs == 500
    for series, expected in ((b.series["temperature"], expected_t), (b.series["student"], expected_s)):
        got = {m.x: (m.gain, m.count) for m in series.means}
        assert got == {x: (pytest.approx(sum(g) / len(g)), len(g)) for x, g in expected.items()}
    got_f = {m.x: (m.gain, m.count) for m in b.series["fraction"].means}
    assert got_f == {x: (pytest.approx(sum(g) / len(g)), len(g)) for x, g in expected_f.items()}
    assert b.series["temperature"].order == (1.0, 2.0, 4.0, 8.0, 20.0)
    assert b.series["student"].order == students
    assert len(b.series["temperature"].dots) == 200 + 100 * 2


def test_records_since_reads_one_window_of_the_chosen_kinds(history, clock):
    for i, kind in enumerate(("distill", "sweep", "missing-class", "distill")):
        clock[0] = T0 + i
        history.save_record(kind, "mnist-sample", {"i": i}, {"kd_gain": i})
    got = history.records_since(T0, T0 + 3, ("distill", "sweep"))
    assert [(r.kind, r.config["i"], r.metrics["kd_gain"]) for r in got] == [("sweep", 1, 1), ("distill", 3, 3)]
    assert all(r.curves == {} and r.student_path is None for r in got)
