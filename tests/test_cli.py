"""`python -m kdcore`: dataset states, the model zoo, clear argument errors, and distill as table or JSON.

The end-to-end checks run the real command in a subprocess; argument errors, which all go through
the same `main()`, are checked in-process so each case costs milliseconds instead of a torch import.
"""

import json
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from kdcore import cli, models
from kdcore import data as kdata
from kdcore import events as ev

ROOT = Path(__file__).resolve().parent.parent
STATES = {"offline-sample", "ready", "will-download", "unavailable"}


def kdcore(*args, timeout=180):
    """Run the CLI as a user would, with the test session's data folder (and its cached teachers)."""
    # One intra-op thread like the rest of the suite (conftest): two busy cores make torch's default far slower.
    env = {**os.environ, "KD_DATA_DIR": os.environ["KD_DATA_DIR"], "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kdcore", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def error_lines(stderr):
    return [line for line in stderr.splitlines() if "error:" in line]


# --------------------------------------------------------------------------- datasets and models


def test_datasets_lists_every_dataset_with_its_state():
    proc = kdcore("datasets")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split()[1] for line in proc.stdout.splitlines() if line.strip()}
    assert list(lines) == list(kdata.DATASETS)
    assert lines["mnist-sample"] == "offline-sample"
    assert set(lines.values()) <= STATES


