"""What-if studies (T x alpha sweep, less data, a missing class, student capacity) and their CLI commands.

Every study here trains one-epoch students against the session's cached default teachers; the
fixtures depend on `fast_run` so those teachers exist before the first study asks for them.
"""

import json
import re
import threading

import pytest
import torch

from kdcore import cli, metrics, models, studies
from kdcore import data as kdata
from kdcore import events as ev
from kdcore.experiments import default_config

SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def sentences(text):
    return len(SENTENCE_END.findall(text))


def pct(x):
    return f"{x * 100:.1f} %"


def pts(x):
    return f"{x * 100:+.1f} points"


def kinds(events, kind):
    return [e for e in events if isinstance(e, kind)]


@pytest.fixture(scope="module")
def config(fast_run):
    return default_config("mnist-sample", epochs=1)


@pytest.fixture(scope="module")
def train_y(config):
    return kdata.load(config.dataset).train_y


@pytest.fixture(scope="module")
def swept(config):
    events = []
    return studies.sweep(config, (2.0, 4.0), (0.3, 0.7), on_event=events.append), events


@pytest.fixture(scope="module")
def fractions(config):
    events = []
    return studies.fraction_study(config, (1.0, 0.05), on_event=events.append), events


@pytest.fixture(scope="module")
def missing(config):
    events = []
    return studies.missing_class_study(config, 3, on_event=events.append), events


@pytest.fixture(scope="module")
def capacity(config):
    return studies.capacity_study(config, ("mlp-small", "mlp-tiny"))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call,names",
    [
        (lambda c: studies.sweep(c, [1, 2, 3, 4, 5, 6, 7], [0.5]), ["temperatures", "1 to 6"]),
        (lambda c: studies.sweep(c, [2], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), ["alphas", "1 to 6"]),
        (lambda c: studies.sweep(c, [], [0.5]), ["temperatures", "1 to 6"]),
        (lambda c: studies.sweep(c, [0], [0.5]), ["temperatures", "from 0.1 to 100"]),
        (lambda c: studies.sweep(c, [2], [1.5]), ["alphas", "[0, 1]"]),
        (lambda c: studies.sweep(c, [2, 2], [0.5]), ["temperatures", "twice"]),
        (lambda c: studies.fraction_study(c, [0, 1]), ["fractions", "(0, 1]"]),
        (lambda c: studies.fraction_study(c, "0.1"), ["fractions", "list"]),
        (lambda c: studies.missing_class_study(c, 10), ["missing", "0 to 9"]),
        (lambda c: studies.missing_class_study(c, True), ["missing", "0 to 9"]),
        (lambda c: studies.missing_class_study(c, 3, bias_value=float("nan")), ["bias_value", "finite"]),
        (lambda c: studies.missing_class_study(c, 3, bias_fix=False, bias_value=2.0), ["bias_value", "bias_fix"]),
        (lambda c: studies.capacity_study(c, ["mlp-huge"]), ["students", "mlp-tiny", "cnn-medium"]),
        (lambda c: studies.capacity_study(c, ["mlp-tiny", "mlp-tiny"]), ["students", "twice"]),
    ],
)
def test_a_bad_study_argument_is_refused_up_front_and_named(call, names):
    with pytest.raises(ValueError) as info:
        call(default_config("mnist-sample", epochs=1))
    assert all(n in str(info.value) for n in names), str(info.value)


# --------------------------------------------------------------------------- T x alpha sweep


def test_sweep_grid_has_the_requested_shape_and_marks_the_best_cell(swept):
    result, _ = swept
    assert result.temperatures == [2.0, 4.0] and result.alphas == [0.3, 0.7]
    assert len(result.accuracy) == 2 and all(len(row) == 2 for row in result.accuracy)
    assert all(0 <= a <= 1 for row in result.accuracy for a in row)
    best = result.best
    assert best["accuracy"] == max(a for row in result.accuracy for a in row)
    assert result.accuracy[best["row"]][best["col"]] == best["accuracy"]
    assert (best["temperature"], best["alpha"]) == (result.temperatures[best["row"]], result.alphas[best["col"]])
    assert result.gain[best["row"]][best["col"]] == pytest.approx(best["accuracy"] - result.scratch_acc)
    assert not result.partial and result.done == 4


