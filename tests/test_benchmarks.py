"""The benchmark scripts run end to end, time an honestly cold kdcore run, and reject bad arguments."""

import importlib.util
import json
from pathlib import Path

import pytest

from kdcore import experiments

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def distill_speed():
    return _script("distill_speed")


def test_a_short_run_prints_the_table_and_writes_comparable_results(distill_speed, fast_config, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        distill_speed.main(
            ["--datasets", "mnist-sample", "--repeats", "1", "--epochs", "2", "--threads", "1", "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "| mnist-sample (4,000 train) | 2 |" in printed
    (row,) = json.loads(out.read_text())["results"]
    assert row["teachers"] == list(fast_config.teachers) and row["student"] == fast_config.student
    for side in ("kdcore_cold", "kdcore_warm", "reference"):
        assert len(row["runs"][side]) == 1 and row["runs"][side][0]["seconds"] > 0
    # Same student, init, teachers and epochs on both sides: both learn, to about the same accuracy.
    assert row["kdcore_acc"] > 0.85 and row["reference_acc"] > 0.85
    assert abs(row["diff_points"]) < 2.0
    # Warm reuses exactly the logits the cold run recomputed, so its student is the same one.
    assert row["runs"]["kdcore_warm"][0]["accuracy"] == row["runs"]["kdcore_cold"][0]["accuracy"]


def test_a_cold_run_refuses_to_time_when_there_are_no_logits_to_delete(distill_speed, fast_config):
    _, ens = experiments.load_ensemble(fast_config)
    distill_speed.delete_cached_logits(ens)
    with pytest.raises(RuntimeError, match="no cached logits"):
        distill_speed.delete_cached_logits(ens)  # a second delete finds nothing: the layout check works
    experiments.load_ensemble(fast_config)  # recompute them for the tests that follow


@pytest.mark.parametrize(
    "args", [["--datasets", "imagenet"], ["--repeats", "0"], ["--epochs", "0"], ["--threads", "0"], ["--workers", "-1"]]
)
def test_bad_arguments_exit_2_naming_the_option(distill_speed, args, capsys):
    with pytest.raises(SystemExit) as exc:
        distill_speed.main(args)
    assert exc.value.code == 2
    assert args[0] in capsys.readouterr().err


def test_the_demo_timer_rejects_zero_repeats_before_starting_anything(capsys):
    with pytest.raises(SystemExit) as exc:
        _script("demo_time").main(["--repeats", "0"])
    assert exc.value.code == 2 and "--repeats must be >= 1" in capsys.readouterr().err


def test_the_teacher_lanes_benchmark_prints_both_ways_idle_and_beside_a_busy_neighbour(capsys):
    args = ["--arch", "cnn-deep", "--dataset", "mnist-sample", "--images", "256", "--repeats", "1"]
    assert _script("teacher_lanes").main(args) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| idle", "| one core busy"))]
    assert len(rows) == 2
    for row in rows:
        one, two, ratio = row.strip("|").split("|")[1:]
        assert float(one) > 0 and float(two) > 0
        assert float(ratio.strip().rstrip("x")) == pytest.approx(float(two) / float(one), rel=0.02)