def test_models_lists_teachers_and_students_with_parameter_counts(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    teachers_part, students_part = out.split("students:")
    assert teachers_part.startswith("teachers:")
    for spec in models.available():
        part = teachers_part if spec.role == "teacher" else students_part
        params = sum(p.numel() for p in models.build(spec.name, "mnist-sample").parameters())
        assert re.search(rf"^\s+{re.escape(spec.name)}\s+{params:,} params", part, re.M), spec.name


# --------------------------------------------------------------------------- argument errors

BAD_ARGUMENTS = [
    (["--dataset", "imagenet"], ["--dataset", "mnist-sample", "mnist", "fashion-mnist", "cifar10"]),
    (["--student", "resnet"], ["--student", "mlp-tiny", "mlp-small", "mlp-medium", "cnn-tiny", "cnn-medium"]),
    (["--temperature", "0"], ["temperature", "0.1 to 100"]),
    (["--seed", "1e23"], ["seed", "4,294,967,295"]),
    (["--seed", str(2**70)], ["seed", "4,294,967,295"]),
    (["--teachers", "cnn-wide@" + "1" + "0" * 23], ["teacher seed", "4,294,967,295"]),
    (["--seed", "2.5"], ["seed", "whole number"]),
    (["--temperature", "warm"], ["temperature", "number"]),
    (["--alpha", "1.5"], ["alpha", "[0, 1]"]),
    (["--fraction", "0"], ["fraction", "(0, 1]"]),
    (["--exclude-class", "12"], ["exclude-class", "0 to 9"]),
    (["--epochs", "0"], ["epochs", "1 to 500"]),
    (["--teachers", "cnn-wide,vit"], ["'vit'", "cnn-wide", "cnn-deep", "mlp-wide"]),
    (["--teachers", "cnn-wide,cnn-wide"], ["same member twice", "@1"]),
    (["--combine", "median"], ["--combine", "prob", "logit"]),
    (["--method", "fitnets"], ["--method", "kd", "dkd", "ta", "self"]),
    (["--method", "dkd", "--beta-nc", "-1"], ["beta-nc", "0 to 100"]),
    (["--method", "dkd", "--alpha-tc", "lots"], ["alpha-tc", "number"]),
    (["--method", "self", "--generations", "4"], ["generations", "1 to 3"]),
    (["--method", "self", "--generations", "1.5"], ["generations", "whole number"]),
    (["--method", "ta", "--assistant", "mlp-tiny"], ["assistant 'mlp-tiny'", "not larger", "mlp-wide"]),
    (["--assistant", "resnet"], ["--assistant", "mlp-wide", "cnn-medium"]),
    (["--beta-nc", "2"], ["--beta-nc", "--method dkd"]),
    (["--method", "dkd", "--generations", "2"], ["--generations", "--method self"]),
]


@pytest.mark.parametrize("args,expected", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_a_bad_argument_exits_2_with_one_error_line_listing_the_allowed_values(args, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["distill", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    (line,) = error_lines(err)
    assert all(word in line for word in expected), line
    assert "Traceback" not in err


def test_the_real_command_exits_2_on_a_bad_argument():
    proc = kdcore("distill", "--alpha", "1.5")
    assert proc.returncode == 2
    assert proc.stdout == ""
    (line,) = error_lines(proc.stderr)
    assert "alpha must be in [0, 1]" in line and "Traceback" not in proc.stderr


def test_an_unavailable_dataset_is_a_one_line_error_with_exit_code_1(tmp_path, monkeypatch, capsys):
    def offline(url, timeout):
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(kdata, "_urlopen", offline)
    monkeypatch.setattr(kdata, "_can_connect", lambda host, port, timeout: False)
    assert cli.main(["teachers", "--dataset", "mnist", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "mnist" in err and "Traceback" not in err


# --------------------------------------------------------------------------- distill


@pytest.fixture(scope="module")
def distill_json(fast_run):
    """One real `distill --json` run; fast_run has already cached its 1-epoch teachers."""
    return kdcore("distill", "--dataset", "mnist-sample", "--teacher-epochs", "1", "--epochs", "2", "--json")


def test_distill_json_prints_exactly_one_json_object(distill_json):
    assert distill_json.returncode == 0, distill_json.stderr
    result = json.loads(distill_json.stdout)  # fails on any progress text mixed into stdout
    assert result["dataset"] == "mnist-sample"
    assert result["config"]["epochs"] == 2 and result["config"]["teacher_epochs"] == 1
    assert [m["role"] for m in result["models"]] == ["teacher"] * 3 + ["ensemble", "scratch", "distilled"]
    acc = {m["role"]: m["accuracy"] for m in result["models"]}
    assert result["kd_gain"] == pytest.approx(acc["distilled"] - acc["scratch"])
    assert acc["ensemble"] > 0.5 and acc["scratch"] > 0.5 and acc["distilled"] > 0.5


def test_distill_json_still_shows_progress_on_stderr(distill_json):
    # Scripts read stdout; the person waiting at the terminal still sees how far training got.
    assert distill_json.returncode == 0, distill_json.stderr
    assert "distilled" in distill_json.stderr and "scratch" in distill_json.stderr


def test_the_progress_bar_shows_each_students_last_epoch_while_the_next_one_runs(capsys):
    # Slow epochs (CIFAR) report steps between epochs; the bar keeps the last finished epoch's accuracy.
    printer = cli.ProgressPrinter()
    common = {"epochs": 4, "loss": 1.0, "hard": 1.0, "soft": 0.5}
    for e in (
        ev.StudentsStart(models=("scratch", "distilled"), epochs=4, train_size=1000),
        ev.Epoch(model="scratch", epoch=1, test_acc=0.625, **common),
        ev.Epoch(model="distilled", epoch=1, test_acc=0.75, **common),
        ev.Step(model="scratch", epoch=1.5, **common),
        ev.Step(model="distilled", epoch=1.5, **common),
    ):
        printer(e)
    printer.close()
    err = capsys.readouterr().err
    assert "scratch 62.5%" in err and "distilled 75.0%" in err


def test_distill_table_shows_every_model_and_the_kd_gain(fast_run, capsys):
    code = cli.main(
        [
            "distill",
            "--teacher-epochs",
            "1",
            "--epochs",
            "1",
            "--student",
            "mlp-tiny",
            "--fraction",
            "0.25",
            "-T",
            "2",
            "--alpha",
            "0.7",
        ]
    )
    assert code == 0
    out, err = capsys.readouterr()
    assert "KD gain" in out
    assert "T=2, alpha=0.7, 1 epochs" in out
    for name in ("cnn-wide", "cnn-deep", "mlp-wide", "ensemble", "scratch (mlp-tiny)", "distilled (mlp-tiny)"):
        assert name in out
    assert "loaded from cache" in err  # progress goes to stderr, never into the table
    assert "loaded from cache" not in out


def test_teachers_command_reports_a_cached_teacher(fast_run, capsys):
    assert cli.main(["teachers", "--teachers", "cnn-wide", "--epochs", "1"]) == 0
    out, err = capsys.readouterr()
    assert "teacher cnn-wide: loaded from cache" in err
    row = next(line for line in out.splitlines() if line.startswith("cnn-wide"))
    assert "ensemble" in row  # a lone teacher is the ensemble


def test_a_cache_path_taken_by_a_file_is_a_one_line_error_with_exit_code_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KD_DATA_DIR", str(tmp_path))
    (tmp_path / "cache").write_text("not a folder")
    assert cli.main(["teachers", "--teachers", "mlp-wide", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "error" in line.lower()]  # the rest is progress
    assert line.startswith("error: The teacher cache needs a folder at ") and str(tmp_path / "cache") in line
    assert "Traceback" not in err and "usage:" not in err


# --------------------------------------------------------------------------- distillation methods


def test_distill_dkd_json_carries_the_method_and_its_weights(fast_run, capsys):
    argv = ["distill", "--method", "dkd", "--alpha-tc", "2", "--beta-nc", "0.5", "--student", "mlp-tiny"]
    assert cli.main([*argv, "--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "dkd" and out["config"]["method"] == "dkd"
    assert (out["config"]["alpha_tc"], out["config"]["beta_nc"]) == (2.0, 0.5)
    assert [m["role"] for m in out["models"]] == ["teacher"] * 3 + ["ensemble", "scratch", "distilled"]


def test_distill_ta_table_shows_the_assistant(fast_run, capsys):
    argv = ["distill", "--method", "ta", "--student", "mlp-tiny", "--assistant", "mlp-small", "--epochs", "1"]
    assert cli.main(argv) == 0
    out, err = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith("assistant (mlp-small)"))
    assert " assistant " in row
    assert "method ta through mlp-small" in out and "KD gain" in out
    assert "assistant" in err  # its training shows as progress, on stderr


def test_distill_self_json_lists_every_generation(fast_run, capsys):
    argv = ["distill", "--method", "self", "--generations", "2", "--student", "mlp-tiny", "--epochs", "1", "--json"]
    assert cli.main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["generations"] == 2 and len(out["generations"]) == 3
    roles = [m["role"] for m in out["models"]]
    assert roles[-3:] == ["scratch", "generation", "distilled"]
    assert out["kd_gain"] == pytest.approx(out["generations"][-1] - out["generations"][0])