def test_sweep_reports_each_cell_as_it_finishes(swept):
    result, events = swept
    (start,) = kinds(events, ev.StudyStart)
    assert start.total == 5 and start.study == "sweep"
    cells = kinds(events, ev.StudyCell)
    assert [c.done for c in cells] == [1, 2, 3, 4, 5] and {c.total for c in cells} == {5}
    assert cells[0].snapshot["scratch_acc"] == result.scratch_acc
    assert cells[0].snapshot["accuracy"] == [[None, None], [None, None]]
    # A page redraws from the latest cell event alone: its snapshot holds every cell finished so far.
    assert cells[1].snapshot["accuracy"] == [[result.accuracy[0][0], None], [None, None]]
    assert cells[-1].snapshot["accuracy"] == result.accuracy
    assert isinstance(events[-1], ev.Finished) and events[-1].partial is False


def test_sweep_students_share_init_and_data_order_with_distill(fast_config, fast_run):
    run, _ = fast_run
    result = studies.sweep(fast_config, [fast_config.temperature], [0.0, fast_config.alpha])
    assert result.scratch_acc == run.row("scratch").accuracy
    assert result.accuracy[0][1] == run.row("distilled").accuracy
    assert result.accuracy[0][0] == result.scratch_acc  # alpha = 0 is the scratch student
    assert sentences(result.reading()) == 2


def test_cancelling_a_sweep_keeps_the_finished_cells(config):
    cancel = threading.Event()
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, ev.StudyCell) and event.done == 3:  # the scratch student and row 0
            cancel.set()

    result = studies.sweep(config, (2.0, 4.0), (0.3, 0.7), on_event=on_event, cancel=cancel)
    assert result.partial and result.done == 2
    assert all(a is not None for a in result.accuracy[0]) and result.accuracy[1] == [None, None]
    assert result.best["row"] == 0
    assert result.to_json()["partial"] is True
    assert isinstance(events[-1], ev.Finished) and events[-1].partial is True
    assert "2 cells finished before the stop" in result.reading() and sentences(result.reading()) == 2


def test_a_sweep_stopped_before_its_first_student_says_so(config):
    cancel = threading.Event()
    result = studies.sweep(
        config, (2.0,), (0.5,), cancel=cancel, on_event=lambda e: cancel.set() if isinstance(e, ev.StudyStart) else None
    )
    assert result.partial and result.scratch_acc is None and result.accuracy == [[None]] and result.best is None
    assert "stopped" in result.reading() and sentences(result.reading()) == 2


def test_sweep_reading_is_two_sentences_with_its_numbers(swept):
    result, _ = swept
    text, best = result.reading(), result.best
    assert sentences(text) == 2, text
    assert pct(best["accuracy"]) in text and pct(result.scratch_acc) in text and pts(best["gain"]) in text
    assert f"T = {best['temperature']:g}, α = {best['alpha']:g}" in text
    assert result.to_json()["reading"] == text
    json.dumps(result.to_json())


# --------------------------------------------------------------------------- less data


def test_fraction_epochs_grow_as_the_data_shrinks_up_to_ten_times():
    assert studies.fraction_epochs(20, 1.0) == 20
    assert studies.fraction_epochs(20, 0.5) == 40
    assert studies.fraction_epochs(20, 0.01) == 200
    assert studies.fraction_epochs(100, 0.01) == 500  # the RunConfig limit


def test_fraction_epochs_count_from_the_runs_own_fraction():
    # The CIFAR preset: 16 epochs on a fifth of the data. All of it gets about as many images, not 5x.
    assert studies.fraction_epochs(16, 1.0, base=0.2) == 3
    assert studies.fraction_epochs(16, 0.2, base=0.2) == 16
    assert studies.fraction_epochs(16, 0.05, base=0.2) == 64
    assert studies.fraction_epochs(16, 0.01, base=0.2) == 160  # the 10x cap
    assert studies.fraction_epochs(2, 1.0, base=0.01) == 1  # never below one epoch
    assert "min(10, the run's fraction / fraction)" in studies.EPOCH_RULE


def test_fraction_points_are_ordered_by_fraction_on_the_same_subsets(fractions, config, train_y):
    result, events = fractions
    assert [p.fraction for p in result.points] == [0.05, 1.0]
    for p in result.points:
        assert p.train_size == len(kdata.subset_indices(train_y, fraction=p.fraction, seed=config.seed))
        assert p.epochs == studies.fraction_epochs(config.epochs, p.fraction, config.fraction)
        assert p.gain == pytest.approx(p.distilled_acc - p.scratch_acc)
    assert [p.epochs for p in result.points] == [10, 1]
    assert result.to_json()["epoch_rule"] == studies.EPOCH_RULE
    snapshots = [c.snapshot["points"] for c in kinds(events, ev.StudyCell)]
    assert [(p[0]["scratch_acc"] is not None, p[0]["distilled_acc"] is not None) for p in snapshots] == [
        (True, False),
        (True, True),
        (True, True),
        (True, True),
    ]
    assert snapshots[1][1]["scratch_acc"] is None and snapshots[-1][1]["distilled_acc"] is not None
    # The 5 % students cost less than the 100 % ones, and the progress bar knows it.
    (start,) = kinds(events, ev.StudyStart)
    assert start.weights[0] < start.weights[-1]


def test_fraction_reading_names_the_fraction_and_gap(fractions):
    result, _ = fractions
    best = max(result.points, key=lambda p: p.gain)
    text = result.reading()
    assert sentences(text) == 2, text
    assert pts(best.gain) in text and f"{best.fraction * 100:g} %" in text


# --------------------------------------------------------------------------- missing class


def test_the_missing_class_is_absent_from_the_transfer_set(missing, config, train_y):
    result, _ = missing
    assert not (train_y[result.train_idx] == 3).any()
    assert torch.equal(result.train_idx, kdata.subset_indices(train_y, exclude_class=3, seed=config.seed))
    assert result.to_json()["transfer_size"] == len(result.train_idx) == int((train_y != 3).sum())


def test_missing_class_rows_and_bias_fix(missing):
    result, events = missing
    assert [r.name for r in result.rows] == ["teacher", "scratch", "distilled", "distilled + bias fix"]
    scratch, distilled, fixed = (result.row(n) for n in ("scratch", "distilled", "distilled + bias fix"))
    assert result.row("teacher").missing_acc > 0.9
    # Trained only on the other classes' labels, the scratch student (almost) never predicts the missing one.
    assert scratch.missing_acc < 0.05
    # The fix raises that class's bias, which can only add predictions of it: recall cannot fall.
    assert result.bias_value > 0 and fixed.missing_acc >= distilled.missing_acc
    assert result.bias_rule == studies.BIAS_RULE
    assert result.share_before < result.teacher_share <= result.share_after
    assert [[r["name"] for r in c.snapshot["rows"]][-1] for c in kinds(events, ev.StudyCell)] == [
        "scratch",
        "distilled",
        "distilled + bias fix",
    ]


def test_missing_class_reading_quotes_the_class_and_the_bias(missing):
    result, _ = missing
    text = result.reading()
    assert sentences(text) == 2, text
    assert "class 3" in text and f"{result.bias_value:.2f}" in text
    assert pct(result.row("distilled + bias fix").missing_acc) in text


def test_a_given_bias_is_used_and_the_fix_can_be_switched_off(config):
    zero = studies.missing_class_study(config, 3, bias_value=0.0)
    assert zero.bias_value == 0.0 and zero.bias_rule == "given"
    assert zero.row("distilled + bias fix").accuracy == zero.row("distilled").accuracy
    off = studies.missing_class_study(config, 3, bias_fix=False)
    assert off.row("distilled + bias fix") is None and off.bias_value is None
    assert "switched off" in off.reading() and sentences(off.reading()) == 2


def test_matched_bias_makes_the_student_predict_the_class_as_often_as_the_teacher():
    student = torch.tensor([[5.0, 0.0], [4.0, 1.0], [3.0, 2.5], [9.0, 0.0]])  # never predicts class 1
    teacher = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # predicts it for half
    bias, share = studies.match_share_bias(student, teacher, 1)
    assert share == 0.5
    shifted = student.clone()
    shifted[:, 1] += bias
    assert (shifted.argmax(1) == 1).tolist() == [False, True, True, False]  # the two smallest margins flip
    assert studies.match_share_bias(teacher, teacher, 1)[0] == 0.0  # already there: nothing to raise


def test_bias_fix_raises_exactly_one_output_logit():
    model = models.build("cnn-tiny", "mnist-sample", seed=0).eval()
    assert studies.output_layer(model) is list(model.modules())[-1]
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        diff = studies.with_bias(model, 7, 2.5)(x) - model(x)
    expected = torch.zeros(4, 10)
    expected[:, 7] = 2.5
    assert torch.allclose(diff, expected, atol=1e-5)


# --------------------------------------------------------------------------- student capacity


def test_capacity_points_run_small_to_large_with_their_sizes(capacity, config):
    assert [p.student for p in capacity.points] == ["mlp-tiny", "mlp-small"]
    for p in capacity.points:
        assert p.params == metrics.param_count(models.build(p.student, config.dataset))
        assert p.gain == pytest.approx(p.distilled_acc - p.scratch_acc)
    assert capacity.teacher_params > capacity.points[-1].params and not capacity.partial
    assert studies.family_students("cnn-small") == ["cnn-tiny", "cnn-small", "cnn-medium"]


def test_capacity_reading_names_the_student_and_the_gain(capacity):
    best = max(capacity.points, key=lambda p: p.gain)
    text = capacity.reading()
    assert sentences(text) == 2, text
    assert best.student in text and pts(best.gain) in text


# --------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv,check",
    [
        (
            ["sweep", "--temperatures", "2,4", "--alphas", "0.5"],
            lambda j: len(j["accuracy"]) == 2 and len(j["accuracy"][0]) == 1 and j["best"] is not None,
        ),
        (["fraction", "--fractions", "1,0.1"], lambda j: [p["fraction"] for p in j["points"]] == [0.1, 1.0]),
        (
            ["missing-class", "--missing", "7", "--bias-value", "1.5"],
            lambda j: j["missing"] == 7 and j["bias_value"] == 1.5 and len(j["rows"]) == 4,
        ),
        (["capacity", "--students", "mlp-tiny"], lambda j: [p["student"] for p in j["points"]] == ["mlp-tiny"]),
    ],
)
def test_each_study_command_prints_one_json_object(config, argv, check, capsys):
    assert cli.main([*argv, "--epochs", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    result = json.loads(out)
    assert check(result) and result["study"] == argv[0] and sentences(result["reading"]) == 2


def test_sweep_command_prints_the_grid_and_the_reading(config, capsys):
    assert cli.main(["sweep", "--temperatures", "2,4", "--alphas", "0.5", "--epochs", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "scratch" in lines[0]
    grid = lines[2:4]
    assert [line.split()[0] for line in grid] == ["2", "4"] and sum(line.count("*") for line in grid) == 1
    assert sentences(lines[-1]) == 2


@pytest.mark.parametrize(
    "argv,names",
    [
        (["sweep", "--temperatures", "1,2,3,4,5,6,7"], ["--temperatures", "1 to 6"]),
        (["sweep", "--alphas", "0.5,2"], ["--alphas", "[0, 1]"]),
        (["sweep", "--temperatures", "two"], ["--temperatures", "numbers"]),
        (["fraction", "--fractions", "0,1"], ["--fractions", "(0, 1]"]),
        (["missing-class", "--missing", "10"], ["--missing", "0 to 9"]),
        (["missing-class", "--bias-value", "inf"], ["--bias-value", "finite"]),
        (["capacity", "--students", "mlp-huge"], ["--students", "mlp-tiny"]),
    ],
)
def test_a_bad_study_option_exits_2_naming_it(argv, names, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and all(n in err for n in names), err


# --------------------------------------------------------------------------- seeds


def test_repeating_over_seeds_gives_each_seed_its_pair_and_the_gains_mean_and_spread(config):
    events = []
    result = studies.seeds_study(config, (0, 1), on_event=events.append)
    assert [p.seed for p in result.points] == [0, 1] and not result.partial
    # Seed 0 is the config's own run: the same students as the sweep's scratch and distill.
    assert result.points[0].scratch_acc == studies.sweep(config, [config.temperature], [0.0]).scratch_acc
    summary = result.summary()
    gains = [p.gain for p in result.points]
    assert summary.mean == pytest.approx(sum(gains) / 2) and summary.n == 2
    text = result.reading()
    assert sentences(text) == 2 and "over 2 seeds" in text and pts(min(gains)) in text
    (start,) = kinds(events, ev.StudyStart)
    assert start.total == 4


@pytest.mark.parametrize("seeds,words", [((0,), "2 to 8"), ((1, 1), "same seed twice"), ((0, 2**40), "4,294,967,295")])
def test_bad_seed_lists_are_refused_up_front(config, seeds, words):
    with pytest.raises(ValueError, match=words):
        studies.seeds_study(config, seeds)


def test_the_seeds_command_prints_the_table_and_the_reading(config, capsys):
    assert cli.main(["seeds", "--seeds", "3,4", "--epochs", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [p["seed"] for p in out["points"]] == [3, 4] and sentences(out["reading"]) == 2


def test_a_sweep_reports_settings_within_noise_of_the_best_as_a_tie(config):
    result = studies.SweepResult(config, [2.0, 4.0], [0.25], [[0.964], [0.964]], scratch_acc=0.95)
    same = torch.zeros(1000, dtype=torch.bool)
    same[:964] = True
    result.correct = {(0, 0): same, (1, 0): same.roll(3)}  # equal accuracy, not the same images
    ties = result.ties()
    assert set(ties.best) == {(0, 0), (1, 0)}  # equal counts are tied, never "best" and "second"
    text = result.reading()
    assert sentences(text) == 2
    assert "2 settings are tied for best within test-set noise (T = 2, α = 0.25, T = 4, α = 0.25)" in text


def test_the_study_pickers_offer_their_defaults_within_the_engine_limits():
    from kdcore import jobs, limits

    # A default the picker does not offer would make the page's multiselect fail.
    assert set(studies.DEFAULT_TEMPERATURES) <= set(studies.SWEEP_TEMPERATURES)
    assert set(studies.DEFAULT_ALPHAS) <= set(studies.SWEEP_ALPHAS)
    assert set(studies.DEFAULT_FRACTIONS) <= set(limits.UI_FRACTIONS)
    for t in studies.SWEEP_TEMPERATURES:
        assert limits.check_temperature(t) == t
    for a in studies.SWEEP_ALPHAS:
        assert limits.check_alpha(a) == a
    study_kinds = {jobs.JobKind.SWEEP, jobs.JobKind.FRACTION, jobs.JobKind.MISSING_CLASS, jobs.JobKind.CAPACITY}
    assert set(studies.VARIES) == study_kinds
